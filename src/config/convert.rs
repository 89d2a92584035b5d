//! Assembling the checked settings into the `Config` the rest of the crate receives. Nothing is
//! parsed here (the values are typed already); this only groups them and applies the two rules
//! that span settings: FORCE_COMPAT wins over SANDBOX, and a blank text setting means unset.

use super::{
    ApiKey, Config, HttpConfig, InputFileLimits, OffloadConfig, SandboxChoice, SessionConfig,
    Settings, TemplateConfig,
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
            log_format: s.log_format,
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
            api_key: trimmed(s.api_key.clone()).map(ApiKey),
            shutdown_grace: s.shutdown_grace_s,
            lambda: trimmed(s.aws_lambda_runtime_api.clone()).is_some(),
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
