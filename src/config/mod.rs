//! The service's typed settings, as the rest of the crate receives them, and how they are read:
//! declared once with clap in `settings.rs`, checked by the parsers in `values.rs`, assembled in
//! `convert.rs`. Environment variables are the primary interface (Cloud Run and Lambda set
//! them); every one is also a long flag, and nothing is required, so the binary starts with no
//! arguments at all. The README's settings table is generated from the same declarations
//! (`table.rs`).

mod convert;
pub mod keys;
mod settings;
pub mod table;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Command, FromArgMatches};
use thiserror::Error;

use crate::limits::{ByteSize, Limits};
use crate::sandbox::Isolation;
pub use keys::{ApiKey, ApiKeys, KeyQuota, NamedKey};
pub use settings::Settings;

/// A setting that could not be used: clap's message, which names the flag and, as the flag's
/// value name, the environment variable (`--max-timeout-s <MAX_TIMEOUT_S>`).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct ConfigError(#[from] clap::Error);

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// The platform's own: Cloud Logging's fields on Cloud Run, `AWS_LAMBDA_LOG_FORMAT` on
    /// Lambda, elsewhere JSON when stderr is not a terminal and text when it is.
    Auto,
    Json,
    Text,
    /// JSON with Cloud Logging's special fields (`severity`, `message`, `httpRequest`, the trace).
    CloudLogging,
}

/// Where the service runs, as the variables each platform sets say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// `AWS_LAMBDA_RUNTIME_API` is set: serve the Lambda Runtime API.
    Lambda,
    /// `K_SERVICE` is set: Google Cloud Run.
    CloudRun,
    Elsewhere,
}

/// How a Lambda function's responses travel (its function URL's `InvokeMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LambdaInvokeMode {
    /// The whole response at once (API Gateway, ALB, a BUFFERED function URL).
    #[value(name = "BUFFERED")]
    Buffered,
    /// Streamed as written (a RESPONSE_STREAM function URL): what streamed runs need.
    #[value(name = "RESPONSE_STREAM")]
    ResponseStream,
}

/// Where session states are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionStoreKind {
    Memory,
    Disk,
    S3,
}

/// Sessions: where their states are kept, sealed with what, for how long, how many.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    pub store: SessionStoreKind,
    pub dir: Option<PathBuf>,
    pub bucket: Option<String>,
    /// 32 bytes, base64; never printed.
    pub key: Option<ApiKey>,
    pub ttl: Duration,
    pub per_key: u32,
    pub memory_max: ByteSize,
}

/// Which sandbox runs scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SandboxChoice {
    /// nsjail where the platform allows namespaces, compat otherwise.
    Auto,
    Nsjail,
    Compat,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub port: u16,
    /// Where the layer (nsjail, Python runtime, harness, policy) lives; searched when unset.
    pub layer_dir: Option<PathBuf>,
    /// Default and maximum limits of one execution.
    pub limits: Limits,
    /// Largest accepted script, in UTF-8 bytes.
    pub max_script: ByteSize,
    /// Largest accepted request body (script, args and framing).
    pub max_body: ByteSize,
    /// What a request's input files may add up to.
    pub input_files: InputFileLimits,
    pub sandbox: SandboxChoice,
    pub templates: TemplateConfig,
    /// Executions that may run at once; more wait in a queue.
    pub max_concurrency: usize,
    /// How long a request may wait for an execution slot before it gets `OVERLOADED`.
    pub queue_wait: Duration,
    /// Layers that must be in force, or scripts are refused (`MIN_ISOLATION`, default seccomp).
    pub min_isolation: Isolation,
    /// With keys, `/execute`, `/mcp` and `/metrics` require `Authorization: Bearer <key>`.
    pub keys: ApiKeys,
    /// What the caller of each key name may use.
    pub key_quota: KeyQuota,
    pub shutdown: ShutdownConfig,
    pub platform: Platform,
    pub logs: LogConfig,
    pub metrics: MetricsConfig,
    pub cors: CorsConfig,
    /// How responses travel on Lambda.
    pub lambda_invoke_mode: LambdaInvokeMode,
    pub sessions: SessionConfig,
    /// Where responses too large to return inline go.
    pub offload: OffloadConfig,
    /// Bounds on clients of the HTTP server (slow or idle connections, how many at once).
    pub http: HttpConfig,
}

impl Config {
    /// Running under the AWS Lambda runtime (`AWS_LAMBDA_RUNTIME_API` is set).
    pub fn on_lambda(&self) -> bool {
        self.platform == Platform::Lambda
    }
}

/// After SIGTERM (src/http/server.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// How long running executions may take before they are ended.
    pub grace: Duration,
    /// How long the ended executions then get to send their answers.
    pub abort_grace: Duration,
}

