//! The binary explains itself: `--help` and `--version` answer and exit without serving, a bad
//! setting stops it with a message naming its variable, and `probe` says what `/health` will.

use std::time::Duration;

use serde_json::Value;

use crate::common::binary::Finished;
use crate::process::{run_once, run_once_on, Binary, Platform};

/// Long enough for the sandbox self-test on a busy machine; a binary that served instead of
/// exiting would run until killed.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn help_lists_every_setting_with_its_variable_and_exits_without_serving() {
    let help = run_once(&["--help"], &[], LIMIT);
    assert_eq!(help.code, Some(0), "{}", help.stderr);
    for expected in [
        "--max-timeout-s <MAX_TIMEOUT_S>",
        "[env: PORT",
        "[default: 15]",
        "probe",
    ] {
        assert!(
            help.stdout.contains(expected),
            "{expected} in:\n{}",
            help.stdout
        );
    }
}

#[test]
fn version_prints_the_version_and_exits() {
    let version = run_once(&["--version"], &[], LIMIT);
    assert_eq!(version.code, Some(0), "{}", version.stderr);
    assert_eq!(
        version.stdout.trim(),
        format!("python-executor {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_value_stops_the_service_naming_its_variable() {
    let refused = run_once(&[], &[("MAX_TIMEOUT_S", "abc")], LIMIT);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("MAX_TIMEOUT_S"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("--max-timeout-s"),
        "{}",
        refused.stderr
    );
}

fn probe(platform: Platform, env: &[(&str, &str)]) -> (Finished, Value) {
    let probed = run_once_on(platform, &["probe", "--json"], env, LIMIT);
    let report = serde_json::from_str(&probed.stdout)
        .unwrap_or_else(|error| panic!("{error}: not JSON:\n{}", probed.stdout));
    (probed, report)
}

/// `probe --json` and a service started with the same settings say the same.
async fn probe_agrees_with_health(env: &[(&str, &str)]) -> Value {
    probe_agrees_with_health_on(Platform::Host, env).await
}

async fn probe_agrees_with_health_on(platform: Platform, env: &[(&str, &str)]) -> Value {
    let (probed, report) = probe(platform, env);
    let service = Binary::start_on(platform, env);
    let health = service.health().await;
    for field in ["ok", "sandbox", "isolation"] {
        assert_eq!(
            report[field], health[field],
            "{field}: {report} vs {health}"
        );
    }
    if health["ok"] == true {
        assert_eq!(report["cgroup"], health["cgroup"], "{report} vs {health}");
        assert_eq!(probed.code, Some(0), "{}", probed.stderr);
    } else {
        // The probe tells the operator the whole reason; /health, open to anyone, its category.
        assert_eq!(
            report["reason_category"], health["reason_category"],
            "{report} vs {health}"
        );
        assert_eq!(probed.code, Some(1), "{}", probed.stderr);
    }
    report
}

#[tokio::test]
async fn probe_agrees_with_health_under_nsjail() {
    let report = probe_agrees_with_health(&[("SANDBOX", "nsjail")]).await;
    assert_eq!(report["sandbox"], "nsjail", "{report}");
}

#[tokio::test]
async fn probe_agrees_with_health_under_compat() {
    let report = probe_agrees_with_health(&[("SANDBOX", "compat")]).await;
    assert_eq!(report["sandbox"], "compat", "{report}");
    assert!(report["missing"]["namespaces"].is_string(), "{report}");
}

#[tokio::test]
async fn probe_agrees_with_health_under_lambdas_conditions() {
    // template.yaml's settings.
    let env = [("SANDBOX", "compat"), ("MAX_CONCURRENCY", "1")];
    let report = probe_agrees_with_health_on(Platform::Lambda, &env).await;
    assert_eq!(report["sandbox"], "compat", "{report}");
    for missing in ["namespaces", "cgroups", "landlock"] {
        assert!(
            report["missing"][missing].is_string(),
            "{missing}: {report}"
        );
    }
    assert_eq!(report["cgroup"], Value::Null, "{report}");
}

#[tokio::test]
async fn probe_fails_where_scripts_would_be_refused() {
    // compat never has namespaces, so this minimum refuses every script.
    let env = [("SANDBOX", "compat"), ("MIN_ISOLATION", "namespaces")];
    let report = probe_agrees_with_health(&env).await;
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["reason"]
        .as_str()
        .is_some_and(|reason| reason.contains("MIN_ISOLATION")));
}
