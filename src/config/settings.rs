//! Every setting, declared once: its environment variable, its long flag, its default, its check
//! and the line that `--help` and the README's table show for it.
//!
//! A field is named after its variable (`max_timeout_s` is `MAX_TIMEOUT_S` and
//! `--max-timeout-s`), so clap derives both names, and the value name in `--help` and in error
//! messages, from the one identifier. Names carry their unit (`_S`, `_MS`, `_KIB`, `_MIB`) so a
//! deployer never has to guess it; the parsers in `values.rs` turn each into its typed value.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{EnumValueParser, OsStringValueParser, TypedValueParser};
use clap::{ArgAction, Args};

use super::keys::{key_file, KeyList, KeyListParser};
use super::values::{
    auto_switch, concurrency, connections, count, isolation, kib, mib, millis, modules, number,
    origins, seconds, spare_forks, switch, url_ttl, whole_seconds, AutoSwitch, Lenient, Modules,
    Origins,
};
use super::{LambdaInvokeMode, LogFormat, SandboxChoice, SessionStoreKind};
use crate::limits::ByteSize;
use crate::sandbox::Isolation;

const LIMITS: &str = "Limits of one execution";
const REQUESTS: &str = "Requests and the queue";
const TEMPLATES: &str = "Templates";
const SANDBOX: &str = "Sandbox";
const OFFLOAD: &str = "Large responses";
const SERVICE: &str = "Service";
const KEYS: &str = "Keys and quotas";
const OPERATIONS: &str = "Logs, metrics and browsers";
const SESSIONS: &str = "Sessions";

