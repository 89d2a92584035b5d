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
//! seccomp refusing every socket but AF_UNIX; the signal guard keeps signals inside the sandbox
//! ([`signals`]); the sandboxes waiting for later callers are undumpable from exec (the layer's
//! interpreter is unreadable); and where Landlock cannot keep writes to a private directory,
//! executions take turns and everything they wrote is removed before the next ([`scrub`]).

mod child;
mod ctime_mark;
pub mod landlock;
pub mod leftovers;
pub mod rlimits;
mod scratch_root;
pub mod scrub;
mod scrub_fs;
pub mod signals;
mod uids;

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyexec_isolate::Spec;

use self::child::{ChildHardening, Identity};
use self::leftovers::OwnLeftovers;
use self::rlimits::ProcessLimit;
use self::scratch_root::ScratchRoot;
use self::scrub::{AtStart, SharedAreas};
use self::signals::ListenerChannel;
use self::uids::{UidPool, UidRelease, UIDS};
use super::environment::{home_variables, script_environment};
use super::plan::{harness_options, AfterSpawn, Claim, ForkPlan, LaunchPlan, Sandbox};
use super::seccomp::{Policy, SignalScope};
use super::{Isolation, Layer, SandboxError, SandboxKind};
use crate::limits::Limits;

/// The uids executions run under when the service is root: a range no image's users occupy,
/// inside the 16 bits every user namespace maps. A uid is handed out again only after its
/// previous execution's teardown saw none of its processes left.
const UID_BASE: u32 = 61_000;
const UID_SPAN: u32 = 4_000;
/// The uid a template runs as when the service is root: its own, below every execution's. It
/// keeps only CAP_SETUID and CAP_SETGID, which its policy lets reach executions' uids alone.
const TEMPLATE_UID: u32 = UID_BASE - 1;
/// The directory every program knows as the place to write, which a script under a uid of its
/// own may write as under nsjail (see [`leftovers`]).
const SHARED_TMP: &str = "/tmp";
/// CAP_SETGID (6) and CAP_SETUID (7).
const SETID_CAPABILITIES: u64 = (1 << 6) | (1 << 7);

#[derive(Debug)]
pub struct CompatSandbox {
    python: PathBuf,
    harness: PathBuf,
    /// What every execution's Landlock ruleset allows besides its own scratch directory (the
    /// runtime's directories and the system's), opened once; none without Landlock.
    landlock_rules: Option<landlock::FixedRules>,
    seccomp: Arc<Policy>,
    /// A template's own policy, installed before it imports anything.
    template_seccomp: Policy,
    /// A template's working directory, HOME and TMPDIR: empty, and no one's to write.
    template_home: PathBuf,
    /// The layers the platform allows (probed at start); only these are installed.
    isolation: Isolation,
    /// Per-execution uids, when the service is root.
    uids: Option<Arc<UidPool>>,
    /// Where writes cannot be kept private (a shared uid without Landlock): the places every
    /// execution takes turns on, emptied after each.
    shared_areas: Option<Arc<SharedAreas>>,
    /// Where private scratch directories are made (none where executions share `/tmp`).
    scratch_root: Option<Arc<ScratchRoot>>,
}

impl CompatSandbox {
    pub fn new(
        layer: &Layer,
        isolation: Isolation,
        at_start: AtStart,
    ) -> Result<Self, SandboxError> {
        // SAFETY: geteuid cannot fail.
        let as_root = unsafe { libc::geteuid() } == 0;
        let signals = if isolation.signal_guard {
            SignalScope::Supervised
        } else {
            SignalScope::GroupOnly
        };
        let seccomp = Policy::build(signals)?;
        let execution_uids = as_root.then_some(UID_BASE..UID_BASE + UID_SPAN);
        let template_seccomp = Policy::for_template(false, execution_uids)?;
        let shared_areas = (!as_root && !isolation.landlock).then(|| {
            let areas = SharedAreas::discover(at_start);
            tracing::info!(
                places = ?areas.paths(),
                "compat under a shared uid without Landlock: executions take turns on these \
                 places, emptied after each"
            );
            Arc::new(areas)
        });
        let scratch_root = match shared_areas {
            Some(_) => None,
            None => Some(Arc::new(
                ScratchRoot::create(&scratch_root::parent(isolation.cgroups)).map_err(|error| {
                    SandboxError::Failed(format!("could not create the scratch root: {error}"))
                })?,
            )),
        };
        Ok(Self {
            python: layer.python_dir().join("bin/python3"),
            harness: layer.harness_dir().join("harness.py"),
            landlock_rules: isolation
                .landlock
                .then(|| landlock::FixedRules::open(&[layer.python_dir(), layer.harness_dir()])),
            seccomp: Arc::new(seccomp),
            template_seccomp,
            template_home: layer.harness_dir().join("empty"),
            isolation,
            uids: as_root.then(|| Arc::clone(&UIDS)),
            shared_areas,
            scratch_root,
        })
    }

