//! The service's settings, read once from the environment, validated before anything starts.
//!
//! Every setting is optional; the defaults are DESIGN.md's. Names carry their unit (`_S`, `_KIB`,
//! `_MIB`) so a deployer never has to guess it. The README's configuration table lists them all.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::limits::{ByteSize, Limits};
pub use crate::offload::OffloadConfig;
use crate::sandbox::isolation::Isolation;

/// A setting that could not be used, named so the operator can fix it.
#[derive(Debug, Error)]
#[error("invalid setting {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal (Cloud Run, Lambda, CI), human text otherwise.
    Auto,
    Json,
    Text,
}

/// Which sandbox runs scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    pub log_format: LogFormat,
    pub sandbox: SandboxChoice,
    pub pool: PoolConfig,
    /// Executions that may run at once; more wait in a queue.
    pub max_concurrency: usize,
    /// How long a request may wait for an execution slot before it gets `OVERLOADED`.
    pub queue_wait: Duration,
    /// Layers that must be in force, or scripts are refused (`MIN_ISOLATION`, default seccomp).
    pub min_isolation: Isolation,
    /// With a key, `/execute` requires `Authorization: Bearer <key>`.
    pub api_key: Option<ApiKey>,
    /// After SIGTERM, how long running executions may take before they are killed.
    pub shutdown_grace: Duration,
    /// Running under the AWS Lambda runtime (`AWS_LAMBDA_RUNTIME_API` is set).
    pub lambda: bool,
    /// Where responses too large to return inline go.
    pub offload: OffloadConfig,
    /// Bounds on clients of the HTTP server (slow or idle connections, how many at once).
    pub http: HttpConfig,
}

/// Bounds on HTTP clients, so slow or idle ones cannot hold the service (src/server.rs).
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

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            // hyper's own default: ample for any real client's headers, short enough that idle
            // and stalled connections do not pile up.
            header_read_timeout: Duration::from_secs(30),
            // A 1 MiB body at a slow 50 KiB/s still arrives in time.
            body_read_timeout: Duration::from_secs(30),
            // Far above Cloud Run's highest per-instance concurrency (1000 is its maximum,
            // 80 its default) would only add open files; 512 leaves room for the sandboxes'.
            max_connections: 512,
        }
    }
}

/// The pool of sandboxes started ahead of time (see src/pool/).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// The most warm sandboxes kept per preload set; 0 turns the pool off.
    pub size: usize,
    /// A warm sandbox unused for this long is destroyed.
    pub idle: Duration,
    /// Modules preloaded in the "data" sandboxes; scripts importing any of them are sent there.
    pub preload: Vec<String>,
    /// How far back demand is counted when sizing each pool.
    pub demand_window: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            size: 2,
            idle: Duration::from_secs(60),
            preload: vec!["numpy".into(), "pandas".into()],
            demand_window: Duration::from_secs(60),
        }
    }
}

/// Two executions per core: most of a script's life is CPU-bound, and the rest (starting,
/// waiting on pipes) overlaps well with another's.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2)
}

/// The API key; never printed, not even in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            port: 8080,
            layer_dir: None,
            limits: Limits::default(),
            max_script: ByteSize::kib(50),
            max_body: ByteSize::mib(1),
            log_format: LogFormat::Auto,
            sandbox: SandboxChoice::Auto,
            pool: PoolConfig::default(),
            max_concurrency: default_concurrency(),
            queue_wait: Duration::from_secs(10),
            min_isolation: Isolation {
                seccomp: true,
                ..Isolation::default()
            },
            api_key: None,
            // Cloud Run gives a container 10 s between SIGTERM and SIGKILL.
            shutdown_grace: Duration::from_secs(10),
            lambda: false,
            offload: OffloadConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can supply an environment of their own.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let defaults = Self::default();
        let d = &defaults.limits;
        let limits = Limits {
            wall: env.seconds("MAX_TIMEOUT_S", d.wall)?,
            cpu: env.seconds("CPU_LIMIT_S", d.cpu)?,
            memory: env.size("MEMORY_LIMIT_MIB", d.memory, ByteSize::mib)?,
            file_size: env.size("FILE_SIZE_LIMIT_KIB", d.file_size, ByteSize::kib)?,
            processes: env.positive("MAX_PROCESSES", d.processes)?,
            open_files: env.positive("MAX_OPEN_FILES", d.open_files)?,
            stdout: env.size("MAX_STDOUT_KIB", d.stdout, ByteSize::kib)?,
            stderr: env.size("MAX_STDERR_KIB", d.stderr, ByteSize::kib)?,
            result: env.size("MAX_RESULT_KIB", d.result, ByteSize::kib)?,
        };
        Ok(Self {
            port: env.parse("PORT", defaults.port)?,
            layer_dir: env.text("LAYER_DIR").map(PathBuf::from),
            limits,
            max_script: env.size("MAX_SCRIPT_KIB", defaults.max_script, ByteSize::kib)?,
            max_body: env.size("MAX_BODY_KIB", defaults.max_body, ByteSize::kib)?,
            log_format: env.log_format()?,
            sandbox: env.sandbox_choice()?,
            pool: env.pool(&defaults.pool)?,
            max_concurrency: env
                .parse("MAX_CONCURRENCY", defaults.max_concurrency)?
                .max(1),
            queue_wait: Duration::from_millis(
                env.parse("QUEUE_WAIT_MS", defaults.queue_wait.as_millis() as u64)?,
            ),
            min_isolation: env.isolation("MIN_ISOLATION", defaults.min_isolation)?,
            api_key: env.text("API_KEY").map(|key| ApiKey(key.trim().to_owned())),
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_S", defaults.shutdown_grace)?,
            lambda: env.text("AWS_LAMBDA_RUNTIME_API").is_some(),
            offload: env.offload()?,
            http: env.http(&defaults.http)?,
        })
    }
}

