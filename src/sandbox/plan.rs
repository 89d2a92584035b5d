//! What each kind of sandbox contributes, as plans the shared plumbing carries out: how to start
//! a cold sandbox's first process ([`LaunchPlan`]) or a template ([`Sandbox::template_plan`]),
//! and how a template's child isolates itself ([`ForkPlan`]).

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::compat::leftovers::OwnLeftovers;
use super::compat::scrub::SharedAreas;
use super::{Isolation, SandboxError, SandboxKind};
use crate::limits::Limits;

/// Code run in the child between fork and exec, after the shared setup. It must only make
/// async-signal-safe calls (no allocation, no locks).
pub type Hardening = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// Run in the service right after the spawn, with the sandbox's process group; what it returns
/// lives as long as the sandbox (compat's signal guard).
pub type AfterSpawn = Box<dyn FnOnce(i32) -> io::Result<Box<dyn Send + Sync>> + Send + Sync>;

/// What an execution claims from its sandbox whichever way it starts, held until its teardown.
#[derive(Default)]
pub struct Claim {
    /// Executions of this sandbox take turns on places they all can write, emptied after each
    /// (compat under a shared uid without Landlock): the job is handed over only on its turn.
    pub turns: Option<Arc<SharedAreas>>,
    /// Kept alive for the execution and dropped (removed) with it: a scratch directory, a uid.
    pub keep_alive: Option<Box<dyn Send + Sync>>,
    /// What the execution's own uid leaves in a shared directory, removed before its answer
    /// (compat as root, where scripts may write the literal `/tmp`).
    pub leftovers: Option<OwnLeftovers>,
}

/// How to start the harness under one kind of isolation. The harness reads its job on stdin,
/// writes the script's output on stdout and stderr, and reports on fd 3; fd 4 is for the
/// isolation tool's own log.
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The complete environment of the started program: nothing is inherited.
    pub env: Vec<(OsString, OsString)>,
    pub hardening: Option<Hardening>,
    pub after_spawn: Option<AfterSpawn>,
    pub claim: Claim,
}

impl fmt::Debug for LaunchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaunchPlan")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("hardening", &self.hardening.is_some())
            .finish_non_exhaustive()
    }
}

/// How one execution forked from a template isolates itself: the steps its process runs before
/// any script exists, and what the service keeps for it meanwhile.
pub struct ForkPlan {
    pub spec: pyexec_isolate::Spec,
    /// Variables the child sets over the template's environment (compat's scratch directory).
    pub env: Vec<(String, String)>,
    /// A Landlock ruleset the child enforces on itself.
    pub landlock: Option<std::os::fd::OwnedFd>,
    pub claim: Claim,
}

impl fmt::Debug for ForkPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkPlan")
            .field("spec", &self.spec)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// One kind of isolation.
pub trait Sandbox: Send + Sync + fmt::Debug {
    fn kind(&self) -> SandboxKind;

    /// The layers in force around every script this sandbox runs.
    fn isolation(&self) -> Isolation;

    /// The plan for one cold sandbox with these limits.
    fn plan(&self, limits: &Limits) -> Result<LaunchPlan, SandboxError>;

    /// The plan for a template: the harness importing `preload` once, then forking one child
    /// per execution on the service's request, never running a script itself.
    fn template_plan(
        &self,
        limits: &Limits,
        preload: &[String],
    ) -> Result<LaunchPlan, SandboxError>;

    /// What one execution forked from this sandbox's template does to isolate itself.
    fn fork_plan(&self, limits: &Limits) -> Result<ForkPlan, SandboxError>;

    /// Whether executions cannot be isolated from each other while they run (compat under a
    /// shared uid without Landlock): then they must never overlap.
    fn exclusive(&self) -> bool {
        false
    }

    /// Whether executions can start now: false while compat's shared places hold what a scrub
    /// could not remove in its budget (see `compat::scrub`).
    fn healthy(&self) -> bool {
        true
    }
}

/// The harness's own options (layer/harness.py): the result cap and the bounds on output files
/// (it has no defaults of its own: these are the service's limits), and the modules a template
/// imports before it forks.
pub fn harness_options(limits: &Limits, preload: &[String]) -> Vec<OsString> {
    let mut options: Vec<OsString> = vec![
        "--max-result-bytes".into(),
        limits.result.as_bytes().to_string().into(),
        "--max-output-files".into(),
        limits.output_files.to_string().into(),
        "--max-output-bytes".into(),
        limits.output_bytes.as_bytes().to_string().into(),
        "--max-state-bytes".into(),
        limits.session_state.as_bytes().to_string().into(),
    ];
    if !preload.is_empty() {
        options.extend(["--preload".into(), preload.join(",").into()]);
    }
    options
}