    fn process_limit(&self) -> ProcessLimit {
        if self.uids.is_some() {
            ProcessLimit::OwnUid
        } else {
            ProcessLimit::SharedUid {
                already_running: rlimits::uid_tasks_staying(),
            }
        }
    }

    /// The execution's working directory: a fresh one, removed with the execution, or the
    /// shared `/tmp` itself where executions take turns on it (then scripts find their files
    /// where they would under nsjail).
    fn scratch(&self, identity: Option<Identity>) -> Result<Scratch, SandboxError> {
        if let Some(areas) = &self.shared_areas {
            let tmp = areas
                .paths()
                .into_iter()
                .find(|path| path.ends_with("tmp"))
                .map(Path::to_path_buf)
                .unwrap_or_else(std::env::temp_dir);
            return Ok(Scratch::Shared(tmp));
        }
        let failed = |error: std::io::Error| {
            SandboxError::Failed(format!("could not create a scratch directory: {error}"))
        };
        let root = Arc::clone(
            self.scratch_root
                .as_ref()
                .expect("made without shared areas"),
        );
        let scratch = tempfile::Builder::new()
            .prefix("x")
            .tempdir_in(root.path())
            .map_err(failed)?;
        if let Some(identity) = identity {
            std::os::unix::fs::chown(scratch.path(), Some(identity.uid), Some(identity.gid))
                .map_err(failed)?;
        }
        Ok(Scratch::Private {
            dir: scratch,
            _root: root,
        })
    }

    /// What every execution gets, however it starts: a uid of its own (as root), its scratch
    /// directory, and its isolation steps with the Landlock ruleset they enforce.
    fn prepare(&self, limits: &Limits) -> Result<Prepared, SandboxError> {
        let held = self.uids.as_ref().map(|uids| uids.take());
        let identity = held.map(|held| held.identity);
        let uid_release = held.map(|held| UidRelease {
            uids: Arc::clone(self.uids.as_ref().expect("identity comes from the pool")),
            uid: held.identity.uid,
        });
        let scratch = self.scratch(identity)?;
        // With a uid of its own, an execution may write the literal /tmp too: its files there
        // are its own, and are removed before its answer.
        let leftovers = identity.map(|identity| OwnLeftovers {
            dir: PathBuf::from(SHARED_TMP),
            uid: identity.uid,
            at_hand_over: None,
        });
        let landlock = if let Some(fixed) = &self.landlock_rules {
            let policy = landlock::FsPolicy {
                fixed,
                scratch: scratch.path(),
                shared_tmp: leftovers.as_ref().map(|leftovers| leftovers.dir.as_path()),
            };
            let failed =
                |error: &dyn std::fmt::Display| SandboxError::Failed(format!("landlock: {error}"));
            landlock::ruleset(&policy)
                .map_err(|error| failed(&error))?
                .map(super::child_setup::above_child_channels)
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
        let seccomp = self.isolation.seccomp.then_some(&*self.seccomp);
        let spec = Spec {
            rlimits,
            first_for_oom: true,
            identity,
            retained_capabilities: 0,
            namespaces: None,
            workdir: Some(
                CString::new(scratch.path().as_os_str().as_bytes())
                    .map_err(|_| SandboxError::Failed("the scratch path has a NUL byte".into()))?,
            ),
            no_new_privs: self.isolation.no_new_privs,
            seccomp: seccomp
                .map(Policy::programs_for_isolation)
                .unwrap_or_default(),
            signal_guard: seccomp.and_then(Policy::signal_guard_for_isolation),
        };
        Ok(Prepared {
            spec,
            landlock,
            keep_alive: Box::new((scratch, uid_release)),
            leftovers,
        })
    }

    /// The table every sandbox shares, with the scratch directory where nsjail has its
    /// private /tmp.
    fn environment(&self, scratch: &Path) -> Vec<(OsString, OsString)> {
        let python_dir = self.python.parent().and_then(Path::parent);
        script_environment(python_dir.unwrap_or(Path::new("/")), scratch)
    }
}

impl Sandbox for CompatSandbox {
    fn kind(&self) -> SandboxKind {
        SandboxKind::Compat
    }

    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn exclusive(&self) -> bool {
        self.shared_areas.is_some()
    }

    fn healthy(&self) -> bool {
        self.shared_areas
            .as_ref()
            .is_none_or(|areas| areas.is_clean())
    }

    fn plan(&self, limits: &Limits) -> Result<LaunchPlan, SandboxError> {
        let prepared = self.prepare(limits)?;
        let workdir = prepared.workdir();
        let guarded = prepared.spec.signal_guard.is_some();
        let mut hardening = ChildHardening {
            spec: prepared.spec,
            landlock: prepared.landlock,
            listener_socket: None,
        };
        let channel = guarded
            .then(ListenerChannel::new)
            .transpose()
            .map_err(|error| SandboxError::Failed(format!("signal guard channel: {error}")))?;
        let after_spawn = match channel {
            Some(channel) => {
                let child =
                    super::child_setup::above_child_channels(channel.child).map_err(|error| {
                        SandboxError::Failed(format!("signal guard channel: {error}"))
                    })?;
                hardening.listener_socket = Some(child);
                Some(serve_signal_guard(channel.parent))
            }
            None => None,
        };
        let mut args = self.interpreter_args();
        args.extend(harness_options(limits, &[]));
        Ok(LaunchPlan {
            program: self.python.clone(),
            args,
            env: self.environment(&workdir),
            hardening: Some(Box::new(move || hardening.run())),
            after_spawn,
            claim: self.claim(prepared.keep_alive, prepared.leftovers),
        })
    }