/// How log lines are written and filtered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// Lambda's `AWS_LAMBDA_LOG_FORMAT` (`JSON` or `Text`), which `auto` follows there.
    pub lambda_format: Option<String>,
    /// Lambda's `AWS_LAMBDA_LOG_LEVEL`, which wins over `RUST_LOG` there.
    pub lambda_level: Option<String>,
}

/// `GET /metrics` and the Embedded Metric Format lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Served without a key even when keys are configured.
    pub public: bool,
    /// One EMF line per Lambda invocation.
    pub emf: bool,
    pub emf_namespace: String,
    /// The `FunctionName` dimension: Lambda's function name, else the namespace.
    pub emf_function: String,
}

/// Which browser origins may call the service; none means no CORS at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsConfig {
    pub origins: Vec<String>,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
}

/// Bounds on HTTP clients, so slow or idle ones cannot hold the service (src/http/server.rs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpConfig {
    /// Longest wait for a request's headers, from the connection's start or the previous
    /// response; it also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// Longest time to receive a request's whole body once its headers are in.
    pub body_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

/// The templates executions are forked from (see src/execute/templates/).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateConfig {
    /// Off: every request starts a fresh sandbox and interpreter (the cold path).
    pub enabled: bool,
    /// Modules the "data" template imports; scripts importing any of them are forked from it.
    pub preload: Vec<String>,
    /// Modules the "data" template adds to `preload` once a script imports one of them.
    pub preload_on_demand: Vec<String>,
    /// Executions each template keeps forked and isolated ahead of their request.
    pub spare_forks: usize,
    /// A template forks at most this many executions before it is replaced.
    pub max_forks: u32,
    /// A template serves for at most this long before it is replaced.
    pub max_age: Duration,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            preload: vec!["numpy".into(), "pandas".into()],
            preload_on_demand: ["matplotlib.pyplot", "scipy", "sklearn", "pyarrow"]
                .map(String::from)
                .into(),
            spare_forks: 1,
            max_forks: 5000,
            max_age: Duration::from_secs(600),
        }
    }
}

/// What a request's files may add up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputFileLimits {
    /// Most files in one request.
    pub max_files: usize,
    /// Largest file, decoded (the sandbox's file size limit: the script could not write a
    /// larger one either).
    pub max_file: ByteSize,
    /// All files together, decoded.
    pub max_total: ByteSize,
}

impl Default for InputFileLimits {
    fn default() -> Self {
        Self {
            max_files: 32,
            max_file: ByteSize::mib(1),
            max_total: ByteSize::mib(1),
        }
    }
}

/// S3 offload of responses too large to return inline (Lambda caps a response at 6 MB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffloadConfig {
    /// Without a bucket, an oversized response is a `RESULT_TOO_LARGE` error.
    pub bucket: Option<String>,
    /// How long a presigned URL stays valid.
    pub url_ttl: Duration,
    /// Largest response envelope returned inline.
    pub max_inline: ByteSize,
    /// A local S3 (tests, MinIO, moto); unset means AWS's own endpoint for the region.
    pub endpoint_url: Option<String>,
    /// Path-style URLs (`endpoint/bucket/key`), which local S3 servers usually need.
    pub force_path_style: bool,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            bucket: None,
            url_ttl: Duration::from_secs(900),
            // Lambda's cap is 6 MiB for the whole payload, whose JSON framing (status, headers,
            // the body as a JSON string) needs some room of its own.
            max_inline: ByteSize::kib(6000),
            endpoint_url: None,
            force_path_style: false,
        }
    }
}

/// A command of the settings alone, as the README's table and [`Config::from_lookup`] see them.
pub fn command() -> Command {
    Settings::augment_args(Command::new(env!("CARGO_PKG_NAME")))
}

impl Default for Config {
    /// The declared defaults, so they exist in one place only.
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the declared defaults are valid settings")
    }
}

impl Config {
    /// Reads the process environment (and no command line).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` instead of the process environment, so tests can supply
    /// an environment of their own: each variable `lookup` knows becomes its flag, parsed by the
    /// same declarations as the binary's command line.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let command = command();
        let mut argv = vec![env!("CARGO_PKG_NAME").to_owned()];
        for arg in command.get_arguments() {
            let (Some(name), Some(long)) = (arg.get_env().and_then(|n| n.to_str()), arg.get_long())
            else {
                continue;
            };
            if let Some(value) = lookup(name) {
                argv.push(format!("--{long}={value}"));
            }
        }
        // Only `lookup` may supply values: the process's own environment stays out of it.
        let command = command.mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(argv)?;
        Ok(Settings::from_arg_matches(&matches)?.into())
    }
}

#[cfg(test)]
mod tests;