/// Typed access to the lookup function, with errors that name the variable.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn text(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.trim().is_empty())
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError {
                name,
                value,
                reason: "not a valid number".into(),
            }),
        }
    }

    fn positive(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        let value = self.parse(name, default)?;
        if value == 0 {
            return Err(invalid(name, "0", "must be at least 1"));
        }
        Ok(value)
    }

    fn seconds(&self, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
        let seconds: f64 = self.parse(name, default.as_secs_f64())?;
        if !(seconds > 0.0 && seconds <= 3600.0) {
            let shown = seconds.to_string();
            return Err(invalid(name, &shown, "must be between 0 and 3600 seconds"));
        }
        Ok(Duration::from_secs_f64(seconds))
    }

    fn size(
        &self,
        name: &'static str,
        default: ByteSize,
        unit: fn(u64) -> ByteSize,
    ) -> Result<ByteSize, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(_) => Ok(unit(u64::from(self.positive(name, 1)?))),
        }
    }

    fn pool(&self, defaults: &PoolConfig) -> Result<PoolConfig, ConfigError> {
        let preload = match self.text("POOL_PRELOAD") {
            None => defaults.preload.clone(),
            Some(list) => module_list(&list)?,
        };
        Ok(PoolConfig {
            size: self.parse("POOL_SIZE", defaults.size)?,
            idle: self.seconds("POOL_IDLE_S", defaults.idle)?,
            preload,
            demand_window: self.seconds("POOL_DEMAND_WINDOW_S", defaults.demand_window)?,
        })
    }

    fn http(&self, defaults: &HttpConfig) -> Result<HttpConfig, ConfigError> {
        Ok(HttpConfig {
            header_read_timeout: self
                .seconds("HEADER_READ_TIMEOUT_S", defaults.header_read_timeout)?,
            body_read_timeout: self.seconds("BODY_READ_TIMEOUT_S", defaults.body_read_timeout)?,
            max_connections: self.positive("MAX_CONNECTIONS", defaults.max_connections as u32)?
                as usize,
        })
    }

    fn offload(&self) -> Result<OffloadConfig, ConfigError> {
        let d = OffloadConfig::default();
        let ttl_s: u64 = self.parse("RESULT_URL_TTL_S", d.url_ttl.as_secs())?;
        // SigV4 presigned URLs are valid for at most 7 days.
        if !(1..=7 * 24 * 3600).contains(&ttl_s) {
            let shown = ttl_s.to_string();
            return Err(invalid(
                "RESULT_URL_TTL_S",
                &shown,
                "must be between 1 and 604800 seconds",
            ));
        }
        let url_ttl = Duration::from_secs(ttl_s);
        Ok(OffloadConfig {
            bucket: self.text("RESULT_BUCKET").map(|b| b.trim().to_owned()),
            url_ttl,
            max_inline: self.size("MAX_INLINE_RESPONSE_KIB", d.max_inline, ByteSize::kib)?,
            endpoint_url: self.text("S3_ENDPOINT_URL").map(|u| u.trim().to_owned()),
            force_path_style: self.flag("S3_FORCE_PATH_STYLE")?,
        })
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.text(name).as_deref().map(str::trim) {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("1" | "true" | "yes") => Ok(true),
            Some(other) => Err(invalid(name, other, "expected 1 or 0")),
        }
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.text("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("auto") => Ok(LogFormat::Auto),
            Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => Err(invalid("LOG_FORMAT", other, "expected auto, json or text")),
        }
    }

    fn isolation(&self, name: &'static str, default: Isolation) -> Result<Isolation, ConfigError> {
        match self.text(name) {
            None => Ok(default),
            Some(value) => {
                Isolation::parse(&value).map_err(|reason| invalid(name, &value, &reason))
            }
        }
    }

    fn sandbox_choice(&self) -> Result<SandboxChoice, ConfigError> {
        // The seeds' FORCE_COMPAT=1 wins over SANDBOX, as their deployment instructions rely on it.
        if let Some(force) = self.text("FORCE_COMPAT") {
            match force.trim() {
                "1" | "true" | "yes" => return Ok(SandboxChoice::Compat),
                "0" | "false" | "no" => {}
                other => return Err(invalid("FORCE_COMPAT", other, "expected 1 or 0")),
            }
        }
        match self.text("SANDBOX").as_deref().map(str::trim) {
            None | Some("auto") => Ok(SandboxChoice::Auto),
            Some("nsjail") => Ok(SandboxChoice::Nsjail),
            Some("compat") => Ok(SandboxChoice::Compat),
            Some(other) => Err(invalid("SANDBOX", other, "expected auto, nsjail or compat")),
        }
    }
}

