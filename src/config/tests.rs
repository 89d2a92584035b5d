//! Reading settings end to end: defaults, units, the checks, and the rules between settings.

use super::*;
use std::collections::HashMap;

fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

/// The message of an invalid setting, which must name its variable.
fn rejected(name: &str, value: &str) -> String {
    let message = config(&[(name, value)]).expect_err("invalid").to_string();
    assert!(message.contains(name), "{message}");
    message
}

#[test]
fn defaults_are_the_designs() {
    let config = config(&[]).expect("defaults are valid");
    assert_eq!(config.port, 8080);
    assert_eq!(config.limits, Limits::default());
    assert_eq!(config.max_script, ByteSize::kib(50));
    assert_eq!(config.max_body, ByteSize::mib(1));
    assert_eq!(config.sandbox, SandboxChoice::Auto);
    assert_eq!(config.logs.format, LogFormat::Auto);
    assert_eq!(config.templates, TemplateConfig::default());
    assert_eq!(config.offload, OffloadConfig::default());
    assert_eq!(config.queue_wait, Duration::from_secs(10));
    // Cloud Run gives a container 10 s between SIGTERM and SIGKILL: both graces fit in it,
    // with a second to spare for the exit itself.
    let shutdown = config.shutdown;
    assert_eq!(shutdown.grace, Duration::from_secs(7));
    assert_eq!(shutdown.abort_grace, Duration::from_secs(2));
    assert!(shutdown.grace + shutdown.abort_grace < Duration::from_secs(10));
    assert_eq!(config.platform, Platform::Elsewhere);
    assert!(config.keys.is_empty() && config.cors.origins.is_empty());
    assert!(!config.metrics.public && !config.metrics.emf);
    assert!(config.max_concurrency >= 2);
    assert_eq!(config.layer_dir, None);
}

#[test]
fn units_are_applied_once() {
    let config =
        config(&[("MEMORY_LIMIT_MIB", "256"), ("MAX_SCRIPT_KIB", "10")]).expect("valid settings");
    assert_eq!(config.limits.memory.as_bytes(), 256 * 1024 * 1024);
    assert_eq!(config.max_script.as_bytes(), 10 * 1024);
}

#[test]
fn bad_values_name_the_variable_and_the_flag() {
    let message = rejected("MAX_TIMEOUT_S", "soon");
    assert!(message.contains("--max-timeout-s"), "{message}");
    assert!(message.contains("not a valid number"), "{message}");
    assert!(rejected("MAX_PROCESSES", "0").contains("at least 1"));
    assert!(rejected("MAX_TIMEOUT_S", "-1").contains("between 0 and 3600"));
    rejected("PORT", "70000");
    rejected("LOG_FORMAT", "xml");
    rejected("SANDBOX", "docker");
    rejected("FORCE_COMPAT", "maybe");
    rejected("S3_FORCE_PATH_STYLE", "2");
    rejected("MEMORY_LIMIT_MIB", "0");
    rejected("QUEUE_WAIT_MS", "-5");
}

#[test]
fn blank_means_the_default_and_spaces_are_ignored() {
    let config = config(&[
        ("PORT", ""),
        ("MAX_TIMEOUT_S", "  "),
        ("API_KEY", ""),
        ("RESULT_BUCKET", " "),
        ("LAYER_DIR", ""),
        ("MAX_CONCURRENCY", ""),
        ("TEMPLATES", " 0 "),
        ("SANDBOX", " compat"),
    ])
    .expect("blank settings are unset");
    assert_eq!(config.port, 8080);
    assert_eq!(config.limits.wall, Duration::from_secs(15));
    assert!(config.keys.is_empty());
    assert_eq!(config.offload.bucket, None);
    assert_eq!(config.layer_dir, None);
    assert!(!config.templates.enabled);
    assert_eq!(config.sandbox, SandboxChoice::Compat);
}

#[test]
fn template_settings() {
    let config = config(&[("TEMPLATES", "0"), ("PRELOAD", "numpy, scipy.stats")]).expect("valid");
    assert!(!config.templates.enabled);
    assert_eq!(config.templates.preload, vec!["numpy", "scipy.stats"]);
    rejected("PRELOAD", "numpy;rm -rf");
    assert_eq!(
        config.templates.preload_on_demand,
        vec!["matplotlib.pyplot", "scipy", "sklearn", "pyarrow"]
    );
    let nothing_on_demand = self::config(&[("PRELOAD_ON_DEMAND", "none")]).expect("valid");
    assert!(nothing_on_demand.templates.preload_on_demand.is_empty());
    rejected("PRELOAD_ON_DEMAND", "matplotlib pyplot");
    assert_eq!(config.templates.spare_forks, 1);
    let no_spares = self::config(&[("SPARE_FORKS", "0")]).expect("valid");
    assert_eq!(no_spares.templates.spare_forks, 0);
    rejected("SPARE_FORKS", "100");
}

