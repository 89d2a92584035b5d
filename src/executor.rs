//! Runs one validated request in a fresh sandbox and interprets what happened.

use std::sync::Arc;

use crate::api::{ApiError, ExecuteRequest, ExecuteResponse};
use crate::limits::Limits;
use crate::sandbox::cgroup::CgroupRoot;
use crate::sandbox::outcome::{interpret, sandbox_failed};
use crate::sandbox::{process, Job, Sandbox, SandboxKind};

#[derive(Clone, Debug)]
pub struct Executor {
    sandbox: Arc<dyn Sandbox>,
    cgroups: Option<CgroupRoot>,
    limits: Limits,
}

impl Executor {
    pub fn new(sandbox: Arc<dyn Sandbox>, cgroups: Option<CgroupRoot>, limits: Limits) -> Self {
        Self {
            sandbox,
            cgroups,
            limits,
        }
    }

    pub fn kind(&self) -> SandboxKind {
        self.sandbox.kind()
    }

    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.cgroups.as_ref().map(CgroupRoot::version)
    }

    pub async fn execute(&self, request: ExecuteRequest) -> Result<ExecuteResponse, ApiError> {
        let job = Job {
            script: request.script,
            args: request.args,
            limits: self.limits.with_wall_at_most(request.timeout),
        };
        let this = self.clone();
        // Its own task: if the client goes away mid-run, the execution still ends and cleans up
        // (kills, reaps, removes its cgroup) instead of being dropped half-way.
        let task = tokio::spawn(async move { this.run(job).await });
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "the execution task failed");
            Err(sandbox_failed())
        })
    }

    async fn run(&self, job: Job) -> Result<ExecuteResponse, ApiError> {
        let started = process::start(&*self.sandbox, self.cgroups.as_ref(), &job.limits, &[])
            .map_err(|error| {
                tracing::error!(%error, "could not start a sandbox");
                sandbox_failed()
            })?;
        let execution = started.run(&job).await;
        interpret(&execution, &job.limits)
    }
}
