//! Running one script in isolation.
//!
//! A [`Sandbox`] says how to start the harness under its kind of isolation ([`LaunchPlan`]);
//! [`process`] does everything else, the same way for every kind: cgroup, pipes, the host-side
//! deadline, draining output with caps, killing and reaping. What happened comes back as a
//! [`process::Execution`]; the layer above (`crate::answer`) turns it into the API's answer.

pub mod cgroup;
mod cgroup_favor;
mod cgroup_v2;
mod child_setup;
pub mod compat;
pub mod isolation;
pub mod live;
pub mod nsjail;
pub mod pipes;
pub mod process;
pub mod protocol;
pub mod seccomp;
pub mod template;
pub mod watch;

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::limits::Limits;

/// A sandbox and the cgroup hierarchy its executions get their cgroups in. They travel together:
/// whatever starts an execution, cold or from a template, needs both.
#[derive(Clone, Debug)]
pub struct Runner {
    pub sandbox: std::sync::Arc<dyn Sandbox>,
    pub cgroups: Option<cgroup::CgroupRoot>,
    /// Ends every execution this runner started (see `live::Abort`).
    pub abort: live::Abort,
}

impl Runner {
    /// Starts a cold sandbox (a fresh harness under the sandbox) waiting for its job.
    pub fn start(
        &self,
        limits: &Limits,
        preload: &[String],
    ) -> Result<process::Started, SandboxError> {
        process::start(self, limits, preload)
    }
}

/// Which isolation ran a script; reported in `/health` and every envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxKind {
    Nsjail,
    Compat,
}

impl SandboxKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Nsjail => "nsjail",
            Self::Compat => "compat",
        }
    }
}

/// One script to run, with the limits that apply to it.
#[derive(Clone, Debug)]
pub struct Job {
    pub script: String,
    pub args: Map<String, Value>,
    /// Written into the working directory before the script runs.
    pub files: Vec<crate::api::InputFile>,
    /// A script's `main()` or a notebook cell.
    pub mode: crate::api::Mode,
    /// The harness saves the open matplotlib figures under `outputs/` once the code has run.
    pub save_figures: bool,
    pub limits: Limits,
}

/// Code run in the child between fork and exec, after the shared setup. It must only make
/// async-signal-safe calls (no allocation, no locks).
pub type Hardening = Box<dyn FnMut() -> io::Result<()> + Send + Sync>;

/// Run in the service right after the spawn, with the sandbox's process group; what it returns
/// lives as long as the sandbox (compat's signal guard).
pub type AfterSpawn = Box<dyn FnOnce(i32) -> io::Result<Box<dyn Send + Sync>> + Send + Sync>;

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
    /// Executions of this sandbox take turns on places they all can write, emptied after each
    /// (compat under a shared uid without Landlock): the job is handed over only on its turn.
    pub turn_taker: Option<std::sync::Arc<compat::scrub::SharedAreas>>,
    /// Kept alive for the execution and dropped (removed) with it, e.g. a scratch directory.
    pub keep_alive: Option<Box<dyn Send + Sync>>,
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

/// How one execution forked from a template isolates itself (see [`template`]): the steps its
/// process runs before any script exists, and what the service keeps for it meanwhile.
pub struct ForkPlan {
    pub spec: pyexec_isolate::Spec,
    /// Variables the child sets over the template's environment (compat's scratch directory).
    pub env: Vec<(String, String)>,
    /// A Landlock ruleset the child enforces on itself.
    pub landlock: Option<std::os::fd::OwnedFd>,
    /// As `LaunchPlan::turn_taker`.
    pub turn_taker: Option<std::sync::Arc<compat::scrub::SharedAreas>>,
    /// As `LaunchPlan::keep_alive`.
    pub keep_alive: Option<Box<dyn Send + Sync>>,
}

impl fmt::Debug for ForkPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForkPlan")
            .field("spec", &self.spec)
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

/// The harness's own options (layer/harness.py): the result cap, and the modules a pooled
/// sandbox imports before its job arrives.
pub fn harness_options(limits: &Limits, preload: &[String]) -> Vec<OsString> {
    let mut options: Vec<OsString> = vec![
        "--max-result-bytes".into(),
        limits.result.as_bytes().to_string().into(),
        "--max-output-files".into(),
        limits.output_files.to_string().into(),
        "--max-output-bytes".into(),
        limits.output_bytes.as_bytes().to_string().into(),
    ];
    if !preload.is_empty() {
        options.extend(["--preload".into(), preload.join(",").into()]);
    }
    options
}

/// One kind of isolation.
pub trait Sandbox: Send + Sync + fmt::Debug {
    fn kind(&self) -> SandboxKind;

    /// The layers in force around every script this sandbox runs.
    fn isolation(&self) -> isolation::Isolation;

    /// The plan for one sandbox with these limits; `preload` names modules the harness imports
    /// before its job arrives (for pooled sandboxes).
    fn plan(&self, limits: &Limits, preload: &[String]) -> Result<LaunchPlan, SandboxError>;

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
}

/// The sandbox itself failed (as opposed to the script). Logged in full, never shown to clients.
#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("could not create the execution's cgroup: {0}")]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("could not create a pipe: {0}")]
    Pipe(io::Error),
    #[error("could not start {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("{what} is missing at {}", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error(transparent)]
    Policy(#[from] seccomp::SeccompError),
    #[error("the template: {0}")]
    Template(#[from] template::TemplateError),
    #[error("the sandbox failed: {0}")]
    Failed(String),
}
