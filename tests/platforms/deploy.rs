//! The deployment files keep the defaults a security review signs off on: a spend cap, logs
//! with a retention, keys from a secret store and never a plain parameter, a Cloud Run service
//! of its own account with as many requests per instance as the service runs scripts. cfn-lint
//! and hadolint check the files' form (tools/lint-deploy.sh); this checks these choices, in
//! template.yaml, service.yaml and the gcloud command of docs/deploying.md alike.

use std::path::Path;

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The value on the first line that starts with `key:` (trimmed, unquoted).
fn value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(&format!("{key}:")))
        .map(|value| value.trim().trim_matches('"').to_owned())
}

#[test]
fn the_lambda_stack_caps_spend_keeps_logs_and_takes_keys_from_secrets_manager() {
    let template = read("template.yaml");
    assert_eq!(
        value(&template, "ReservedConcurrentExecutions").as_deref(),
        Some("!Ref ReservedConcurrency")
    );
    let cap = template
        .split("ReservedConcurrency:\n")
        .nth(1)
        .and_then(|rest| value(rest, "Default"))
        .and_then(|default| default.parse::<u32>().ok());
    assert!(cap.is_some_and(|cap| (1..=100).contains(&cap)), "{cap:?}");
    assert_eq!(
        value(&template, "RetentionInDays").as_deref(),
        Some("!Ref LogRetentionDays")
    );
    assert_eq!(value(&template, "LogFormat").as_deref(), Some("JSON"));
    assert!(
        template.contains("{{resolve:secretsmanager:"),
        "keys from Secrets Manager"
    );
    assert!(
        !template.contains("NoEcho"),
        "no key as a template parameter"
    );
    assert!(
        value(&template, "API_KEY").is_none(),
        "no plain API_KEY variable"
    );
    let bucket = template
        .split("  ResultBucket:\n")
        .nth(1)
        .expect("the bucket");
    assert_eq!(value(bucket, "DeletionPolicy").as_deref(), Some("Delete"));
}

#[test]
fn cloud_run_runs_as_its_own_account_capped_with_concurrency_matching_the_service() {
    let service = read("service.yaml");
    let concurrency = value(&service, "containerConcurrency").expect("containerConcurrency");
    let max_concurrency = service
        .split("name: MAX_CONCURRENCY")
        .nth(1)
        .and_then(|rest| value(rest, "value"))
        .expect("MAX_CONCURRENCY");
    assert_eq!(concurrency, max_concurrency);
    assert!(value(&service, "autoscaling.knative.dev/maxScale").is_some());
    assert_eq!(
        value(&service, "run.googleapis.com/execution-environment").as_deref(),
        Some("gen2")
    );
    assert_eq!(
        value(&service, "run.googleapis.com/cpu-throttling").as_deref(),
        Some("true")
    );
    let account = value(&service, "serviceAccountName").expect("a service account");
    assert!(account.starts_with("python-executor@"), "{account}");
    let keys = service.split("name: API_KEYS").nth(1).expect("API_KEYS");
    assert!(
        value(keys, "secretKeyRef").is_some(),
        "API_KEYS from Secret Manager"
    );

    let docs = read("docs/deploying.md");
    let command = docs
        .split("gcloud run deploy")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the gcloud run deploy command");
    for flag in [
        "--service-account",
        "--max-instances",
        "--cpu-throttling",
        "--execution-environment gen2",
        "--set-secrets API_KEYS=",
        &format!("--concurrency {concurrency}"),
        &format!("MAX_CONCURRENCY={concurrency}"),
    ] {
        assert!(command.contains(flag), "{flag} missing from: {command}");
    }
    assert!(
        !command.contains("API_KEY="),
        "a key as a plain variable: {command}"
    );
}
