//! The full sandbox: nsjail with every namespace, the reviewed policy file, and per-request
//! values passed as flags after `--config` (never templated into the policy). The system-call
//! policy is the service's own (`sandbox::seccomp`): the first process in the jail applies it
//! through the isolation library (`pyexec_isolate`, the steps every other path runs), as the
//! harness's `--isolate` spec, before anything else.

use std::ffi::{CStr, CString, OsString};

use pyexec_isolate::{Namespaces, Rlimit, Spec};
use std::path::{Path, PathBuf};

use super::environment::{home_variables, script_environment};
use super::plan::{harness_options, Claim, ForkPlan, LaunchPlan, Sandbox};
use super::seccomp::{Policy, SignalScope};
use super::{Isolation, Layer, SandboxError, SandboxKind};
use crate::limits::Limits;

/// Where the layer's pieces appear inside the jail, wherever they are on the host.
const JAIL_PYTHON_DIR: &str = "/opt/python";
const JAIL_HARNESS_DIR: &str = "/opt/harness";
/// The unprivileged uid and gid the script runs as inside the jail ("nobody").
const JAIL_ID: u32 = 65534;
/// A template's working directory in the jail: empty, read-only (layer/build.sh).
const JAIL_TEMPLATE_HOME: &CStr = c"/opt/harness/empty";
/// The private /tmp of every jail and of each execution forked from a template: a fresh tmpfs,
/// size-capped, whose pages are charged to the execution's memory cgroup.
const JAIL_TMP_OPTIONS: &CStr = c"size=64m,nr_inodes=4096,mode=1777";
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
    /// The compiled system-call policy.
    seccomp: Option<Policy>,
    /// A template's own policy: its children still make namespaces and mounts.
    template_seccomp: Option<Policy>,
}

impl NsjailSandbox {
    pub fn new(layer: &Layer, isolation: Isolation) -> Result<Self, SandboxError> {
        let nsjail = layer.nsjail();
        if !nsjail.is_file() {
            return Err(SandboxError::Missing {
                what: "nsjail",
                path: nsjail,
            });
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
                .transpose()?,
            template_seccomp: isolation
                .seccomp
                .then(|| Policy::for_template(true, None))
                .transpose()?,
            isolation,
        })
    }

    /// nsjail's command line up to the harness's own options: the policy, `flags`, then the
    /// interpreter running the harness.
    fn command(&self, flags: Vec<String>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--config".into(), self.config.clone().into()];
        args.extend(flags.into_iter().map(OsString::from));
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
        args
    }

    /// The flags every jail gets: its channels, identity, the layer's binds, its private
    /// `/tmp`, its environment (HOME and TMPDIR at `home`), and its limits.
    fn flags(&self, limits: &Limits, home: &Path) -> Vec<String> {
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
            "--mount".into(),
            format!("none:/tmp:tmpfs:{}", JAIL_TMP_OPTIONS.to_string_lossy()),
        ];
        for (key, value) in script_environment(Path::new(JAIL_PYTHON_DIR), home) {
            let (key, value) = (key.to_string_lossy(), value.to_string_lossy());
            flags.extend(["--env".into(), format!("{key}={value}")]);
        }
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

    fn plan(&self, limits: &Limits) -> Result<LaunchPlan, SandboxError> {
        let mut args = self.command(self.flags(limits, Path::new("/tmp")));
        args.extend(harness_options(limits, &[]));
        // nsjail has set no_new_privs and dropped every capability; the policy is ours.
        let spec = Spec {
            no_new_privs: true,
            seccomp: programs(self.seccomp.as_ref()),
            ..Spec::default()
        };
        args.extend(isolate_option(&spec));
        Ok(nsjail_plan(self.nsjail.clone(), args))
    }

    fn template_plan(
        &self,
        limits: &Limits,
        preload: &[String],
    ) -> Result<LaunchPlan, SandboxError> {
        let home = Path::new(JAIL_TEMPLATE_HOME.to_str().unwrap_or("/"));
        let mut flags = self.flags(limits, home);
        // The template lives as long as the service, and its children set their own CPU and
        // process limits (`fork_plan`): no time limit, no CPU limit for the template itself.
        set_flag(&mut flags, "--time_limit", "0");
        set_flag(&mut flags, "--rlimit_cpu", "inf");
        if let Some(index) = flags.iter().position(|flag| flag == "--rlimit_nproc") {
            flags.drain(index..index + 2);
        }
        // Each child writes its nested user namespace's id maps under /proc, so the template's
        // /proc is writable; every child mounts its own read-only /proc over it before any
        // script exists.
        flags.extend(["--mount".into(), "none:/proc:proc:rw".into()]);
        let mut args = self.command(flags);
        args.extend(harness_options(limits, preload));
        args.push("--template".into());
        // Before it imports anything: an empty directory no one writes, and its own policy.
        let spec = Spec {
            workdir: Some(CString::from(JAIL_TEMPLATE_HOME)),
            no_new_privs: true,
            seccomp: programs(self.template_seccomp.as_ref()),
            ..Spec::default()
        };
        args.extend(isolate_option(&spec));
        Ok(nsjail_plan(self.nsjail.clone(), args))
    }

    fn fork_plan(&self, limits: &Limits) -> Result<ForkPlan, SandboxError> {
        let mut rlimits = vec![Rlimit {
            resource: libc::RLIMIT_CPU,
            value: limits.cpu_hard_seconds(),
        }];
        if self.process_rlimit {
            rlimits.push(Rlimit {
                resource: libc::RLIMIT_NPROC,
                value: limits.processes.into(),
            });
        }
        let spec = Spec {
            rlimits,
            first_for_oom: true,
            identity: None,
            retained_capabilities: 0,
            namespaces: Some(Namespaces {
                id: JAIL_ID,
                tmp_options: CString::from(JAIL_TMP_OPTIONS),
            }),
            workdir: Some(CString::from(c"/tmp")),
            no_new_privs: true,
            seccomp: programs(self.seccomp.as_ref()),
            signal_guard: None,
        };
        Ok(ForkPlan {
            spec,
            env: home_variables(Path::new("/tmp")),
            landlock: None,
            claim: Claim::default(),
        })
    }
}

fn programs(policy: Option<&Policy>) -> Vec<Vec<libc::sock_filter>> {
    policy
        .map(Policy::programs_for_isolation)
        .unwrap_or_default()
}

/// The harness's `--isolate` option: a spec it applies through the isolation library before
/// anything else, in hex (an argument cannot hold every byte).
fn isolate_option(spec: &Spec) -> [OsString; 2] {
    let hex: String = spec
        .encode()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    ["--isolate".into(), hex.into()]
}

/// Replaces the value that follows `flag`.
fn set_flag(flags: &mut [String], flag: &str, value: &str) {
    if let Some(index) = flags.iter().position(|f| f == flag) {
        if let Some(slot) = flags.get_mut(index + 1) {
            *slot = value.into();
        }
    }
}

fn nsjail_plan(nsjail: PathBuf, args: Vec<OsString>) -> LaunchPlan {
    LaunchPlan {
        program: nsjail,
        args,
        // nsjail itself needs nothing; the jail's environment is set in the policy file.
        env: Vec::new(),
        hardening: None,
        after_spawn: None,
        claim: Claim::default(),
    }
}