    fn template_plan(
        &self,
        limits: &Limits,
        preload: &[String],
    ) -> Result<LaunchPlan, SandboxError> {
        let mut args = self.interpreter_args();
        args.extend(harness_options(limits, preload));
        args.push("--template".into());
        // Its environment is every execution's but HOME and TMPDIR (each child sets those).
        let mut hardening = ChildHardening {
            spec: self.template_spec()?,
            landlock: None,
            listener_socket: None,
        };
        Ok(LaunchPlan {
            program: self.python.clone(),
            args,
            env: self.environment(&self.template_home),
            hardening: Some(Box::new(move || hardening.run())),
            after_spawn: None,
            claim: Claim::default(),
        })
    }

    fn fork_plan(&self, limits: &Limits) -> Result<ForkPlan, SandboxError> {
        let prepared = self.prepare(limits)?;
        let env = home_variables(&prepared.workdir());
        Ok(ForkPlan {
            spec: prepared.spec,
            env,
            landlock: prepared.landlock,
            claim: self.claim(prepared.keep_alive, prepared.leftovers),
        })
    }
}

impl CompatSandbox {
    /// How a template confines itself before it imports anything (and so before any module's
    /// code runs): its own uid when the service is root (keeping only what switches its children
    /// to theirs), an empty directory no one writes, no core dumps, no_new_privs and its
    /// policy. Each child then sets its execution's limits, identity and policy on top.
    fn template_spec(&self) -> Result<Spec, SandboxError> {
        let as_root = self.uids.is_some();
        let home = CString::new(self.template_home.as_os_str().as_bytes())
            .map_err(|_| SandboxError::Failed("the layer's path has a NUL byte".into()))?;
        Ok(Spec {
            rlimits: vec![rlimits::Rlimit {
                resource: libc::RLIMIT_CORE,
                value: 0,
            }],
            first_for_oom: false,
            identity: as_root.then_some(Identity {
                uid: TEMPLATE_UID,
                gid: TEMPLATE_UID,
            }),
            retained_capabilities: if as_root { SETID_CAPABILITIES } else { 0 },
            namespaces: None,
            workdir: Some(home),
            no_new_privs: self.isolation.no_new_privs,
            seccomp: if self.isolation.seccomp {
                self.template_seccomp.programs_for_isolation()
            } else {
                Vec::new()
            },
            signal_guard: None,
        })
    }

    /// What each execution holds until its teardown: its scratch directory and uid, its turn
    /// on the shared places where executions take turns, and what its uid leaves in /tmp.
    fn claim(&self, keep_alive: Box<dyn Send + Sync>, leftovers: Option<OwnLeftovers>) -> Claim {
        Claim {
            turns: self.shared_areas.clone(),
            keep_alive: Some(keep_alive),
            leftovers,
        }
    }

    /// -I: ignore PYTHON* variables, the user site and the script's directory;
    /// -B: never write bytecode into the runtime.
    fn interpreter_args(&self) -> Vec<OsString> {
        vec!["-I".into(), "-B".into(), self.harness.clone().into()]
    }
}

/// One execution's share of the sandbox, prepared before it starts (see `prepare`).
struct Prepared {
    spec: Spec,
    landlock: Option<std::os::fd::OwnedFd>,
    /// The scratch directory and the held uid, released with the execution.
    keep_alive: Box<dyn Send + Sync>,
    leftovers: Option<OwnLeftovers>,
}

impl Prepared {
    fn workdir(&self) -> PathBuf {
        let workdir = self.spec.workdir.as_deref().map(|path| path.to_bytes());
        PathBuf::from(std::ffi::OsStr::from_bytes(workdir.unwrap_or(b"/tmp")))
    }
}

/// Receives the signal guard's listener from the started child and serves it.
fn serve_signal_guard(parent: std::os::fd::OwnedFd) -> AfterSpawn {
    Box::new(move |group| {
        let listener = signals::receive_listener(&parent)?;
        Ok(Box::new(signals::serve(listener, group)?) as Box<dyn Send + Sync>)
    })
}

/// Where an execution works.
#[derive(Debug)]
enum Scratch {
    /// Its own directory, removed when the execution is dropped (before the root it is in).
    Private {
        dir: tempfile::TempDir,
        _root: Arc<ScratchRoot>,
    },
    /// The shared `/tmp`, emptied by the turn (see [`scrub`]).
    Shared(PathBuf),
}

impl Scratch {
    fn path(&self) -> &Path {
        match self {
            Self::Private { dir, .. } => dir.path(),
            Self::Shared(path) => path,
        }
    }
}