/// A comma-separated list of importable top-level module names (passed to the harness).
fn module_list(list: &str) -> Result<Vec<String>, ConfigError> {
    let modules: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    let valid = |name: &String| {
        name.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && part.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        })
    };
    match modules.iter().find(|name| !valid(name)) {
        Some(bad) => Err(invalid(
            "POOL_PRELOAD",
            list,
            &format!("{bad:?} is not a module name"),
        )),
        None => Ok(modules),
    }
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_are_the_designs() {
        let config = config(&[]).expect("defaults are valid");
        assert_eq!(config.port, 8080);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.max_script, ByteSize::kib(50));
        assert_eq!(config.sandbox, SandboxChoice::Auto);
    }

    #[test]
    fn units_are_applied_once() {
        let config = config(&[("MEMORY_LIMIT_MIB", "256"), ("MAX_SCRIPT_KIB", "10")])
            .expect("valid settings");
        assert_eq!(config.limits.memory.as_bytes(), 256 * 1024 * 1024);
        assert_eq!(config.max_script.as_bytes(), 10 * 1024);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let error = config(&[("MAX_TIMEOUT_S", "soon")]).expect_err("not a number");
        assert_eq!(error.name, "MAX_TIMEOUT_S");
        let error = config(&[("MAX_PROCESSES", "0")]).expect_err("zero processes");
        assert_eq!(error.name, "MAX_PROCESSES");
        let error = config(&[("MAX_TIMEOUT_S", "-1")]).expect_err("negative");
        assert_eq!(error.name, "MAX_TIMEOUT_S");
    }

    #[test]
    fn pool_settings() {
        let config =
            config(&[("POOL_SIZE", "0"), ("POOL_PRELOAD", "numpy, scipy.stats")]).expect("valid");
        assert_eq!(config.pool.size, 0);
        assert_eq!(config.pool.preload, vec!["numpy", "scipy.stats"]);
        let error = config_error(&[("POOL_PRELOAD", "numpy;rm -rf")]);
        assert_eq!(error.name, "POOL_PRELOAD");
    }

    fn config_error(pairs: &[(&str, &str)]) -> ConfigError {
        config(pairs).expect_err("invalid")
    }

    #[test]
    fn isolation_minimum_and_api_key() {
        let defaults = config(&[]).expect("defaults");
        assert_eq!(defaults.min_isolation.names(), ["seccomp"]);
        assert_eq!(defaults.api_key, None);
        let config =
            config(&[("MIN_ISOLATION", "seccomp,landlock"), ("API_KEY", "s3cret")]).expect("valid");
        assert_eq!(config.min_isolation.names(), ["seccomp", "landlock"]);
        assert_eq!(config.api_key, Some(ApiKey("s3cret".into())));
        assert!(!format!("{config:?}").contains("s3cret"));
        let error = config_error(&[("MIN_ISOLATION", "chroot")]);
        assert_eq!(error.name, "MIN_ISOLATION");
    }

    #[test]
    fn offload_settings() {
        let defaults = config(&[]).expect("defaults");
        assert_eq!(defaults.offload, OffloadConfig::default());
        assert!(!defaults.lambda);
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
        assert!(set.lambda);
        let error = config(&[("RESULT_URL_TTL_S", "700000")]).expect_err("over 7 days");
        assert_eq!(error.name, "RESULT_URL_TTL_S");
    }

    #[test]
    fn http_settings() {
        assert_eq!(config(&[]).expect("defaults").http, HttpConfig::default());
        let set = config(&[
            ("HEADER_READ_TIMEOUT_S", "1"),
            ("BODY_READ_TIMEOUT_S", "2.5"),
            ("MAX_CONNECTIONS", "3"),
        ])
        .expect("valid");
        assert_eq!(set.http.header_read_timeout, Duration::from_secs(1));
        assert_eq!(set.http.body_read_timeout, Duration::from_millis(2500));
        assert_eq!(set.http.max_connections, 3);
        assert_eq!(
            config_error(&[("MAX_CONNECTIONS", "0")]).name,
            "MAX_CONNECTIONS"
        );
    }

    #[test]
    fn force_compat_overrides_sandbox() {
        let config = config(&[("FORCE_COMPAT", "1"), ("SANDBOX", "nsjail")]).expect("valid");
        assert_eq!(config.sandbox, SandboxChoice::Compat);
    }
}
