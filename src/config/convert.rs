//! Assembling the checked settings into the `Config` the rest of the crate receives. Nothing is
//! parsed here (the values are typed already); this only groups them and applies the rules that
//! span settings: FORCE_COMPAT wins over SANDBOX, a blank text setting means unset, the keys of
//! API_KEY, API_KEYS and API_KEYS_FILE are one list, and `auto` follows the platform.

use super::keys::{ApiKey, ApiKeys, KeyQuota, NamedKey, DEFAULT_NAME};
use super::{
    Config, CorsConfig, HttpConfig, InputFileLimits, LogConfig, MetricsConfig, OffloadConfig,
    Platform, SandboxChoice, SessionConfig, Settings, ShutdownConfig, TemplateConfig,
};
use crate::limits::Limits;

impl From<Settings> for Config {
    fn from(s: Settings) -> Self {
        Self {
            port: s.port,
            // A path is taken as given, surrounding spaces included: only a blank one is unset.
            layer_dir: s
                .layer_dir
                .clone()
                .filter(|dir| !dir.to_string_lossy().trim().is_empty()),
            limits: limits(&s),
            max_script: s.max_script_kib,
            max_body: s.max_body_kib,
            input_files: input_files(&s),
            // FORCE_COMPAT=1 wins over SANDBOX: deployment instructions written for it rely on
            // that.
            sandbox: if s.force_compat {
                SandboxChoice::Compat
            } else {
                s.sandbox
            },
            templates: templates(&s),
            max_concurrency: s.max_concurrency,
            queue_wait: s.queue_wait_ms,
            min_isolation: s.min_isolation,
            keys: keys(&s),
            key_quota: KeyQuota {
                max_concurrency: (s.key_max_concurrency > 0).then_some(s.key_max_concurrency),
                rate_per_min: (s.key_rate_per_min > 0).then_some(s.key_rate_per_min),
            },
            shutdown: ShutdownConfig {
                grace: s.shutdown_grace_s,
                abort_grace: s.shutdown_abort_grace_s,
            },
            platform: platform(&s),
            logs: LogConfig {
                format: s.log_format,
                lambda_format: trimmed(s.aws_lambda_log_format.clone()),
                lambda_level: trimmed(s.aws_lambda_log_level.clone()),
            },
            metrics: MetricsConfig {
                public: s.metrics_public,
                emf: s.metrics_emf.0.unwrap_or(platform(&s) == Platform::Lambda),
                emf_namespace: s.metrics_emf_namespace.trim().to_owned(),
                emf_function: trimmed(s.aws_lambda_function_name.clone())
                    .unwrap_or_else(|| s.metrics_emf_namespace.trim().to_owned()),
            },
            cors: CorsConfig {
                origins: s
                    .cors_allow_origins
                    .clone()
                    .map(|o| o.0)
                    .unwrap_or_default(),
                max_age: s.cors_max_age_s,
            },
            lambda_invoke_mode: s.lambda_invoke_mode,
            offload: offload(&s),
            sessions: sessions(&s),
            http: HttpConfig {
                header_read_timeout: s.header_read_timeout_s,
                body_read_timeout: s.body_read_timeout_s,
                max_connections: s.max_connections,
            },
        }
    }
}

/// Lambda when its runtime API is given (it is what the service serves there), else Cloud Run
/// when its service name is.
fn platform(s: &Settings) -> Platform {
    if trimmed(s.aws_lambda_runtime_api.clone()).is_some() {
        Platform::Lambda
    } else if trimmed(s.k_service.clone()).is_some() {
        Platform::CloudRun
    } else {
        Platform::Elsewhere
    }
}

/// API_KEY's key (named `default`), then API_KEYS's, then API_KEYS_FILE's: any of them opens
/// the door, and a request is known by the name of the key it showed.
fn keys(s: &Settings) -> ApiKeys {
    let single = trimmed(s.api_key.clone()).map(|key| NamedKey {
        name: DEFAULT_NAME.to_owned(),
        key: ApiKey(key),
    });
    let lists = [&s.api_keys, &s.api_keys_file];
    let listed = lists.into_iter().flatten().flat_map(|list| list.0.clone());
    ApiKeys(single.into_iter().chain(listed).collect())
}

fn limits(s: &Settings) -> Limits {
    Limits {
        wall: s.max_timeout_s,
        cpu: s.cpu_limit_s,
        memory: s.memory_limit_mib,
        file_size: s.file_size_limit_kib,
        processes: s.max_processes,
        open_files: s.max_open_files,
        stdout: s.max_stdout_kib,
        stderr: s.max_stderr_kib,
        result: s.max_result_kib,
        output_files: s.max_output_files,
        output_bytes: s.max_output_files_kib,
        session_state: s.session_state_max_mib,
    }
}

fn input_files(s: &Settings) -> InputFileLimits {
    InputFileLimits {
        max_files: s.max_input_files as usize,
        // A file the script could not write itself cannot be handed to it either.
        max_file: s.file_size_limit_kib,
        max_total: s.max_input_files_kib,
    }
}

fn templates(s: &Settings) -> TemplateConfig {
    TemplateConfig {
        enabled: s.templates,
        preload: s.preload.0.clone(),
        preload_on_demand: s.preload_on_demand.0.clone(),
        spare_forks: s.spare_forks,
        max_forks: s.template_max_forks,
        max_age: s.template_max_age_s,
    }
}

fn sessions(s: &Settings) -> SessionConfig {
    SessionConfig {
        store: s.session_store,
        dir: s.session_dir.clone(),
        // The bucket that already holds large answers, unless sessions have their own.
        bucket: trimmed(s.session_bucket.clone()).or_else(|| trimmed(s.result_bucket.clone())),
        key: trimmed(s.session_key.clone()).map(ApiKey),
        ttl: s.session_ttl_s,
        per_key: s.sessions_per_key,
        memory_max: s.session_memory_max_mib,
    }
}

fn offload(s: &Settings) -> OffloadConfig {
    OffloadConfig {
        bucket: trimmed(s.result_bucket.clone()),
        url_ttl: s.result_url_ttl_s,
        max_inline: s.max_inline_response_kib,
        endpoint_url: trimmed(s.s3_endpoint_url.clone()),
        force_path_style: s.s3_force_path_style,
    }
}

/// The text without surrounding whitespace; `None` when nothing is left (SAM passes an empty
/// parameter as an empty variable, which has always meant "unset").
fn trimmed(text: Option<String>) -> Option<String> {
    text.map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}