#[test]
fn concurrency_is_at_least_one() {
    assert_eq!(
        config(&[("MAX_CONCURRENCY", "0")])
            .expect("valid")
            .max_concurrency,
        1
    );
    assert_eq!(
        config(&[("MAX_CONCURRENCY", "3")])
            .expect("valid")
            .max_concurrency,
        3
    );
}

#[test]
fn isolation_minimum_and_api_key() {
    let defaults = config(&[]).expect("defaults");
    assert_eq!(defaults.min_isolation.names(), ["seccomp"]);
    assert!(defaults.keys.is_empty());
    let config = config(&[
        ("MIN_ISOLATION", "seccomp,landlock"),
        ("API_KEY", " s3cret "),
    ])
    .expect("valid");
    assert_eq!(config.min_isolation.names(), ["seccomp", "landlock"]);
    let key = NamedKey {
        name: "default".into(),
        key: ApiKey("s3cret".into()),
    };
    assert_eq!(config.keys, ApiKeys(vec![key]));
    assert!(!format!("{config:?}").contains("s3cret"));
    rejected("MIN_ISOLATION", "chroot");
}

#[test]
fn every_source_of_keys_adds_to_one_list() {
    let file = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(
        file.path(),
        "ci=k-file
",
    )
    .expect("written");
    let path = file.path().to_str().expect("utf-8");
    let config = config(&[
        ("API_KEY", "k-one"),
        ("API_KEYS", "alice=k-a,bob=k-b"),
        ("API_KEYS_FILE", path),
        ("KEY_MAX_CONCURRENCY", "2"),
    ])
    .expect("valid");
    assert_eq!(config.keys.names(), ["default", "alice", "bob", "ci"]);
    assert_eq!(config.key_quota.max_concurrency, Some(2));
    assert_eq!(config.key_quota.rate_per_min, None);
    let message = rejected("API_KEYS", "alice=k-secret-a,bob");
    assert!(!message.contains("k-secret-a"), "{message}");
    rejected("API_KEYS_FILE", "/nonexistent/keys");
}

#[test]
fn the_platform_comes_from_its_own_variables() {
    let run = config(&[("K_SERVICE", "python-executor")]).expect("valid");
    assert_eq!(run.platform, Platform::CloudRun);
    assert!(!run.metrics.emf);
    let lambda = config(&[
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
    ])
    .expect("valid");
    assert_eq!(lambda.platform, Platform::Lambda);
    assert!(lambda.metrics.emf, "EMF is on by default on Lambda");
    assert_eq!(lambda.logs.lambda_format.as_deref(), Some("JSON"));
    assert_eq!(lambda.logs.lambda_level.as_deref(), Some("WARN"));
    let off = config(&[("AWS_LAMBDA_RUNTIME_API", "x"), ("METRICS_EMF", "0")]).expect("valid");
    assert!(!off.metrics.emf);
    let cors = config(&[("CORS_ALLOW_ORIGINS", "https://a.example")]).expect("valid");
    assert_eq!(cors.cors.origins, ["https://a.example"]);
    assert_eq!(cors.cors.max_age, Duration::from_secs(600));
    rejected("CORS_ALLOW_ORIGINS", "*");
    rejected("LOG_FORMAT", "xml");
}

#[test]
fn offload_settings() {
    let defaults = config(&[]).expect("defaults");
    assert_eq!(defaults.offload, OffloadConfig::default());
    assert!(!defaults.on_lambda());
    let set = config(&[
        ("RESULT_BUCKET", "results"),
        ("RESULT_URL_TTL_S", "60"),
        ("MAX_INLINE_RESPONSE_KIB", "100"),
        ("S3_FORCE_PATH_STYLE", "1"),
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
    ])
    .expect("valid");
    assert_eq!(set.offload.bucket.as_deref(), Some("results"));
    assert_eq!(set.offload.url_ttl, Duration::from_secs(60));
    assert_eq!(set.offload.max_inline, ByteSize::kib(100));
    assert!(set.offload.force_path_style);
    assert!(set.on_lambda());
    rejected("RESULT_URL_TTL_S", "700000");
}

#[test]
fn force_compat_overrides_sandbox() {
    let forced = config(&[("FORCE_COMPAT", "1"), ("SANDBOX", "nsjail")]).expect("valid");
    assert_eq!(forced.sandbox, SandboxChoice::Compat);
    let not_forced = config(&[("FORCE_COMPAT", "0"), ("SANDBOX", "nsjail")]).expect("valid");
    assert_eq!(not_forced.sandbox, SandboxChoice::Nsjail);
}
