//! Running one script in isolation, behind one narrow door: everything the rest of the service
//! may name is re-exported here, and every submodule is private.
//!
//! A [`Runner`] is a sandbox of one kind (nsjail, or compat where namespaces are refused) with
//! the cgroup hierarchy its executions get their cgroups in. It starts a cold sandbox
//! ([`Runner::start`]) or a [`Zygote`], a template that forks one isolated execution per request
//! ([`Zygote::fork`]); either way a [`Started`] sandbox waits for its [`Job`] (the harness's
//! input, built by the layer above) and [`Started::run`] sees it through: deadline, the watch's
//! limits, output caps, the kill, and teardown. What happened comes back as an [`Execution`];
//! the layer above turns it into the API's answer. No API type is known here.
//!
//! Inside: each kind contributes plans (`plan.rs`, `nsjail.rs`, `compat/`); the plumbing they
//! share (`execution.rs`, `leader.rs`, `streams.rs`, `teardown.rs`, `pipes.rs`) carries them out;
//! every isolation step runs through the isolation library (`layer/isolate`), whose specs are
//! built here with the system-call policy (`seccomp/`) and cgroups (`cgroup/`).

mod cgroup;
mod child_setup;
mod compat;
mod environment;
mod execution;
mod exits;
#[cfg(test)]
mod faults;
mod isolation;
mod layer;
mod leader;
mod live;
mod nsjail;
mod pipes;
mod plan;
mod probes;
mod procfs;
mod reaper;
mod seccomp;
mod settling;
mod streams;
mod teardown;
mod watch;
mod zygote;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

pub use cgroup::{CgroupError, CgroupRoot};
pub use compat::scrub::AtStart;
pub use execution::{Ending, Execution, Started, Watcher};
#[cfg(test)]
pub use faults::Faults;
pub use isolation::Isolation;
pub use layer::{Layer, LayerError};
pub use live::Abort;
pub use pipes::{Captured, OutputChunk, Stream};
pub use probes::{landlock_abi, probe_in_child, user_notification_works};
pub use reaper::spawn as spawn_reaper;
pub use settling::Settling;
pub use watch::Tripped;
pub use zygote::{Zygote, ZygoteProcess};

use crate::limits::Limits;
use plan::{Hardening, Sandbox};

/// A sandbox and the cgroup hierarchy its executions get their cgroups in. They travel together:
/// whatever starts an execution, cold or from a template, needs both.
#[derive(Clone, Debug)]
pub struct Runner {
    sandbox: Arc<dyn Sandbox>,
    cgroups: Option<CgroupRoot>,
    /// Ends every execution this runner started (see [`Abort`]).
    abort: Abort,
    /// Counts its executions still ending after their answers (see [`Settling`]).
    settling: Settling,
}

impl Runner {
    /// The sandbox of `kind` with the layers `isolation` names, from the files of `layer`;
    /// `at_start` says whether the places executions share (compat under a shared uid) may
    /// hold what an earlier service's executions left.
    pub fn open(
        kind: SandboxKind,
        layer: &Layer,
        isolation: Isolation,
        cgroups: Option<CgroupRoot>,
        at_start: AtStart,
    ) -> Result<Self, SandboxError> {
        let sandbox: Arc<dyn Sandbox> = match kind {
            SandboxKind::Nsjail => Arc::new(nsjail::NsjailSandbox::new(layer, isolation)?),
            SandboxKind::Compat => {
                Arc::new(compat::CompatSandbox::new(layer, isolation, at_start)?)
            }
        };
        Ok(Self {
            sandbox,
            cgroups,
            abort: Abort::default(),
            settling: Settling::default(),
        })
    }

    /// Starts a cold sandbox (a fresh harness under the sandbox) waiting for its job.
    pub fn start(&self, limits: &Limits) -> Result<Started, SandboxError> {
        execution::start(self, limits)
    }

    /// Starts a template importing `preload`; usable once [`Zygote::ready`] returns.
    pub fn spawn_zygote(
        &self,
        limits: &Limits,
        preload: &[String],
    ) -> Result<(Zygote, ZygoteProcess), SandboxError> {
        zygote::spawn(self.clone(), limits, preload)
    }

    pub fn kind(&self) -> SandboxKind {
        self.sandbox.kind()
    }

    /// The layers in force around every script.
    pub fn isolation(&self) -> Isolation {
        self.sandbox.isolation()
    }

    /// Whether executions cannot be isolated from each other while they run (compat under a
    /// shared uid without Landlock): then they must never overlap.
    pub fn exclusive(&self) -> bool {
        self.sandbox.exclusive()
    }

    /// Whether executions can start now (see `compat::scrub`).
    pub fn healthy(&self) -> bool {
        self.sandbox.healthy()
    }

    /// Resolves once none of its executions is still ending after its answer.
    pub async fn settled(&self) {
        self.settling.settled().await;
    }

    /// `v1` or `v2`, when executions get cgroups.
    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.cgroups.as_ref().map(CgroupRoot::version)
    }

    /// Ends every execution this runner started, now (a shutdown past its grace period).
    pub fn abort(&self) -> Abort {
        self.abort.clone()
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

/// One execution's job: the harness's input, as the layer above encodes it (layer/harness.py
/// reads it on stdin), and the limits that apply to it.
#[derive(Clone, Debug)]
pub struct Job {
    pub input: Arc<[u8]>,
    pub limits: Limits,
}

/// The sandbox itself failed (as opposed to the script). Logged in full, never shown to clients.
#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("could not create the execution's cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("could not create a pipe: {0}")]
    Pipe(io::Error),
    #[error("could not start {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("{what} is missing at {}", path.display())]
    Missing { what: &'static str, path: PathBuf },
    #[error(transparent)]
    Policy(#[from] seccomp::SeccompError),
    #[error("the template: {0}")]
    Template(#[from] zygote::TemplateError),
    #[error("the sandbox failed: {0}")]
    Failed(String),
}