/// The settings as given, before they are assembled into a `Config`.
#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Wall-clock deadline of an execution, and the most a request's timeout_s can ask for
    #[arg(long, env, default_value = "15", value_parser = Lenient(seconds), help_heading = LIMITS)]
    pub max_timeout_s: Duration,
    /// CPU time of each process (rounded up to whole seconds)
    #[arg(long, env, default_value = "10", value_parser = Lenient(seconds), help_heading = LIMITS)]
    pub cpu_limit_s: Duration,
    /// Memory of the whole sandbox: every process of the script and its /tmp
    #[arg(long, env, default_value = "700", value_parser = Lenient(mib), help_heading = LIMITS)]
    pub memory_limit_mib: ByteSize,
    /// Processes and threads of the whole sandbox
    #[arg(long, env, default_value = "64", value_parser = Lenient(count), help_heading = LIMITS)]
    pub max_processes: u32,
    /// Open file descriptors per process
    #[arg(long, env, default_value = "64", value_parser = Lenient(count), help_heading = LIMITS)]
    pub max_open_files: u32,
    /// Largest file a script may write (rounded up to whole MiB under nsjail)
    #[arg(long, env, default_value = "1024", value_parser = Lenient(kib), help_heading = LIMITS)]
    pub file_size_limit_kib: ByteSize,
    /// Captured stdout; the rest is discarded and flagged in truncated
    #[arg(long, env, default_value = "1024", value_parser = Lenient(kib), help_heading = LIMITS)]
    pub max_stdout_kib: ByteSize,
    /// Captured stderr; the rest is discarded and flagged in truncated
    #[arg(long, env, default_value = "1024", value_parser = Lenient(kib), help_heading = LIMITS)]
    pub max_stderr_kib: ByteSize,
    /// Largest serialized result
    #[arg(long, env, default_value = "5120", value_parser = Lenient(kib), help_heading = LIMITS)]
    pub max_result_kib: ByteSize,
    /// Most files a script may return from outputs/ (more is TOO_MANY_OUTPUT_FILES, never a cut)
    #[arg(long, env, default_value = "32", value_parser = Lenient(count), help_heading = LIMITS)]
    pub max_output_files: u32,
    /// Files returned from outputs/ together (before base64; more is OUTPUT_FILES_TOO_LARGE)
    // Each file is also held to FILE_SIZE_LIMIT_KIB when it is written.
    #[arg(long, env, default_value = "8192", value_parser = Lenient(kib), help_heading = LIMITS)]
    pub max_output_files_kib: ByteSize,

    /// Largest script
    #[arg(long, env, default_value = "50", value_parser = Lenient(kib), help_heading = REQUESTS)]
    pub max_script_kib: ByteSize,
    /// Largest request body (script plus args and files)
    #[arg(long, env, default_value = "1024", value_parser = Lenient(kib), help_heading = REQUESTS)]
    pub max_body_kib: ByteSize,
    /// Most input files in a request
    #[arg(long, env, default_value = "32", value_parser = Lenient(count), help_heading = REQUESTS)]
    pub max_input_files: u32,
    /// Input files together, decoded (each is also held to FILE_SIZE_LIMIT_KIB, all to MAX_BODY_KIB)
    #[arg(long, env, default_value = "1024", value_parser = Lenient(kib), help_heading = REQUESTS)]
    pub max_input_files_kib: ByteSize,
    /// Executions at once, auto meaning two per core; more wait in a queue
    #[arg(long, env, default_value = "auto", value_parser = Lenient(concurrency), help_heading = REQUESTS)]
    pub max_concurrency: usize,
    /// Longest wait for a slot before OVERLOADED (503, Retry-After: 1)
    #[arg(long, env, default_value = "10000", value_parser = Lenient(millis), help_heading = REQUESTS)]
    pub queue_wait_ms: Duration,
    /// Longest wait for a request's headers (also closes idle keep-alive connections)
    // hyper's own default: ample for any real client, short enough that stalled connections
    // do not pile up.
    #[arg(long, env, default_value = "30", value_parser = Lenient(seconds), help_heading = REQUESTS)]
    pub header_read_timeout_s: Duration,
    /// Longest time to receive a whole request body once its headers are in (then 408)
    // A 1 MiB body at a slow 50 KiB/s still arrives in time.
    #[arg(long, env, default_value = "30", value_parser = Lenient(seconds), help_heading = REQUESTS)]
    pub body_read_timeout_s: Duration,
    /// Connections served at once; more wait in the kernel's accept queue
    // Above Cloud Run's highest per-instance concurrency (1000 max, 80 by default) would only
    // add open files; 512 leaves room for the sandboxes'.
    #[arg(long, env, default_value = "512", value_parser = Lenient(connections), help_heading = REQUESTS)]
    pub max_connections: usize,

    /// 1 forks every execution from a template that has its modules imported; 0 starts a fresh sandbox (and interpreter) per request
    #[arg(long, env, action = ArgAction::Set, default_value = "1", value_parser = Lenient(switch), help_heading = TEMPLATES)]
    pub templates: bool,
    /// Modules the data template imports once, for every script that imports any of them (comma-separated, or none)
    #[arg(long, env, default_value = "numpy,pandas", value_parser = Lenient(modules), help_heading = TEMPLATES)]
    pub preload: Modules,
    /// Packages the data template grows by once a script imports them (comma-separated, or none): it then also preloads the module named here and the modules of its package the script imported, so their memory is spent only where they are used
    #[arg(long, env, default_value = "matplotlib.pyplot,scipy,sklearn,pyarrow", value_parser = Lenient(modules), help_heading = TEMPLATES)]
    pub preload_on_demand: Modules,
    /// Executions each template keeps forked and isolated ahead of their request (0: each request forks its own)
    #[arg(long, env, default_value = "1", value_parser = Lenient(spare_forks), help_heading = TEMPLATES)]
    pub spare_forks: usize,
    /// A template is replaced after forking this many executions (its forks share its hash seed and memory layout); its replacement starts at half of it
    #[arg(long, env, default_value = "5000", value_parser = Lenient(count), help_heading = TEMPLATES)]
    pub template_max_forks: u32,
    /// A template is replaced after this many seconds, as after TEMPLATE_MAX_FORKS
    #[arg(long, env, default_value = "600", value_parser = Lenient(seconds), help_heading = TEMPLATES)]
    pub template_max_age_s: Duration,

    /// Which sandbox runs scripts: nsjail, compat, or auto (nsjail where the platform allows namespaces)
    #[arg(long, env, default_value = "auto", value_parser = Lenient(EnumValueParser::<SandboxChoice>::new()), help_heading = SANDBOX)]
    pub sandbox: SandboxChoice,
    /// 1 forces the compat sandbox whatever SANDBOX says (the switch earlier deployment instructions use)
    #[arg(long, env, action = ArgAction::Set, default_value = "0", value_parser = Lenient(switch), help_heading = SANDBOX)]
    pub force_compat: bool,
    /// Layers that must be in force (namespaces, cgroups, seccomp, no_new_privs, landlock, signal_guard, or none), or every execution is refused
    #[arg(long, env, default_value = "seccomp", value_parser = Lenient(isolation), help_heading = SANDBOX)]
    pub min_isolation: Isolation,
    /// The built layer (a relative path is taken from the working directory at start); when unset, /opt, else the checkout's layer/out
    // Any text: a blank one means unset (convert.rs), where clap's own path parser refuses it.
    #[arg(long, env, value_parser = OsStringValueParser::new().map(PathBuf::from), help_heading = SANDBOX)]
    pub layer_dir: Option<PathBuf>,

    /// S3 bucket for responses too large to return inline; unset means RESULT_TOO_LARGE
    #[arg(long, env, help_heading = OFFLOAD)]
    pub result_bucket: Option<String>,
    /// Lifetime of a presigned URL for an offloaded result
    #[arg(long, env, default_value = "900", value_parser = Lenient(url_ttl), help_heading = OFFLOAD)]
    pub result_url_ttl_s: Duration,
    /// Largest response returned inline (measured as Lambda will carry it)
    #[arg(long, env, default_value = "6000", value_parser = Lenient(kib), help_heading = OFFLOAD)]
    pub max_inline_response_kib: ByteSize,
    /// A local S3 (moto, MinIO) instead of AWS's endpoint for the region
    #[arg(long, env, help_heading = OFFLOAD)]
    pub s3_endpoint_url: Option<String>,
    /// Path-style S3 URLs, which local S3 servers usually need
    #[arg(long, env, action = ArgAction::Set, default_value = "0", value_parser = Lenient(switch), help_heading = OFFLOAD)]
    pub s3_force_path_style: bool,

    /// HTTP port (Cloud Run sets it)
    #[arg(long, env, default_value = "8080", value_parser = Lenient(number::<u16>), help_heading = SERVICE)]
    pub port: u16,
    /// After SIGTERM, how long running executions may finish before they are ended
    // With the abort grace below, 9 s: Cloud Run sends SIGKILL 10 s after SIGTERM.
    #[arg(long, env, default_value = "7", value_parser = Lenient(seconds), help_heading = SERVICE)]
    pub shutdown_grace_s: Duration,
    /// After SHUTDOWN_GRACE_S, how long the ended executions get to send their answers before the service exits
    #[arg(long, env, default_value = "2", value_parser = Lenient(seconds), help_heading = SERVICE)]
    pub shutdown_abort_grace_s: Duration,
    /// On Lambda, how responses travel: BUFFERED, or RESPONSE_STREAM (the function URL's streaming invoke mode, which streamed runs need; every other answer works in it too)
    #[arg(long, env, default_value = "BUFFERED", value_parser = Lenient(EnumValueParser::<LambdaInvokeMode>::new()), help_heading = SERVICE)]
    pub lambda_invoke_mode: LambdaInvokeMode,
    /// Where session states are kept: memory (one instance), disk (SESSION_DIR, one instance) or s3 (SESSION_BUCKET: any instance continues any session)
    #[arg(long, env, default_value = "memory", value_parser = Lenient(EnumValueParser::<SessionStoreKind>::new()), help_heading = SESSIONS)]
    pub session_store: SessionStoreKind,
    /// The directory of the disk store
    #[arg(long, env, value_parser = OsStringValueParser::new().map(PathBuf::from), help_heading = SESSIONS)]
    pub session_dir: Option<PathBuf>,
    /// The bucket of the s3 store (defaults to RESULT_BUCKET)
    #[arg(long, env, help_heading = SESSIONS)]
    pub session_bucket: Option<String>,
    /// Secret the key that seals session states is derived from, 32 characters or more, the same on every instance; unset, a random key per process (states then die with it, and cannot move between instances)
    #[arg(long, env, hide_env_values = true, help_heading = SESSIONS)]
    pub session_key: Option<String>,
    /// A session not used for this long expires
    #[arg(long, env, default_value = "3600", value_parser = Lenient(seconds), help_heading = SESSIONS)]
    pub session_ttl_s: Duration,
    /// Largest state a session saves (its variables and files, pickled); a call that would save more answers SESSION_TOO_LARGE
    #[arg(long, env, default_value = "32", value_parser = Lenient(mib), help_heading = SESSIONS)]
    pub session_state_max_mib: ByteSize,
    /// Sessions one API key may hold at once
    #[arg(long, env, default_value = "100", value_parser = Lenient(count), help_heading = SESSIONS)]
    pub sessions_per_key: u32,
    /// What the memory store holds at most, all sessions together (the soonest to expire go first)
    #[arg(long, env, default_value = "256", value_parser = Lenient(mib), help_heading = SESSIONS)]
    pub session_memory_max_mib: ByteSize,
    /// Set by AWS Lambda, never by hand: serve the Lambda Runtime API instead of HTTP. Hidden,
    /// because the Lambda runtime reads the variable itself and a flag could not reach it.
    #[arg(long, env, hide = true)]
    pub aws_lambda_runtime_api: Option<String>,
    /// Set by Cloud Run (the service's name): the service runs there. Hidden, like the above.
    #[arg(long, env, hide = true)]
    pub k_service: Option<String>,

    /// One key, named default: requests to /execute, /mcp and /metrics then need Authorization: Bearer <key> (compared in constant time)
    #[arg(long, env, hide_env_values = true, help_heading = KEYS)]
    pub api_key: Option<String>,
    /// Named keys, any of which is accepted (rotation, one per caller): NAME=KEY entries separated by commas or newlines, or a JSON object {"NAME": "KEY" or ["KEY", ...]}; the name, never the key, goes to logs and metrics
    #[arg(long, env, hide_env_values = true, value_parser = Lenient(KeyListParser), help_heading = KEYS)]
    pub api_keys: Option<KeyList>,
    /// A file holding named keys as API_KEYS does (a mounted secret), read once at start
    #[arg(long, env, value_parser = Lenient(key_file), help_heading = KEYS)]
    pub api_keys_file: Option<KeyList>,
    /// Requests one key's name may have in flight at once (0: no limit); more are answered 429 QUOTA_EXCEEDED
    #[arg(long, env, default_value = "0", value_parser = Lenient(number::<u32>), help_heading = KEYS)]
    pub key_max_concurrency: u32,
    /// Requests one key's name may start per minute (0: no limit); more are answered 429 QUOTA_EXCEEDED with Retry-After
    #[arg(long, env, default_value = "0", value_parser = Lenient(number::<u32>), help_heading = KEYS)]
    pub key_rate_per_min: u32,

    /// Log lines as json, text, cloud-logging (Cloud Logging's own fields), or auto: cloud-logging on Cloud Run, AWS_LAMBDA_LOG_FORMAT on Lambda, elsewhere JSON unless stderr is a terminal
    #[arg(long, env, default_value = "auto", value_parser = Lenient(EnumValueParser::<LogFormat>::new()), help_heading = OPERATIONS)]
    pub log_format: LogFormat,
    /// 1 serves GET /metrics without an API key (for a scraper on a private network); 0 asks for one whenever keys are configured
    #[arg(long, env, action = ArgAction::Set, default_value = "0", value_parser = Lenient(switch), help_heading = OPERATIONS)]
    pub metrics_public: bool,
    /// Write each request's figures as a CloudWatch Embedded Metric Format line on stdout (on Lambda, one per invocation): 1, 0, or auto (on Lambda only)
    #[arg(long, env, default_value = "auto", value_parser = Lenient(auto_switch), help_heading = OPERATIONS)]
    pub metrics_emf: AutoSwitch,
    /// The CloudWatch namespace of the Embedded Metric Format lines
    #[arg(long, env, default_value = "python-executor", help_heading = OPERATIONS)]
    pub metrics_emf_namespace: String,
    /// Origins browsers may call the service from, comma-separated (https://app.example.com); unset: no CORS headers, and preflight requests are refused
    #[arg(long, env, value_parser = Lenient(origins), help_heading = OPERATIONS)]
    pub cors_allow_origins: Option<Origins>,
    /// How long a browser may cache a preflight answer
    #[arg(long, env, default_value = "600", value_parser = Lenient(whole_seconds), help_heading = OPERATIONS)]
    pub cors_max_age_s: Duration,
    /// Set by Lambda from the function's log format (JSON or Text); read when LOG_FORMAT is auto.
    #[arg(long, env, hide = true)]
    pub aws_lambda_log_format: Option<String>,
    /// Set by Lambda from the function's application log level; it wins over RUST_LOG there.
    #[arg(long, env, hide = true)]
    pub aws_lambda_log_level: Option<String>,
    /// Set by Lambda: the function's name, the FunctionName dimension of the EMF lines.
    #[arg(long, env, hide = true)]
    pub aws_lambda_function_name: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Command, CommandFactory, Parser};

    #[derive(Parser, Debug)]
    struct Only {
        #[command(flatten)]
        settings: Settings,
    }

    fn command() -> Command {
        Only::command()
    }

    #[test]
    fn the_declarations_are_consistent() {
        command().debug_assert();
    }

    #[test]
    fn flag_value_name_and_variable_are_one_name() {
        for arg in command()
            .get_arguments()
            .filter(|arg| arg.get_env().is_some())
        {
            let env = arg.get_env().and_then(|env| env.to_str()).expect("utf-8");
            let long = arg.get_long().expect("a long flag");
            assert_eq!(long, env.to_lowercase().replace('_', "-"));
            let names = arg.get_value_names().expect("a value name");
            assert_eq!(names.iter().map(|n| n.as_str()).collect::<Vec<_>>(), [env]);
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(
                !help.is_empty() && !help.contains('\n'),
                "{env}: one line of help"
            );
        }
    }
}
