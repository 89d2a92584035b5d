//! The full sandbox: nsjail with every namespace, the reviewed policy file, and per-request
//! values passed as flags after `--config` (never templated into the policy). The system-call
//! policy is the service's own (`sandbox::seccomp`), handed to the harness, which installs it
//! inside the jail before anything else.

use std::ffi::OsString;
use std::path::PathBuf;

use super::isolation::Isolation;
use super::seccomp::{Policy, SignalScope};
use super::{harness_options, LaunchPlan, Sandbox, SandboxError, SandboxKind};
use crate::layer::Layer;
use crate::limits::Limits;

/// Where the layer's pieces appear inside the jail, wherever they are on the host.
const JAIL_PYTHON_DIR: &str = "/opt/python";
const JAIL_HARNESS_DIR: &str = "/opt/harness";
/// The unprivileged uid and gid the script runs as inside the jail ("nobody").
const JAIL_ID: u32 = 65534;
/// nsjail's own time limit is a backstop behind the service's deadline, never the first to fire.
const BACKSTOP_MARGIN_S: u64 = 5;

#[derive(Debug)]
pub struct NsjailSandbox {
    nsjail: PathBuf,
    config: PathBuf,
    python_dir: PathBuf,
    harness_dir: PathBuf,
    /// The host uid and gid the jail's 65534 maps to.
    outside_uid: u32,
    outside_gid: u32,
    /// Without per-execution cgroups, RLIMIT_NPROC is the only process limit left.
    process_rlimit: bool,
    isolation: Isolation,
    /// The compiled system-call policy, as the harness's `--seccomp` argument.
    seccomp: Option<String>,
}

impl NsjailSandbox {
    pub fn new(layer: &Layer, isolation: Isolation) -> Result<Self, SandboxError> {
        let nsjail = layer.nsjail();
        if !nsjail.is_file() {
            return Err(SandboxError::Unavailable(format!(
                "nsjail is missing at {}",
                nsjail.display()
            )));
        }
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        // As root, map to the host's nobody so an escaped process owns nothing; otherwise only
        // our own uid can be mapped.
        let (outside_uid, outside_gid) = if uid == 0 {
            (JAIL_ID, JAIL_ID)
        } else {
            (uid, gid)
        };
        Ok(Self {
            nsjail,
            config: layer.nsjail_config(),
            python_dir: layer.python_dir(),
            harness_dir: layer.harness_dir(),
            outside_uid,
            outside_gid,
            process_rlimit: !isolation.cgroups,
            seccomp: isolation
                .seccomp
                .then(|| Policy::build(SignalScope::Namespace))
                .transpose()
                .map_err(|error| SandboxError::Unavailable(error.to_string()))?
                .map(|policy| policy.to_harness_argument()),
            isolation,
        })
    }

    fn flags(&self, limits: &Limits) -> Vec<String> {
        let mut flags = vec![
            "--log_fd".into(),
            "4".into(),
            "--pass_fd".into(),
            "3".into(),
            "--user".into(),
            format!("{JAIL_ID}:{}:1", self.outside_uid),
            "--group".into(),
            format!("{JAIL_ID}:{}:1", self.outside_gid),
            "--bindmount_ro".into(),
            format!("{}:{JAIL_PYTHON_DIR}", self.python_dir.display()),
            "--bindmount_ro".into(),
            format!("{}:{JAIL_HARNESS_DIR}", self.harness_dir.display()),
            "--time_limit".into(),
            (limits.wall.as_secs() + BACKSTOP_MARGIN_S).to_string(),
            "--rlimit_cpu".into(),
            limits.cpu_hard_seconds().to_string(),
            "--rlimit_fsize".into(),
            limits.file_size.as_mib_ceil().to_string(),
            "--rlimit_nofile".into(),
            limits.open_files.to_string(),
            "--rlimit_as".into(),
            limits.memory.as_mib_ceil().to_string(),
        ];
        if self.process_rlimit {
            flags.extend(["--rlimit_nproc".into(), limits.processes.to_string()]);
        }
        flags
    }
}

impl Sandbox for NsjailSandbox {
    fn kind(&self) -> SandboxKind {
        SandboxKind::Nsjail
    }

    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn plan(&self, limits: &Limits, preload: &[String]) -> Result<LaunchPlan, SandboxError> {
        let mut args: Vec<OsString> = vec!["--config".into(), self.config.clone().into()];
        args.extend(self.flags(limits).into_iter().map(OsString::from));
        args.extend(
            [
                "--",
                &format!("{JAIL_PYTHON_DIR}/bin/python3"),
                // -I: ignore PYTHON* variables, the user site and the script's directory;
                // -B: the runtime is read-only, never try to write bytecode.
                "-I",
                "-B",
                &format!("{JAIL_HARNESS_DIR}/harness.py"),
            ]
            .map(OsString::from),
        );
        args.extend(harness_options(limits, preload));
        if let Some(programs) = &self.seccomp {
            args.extend(["--seccomp".into(), programs.into()]);
        }
        Ok(LaunchPlan {
            program: self.nsjail.clone(),
            args,
            // nsjail itself needs nothing; the jail's environment is set in the policy file.
            env: Vec::new(),
            hardening: None,
            after_spawn: None,
            turn_taker: None,
            keep_alive: None,
        })
    }
}
