//! The compat sandbox, for platforms that refuse user namespaces (AWS Lambda, Cloud Run's first
//! generation): the same harness and result channel as nsjail, started directly with a cleared
//! environment, in its own session and process group (shared plumbing), in a fresh scratch
//! directory removed afterwards, under rlimits, `no_new_privs`, Landlock where the kernel has it,
//! and a seccomp filter with the nsjail policy's denials.
//!
//! When the service runs as root, each execution also runs under a uid of its own, so scripts
//! can neither signal nor read the service nor each other, and RLIMIT_NPROC is exact. Otherwise
//! (Lambda) the script shares the service's uid; then the service keeps its secrets by being
//! undumpable (see `platform::protect_service`), by never passing its environment on, and by
//! seccomp refusing every socket but AF_UNIX and every signal aimed at it.

mod child;
pub mod landlock;
pub mod rlimits;
pub mod seccomp;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use self::child::{ChildHardening, Identity};
use self::rlimits::ProcessLimit;
use self::seccomp::{Policy, Protected};
use super::isolation::Isolation;
use super::{harness_options, LaunchPlan, Sandbox, SandboxError, SandboxKind};
use crate::layer::Layer;
use crate::limits::Limits;

/// The uids executions run under when the service is root: a range no image's users occupy,
/// inside the 16 bits every user namespace maps. Reused in turn; a uid comes back only after
/// its previous execution's processes were all killed.
const UID_BASE: u32 = 61_000;
const UID_SPAN: u32 = 4_000;

#[derive(Debug)]
pub struct CompatSandbox {
    python: PathBuf,
    harness: PathBuf,
    /// Directories the script may read and execute from, besides the system's.
    runtime: Vec<PathBuf>,
    seccomp: Arc<Policy>,
    /// The layers the platform allows (probed at start); only these are installed.
    isolation: Isolation,
    /// Per-execution uids, when the service is root.
    uids: Option<UidPool>,
}

impl CompatSandbox {
    pub fn new(layer: &Layer, isolation: Isolation) -> Result<Self, SandboxError> {
        // SAFETY: getpid, getpgrp and geteuid cannot fail.
        let (service_pid, service_pgid, euid) =
            unsafe { (libc::getpid(), libc::getpgrp(), libc::geteuid()) };
        let seccomp = Policy::build(Protected {
            service_pid,
            service_pgid,
        })
        .map_err(|error| SandboxError::Unavailable(error.to_string()))?;
        Ok(Self {
            python: layer.python_dir().join("bin/python3"),
            harness: layer.harness_dir().join("harness.py"),
            runtime: vec![layer.python_dir(), layer.harness_dir()],
            seccomp: Arc::new(seccomp),
            isolation,
            uids: (euid == 0).then(UidPool::default),
        })
    }

    fn process_limit(&self) -> ProcessLimit {
        if self.uids.is_some() {
            ProcessLimit::OwnUid
        } else {
            ProcessLimit::SharedUid {
                already_running: rlimits::own_threads(),
            }
        }
    }

    fn scratch(&self, identity: Option<Identity>) -> Result<tempfile::TempDir, SandboxError> {
        let failed = |error: std::io::Error| {
            SandboxError::Failed(format!("could not create a scratch directory: {error}"))
        };
        let scratch = tempfile::Builder::new()
            .prefix("python-executor-")
            .tempdir()
            .map_err(failed)?;
        if let Some(identity) = identity {
            std::os::unix::fs::chown(scratch.path(), Some(identity.uid), Some(identity.gid))
                .map_err(failed)?;
        }
        Ok(scratch)
    }

    fn hardening(
        &self,
        limits: &Limits,
        identity: Option<Identity>,
        scratch: &Path,
    ) -> Result<ChildHardening, SandboxError> {
        let landlock = if self.isolation.landlock {
            let policy = landlock::FsPolicy {
                runtime: &self.runtime,
                scratch,
            };
            let failed =
                |error: &dyn std::fmt::Display| SandboxError::Failed(format!("landlock: {error}"));
            landlock::ruleset(&policy)
                .map_err(|error| failed(&error))?
                .map(landlock::above_child_channels)
                .transpose()
                .map_err(|error| failed(&error))?
        } else {
            None
        };
        let mut rlimits = rlimits::for_execution(limits, self.process_limit());
        if self.isolation.cgroups && self.uids.is_none() {
            // The cgroup counts exactly; a shared uid's count would only add noise.
            rlimits.retain(|limit| limit.resource != libc::RLIMIT_NPROC);
        }
        Ok(ChildHardening {
            rlimits,
            identity,
            scratch: CString::new(scratch.as_os_str().as_bytes())
                .map_err(|_| SandboxError::Failed("the scratch path has a NUL byte".into()))?,
            no_new_privs: self.isolation.no_new_privs,
            landlock,
            seccomp: self.isolation.seccomp.then(|| self.seccomp.clone()),
        })
    }

    fn environment(&self, scratch: &Path) -> Vec<(OsString, OsString)> {
        // The same variables as the nsjail policy's envar lines, with the scratch directory
        // where nsjail has its private /tmp. Nothing of the service's own environment.
        let mut path = self
            .python
            .parent()
            .unwrap_or(Path::new("/"))
            .as_os_str()
            .to_owned();
        path.push(":/usr/bin:/bin");
        let fixed = [
            ("LANG", "C.UTF-8"),
            ("PYTHONIOENCODING", "utf-8"),
            ("PYTHONDONTWRITEBYTECODE", "1"),
            ("OPENBLAS_NUM_THREADS", "1"),
            ("OMP_NUM_THREADS", "1"),
            ("MKL_NUM_THREADS", "1"),
        ];
        let mut env = vec![
            ("PATH".into(), path),
            ("HOME".into(), scratch.into()),
            ("TMPDIR".into(), scratch.into()),
        ];
        env.extend(fixed.map(|(key, value)| (key.into(), value.into())));
        env
    }
}

impl Sandbox for CompatSandbox {
    fn kind(&self) -> SandboxKind {
        SandboxKind::Compat
    }

    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn plan(&self, limits: &Limits, preload: &[String]) -> Result<LaunchPlan, SandboxError> {
        let identity = self.uids.as_ref().map(UidPool::next);
        let scratch = self.scratch(identity)?;
        let mut hardening = self.hardening(limits, identity, scratch.path())?;
        // -I: ignore PYTHON* variables, the user site and the script's directory;
        // -B: never write bytecode into the runtime.
        let mut args: Vec<OsString> = vec!["-I".into(), "-B".into(), self.harness.clone().into()];
        args.extend(harness_options(limits, preload));
        Ok(LaunchPlan {
            program: self.python.clone(),
            args,
            env: self.environment(scratch.path()),
            hardening: Some(Box::new(move || hardening.run())),
            keep_alive: Some(Box::new(scratch)),
        })
    }
}

/// Hands out the per-execution uids in turn.
#[derive(Debug, Default)]
struct UidPool {
    next: AtomicU32,
}

impl UidPool {
    fn next(&self) -> Identity {
        let id = UID_BASE + self.next.fetch_add(1, Ordering::Relaxed) % UID_SPAN;
        Identity { uid: id, gid: id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_rotate_within_their_range() {
        let pool = UidPool::default();
        let first = pool.next();
        assert_eq!(first.uid, UID_BASE);
        assert_eq!(pool.next().uid, UID_BASE + 1);
        pool.next.store(UID_SPAN - 1, Ordering::Relaxed);
        assert_eq!(pool.next().uid, UID_BASE + UID_SPAN - 1);
        assert_eq!(pool.next().uid, UID_BASE);
    }
}
