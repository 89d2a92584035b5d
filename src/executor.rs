//! Runs one validated request: wait for a slot, take a warm sandbox (or start a fresh one),
//! hand it the job, interpret what happened.

use std::sync::Arc;

use crate::admission::Admission;
use crate::api::{ApiError, ExecuteRequest, ExecuteResponse};
use crate::config::Config;
use crate::limits::Limits;
use crate::pool::{Pool, PoolStatus};
use crate::sandbox::cgroup::CgroupRoot;
use crate::sandbox::isolation::Isolation;
use crate::sandbox::outcome::{interpret, sandbox_failed};
use crate::sandbox::process;
use crate::sandbox::{Job, Sandbox, SandboxKind};

#[derive(Clone, Debug)]
pub struct Executor {
    sandbox: Arc<dyn Sandbox>,
    cgroups: Option<CgroupRoot>,
    limits: Limits,
    admission: Admission,
    /// `None` when `POOL_SIZE=0`: every request starts its own sandbox.
    pool: Option<Pool>,
}

impl Executor {
    /// Builds the executor and, unless disabled, starts the pool (within the runtime).
    pub fn start(sandbox: Arc<dyn Sandbox>, cgroups: Option<CgroupRoot>, config: &Config) -> Self {
        let pool = (config.pool.size > 0).then(|| {
            Pool::start(
                Arc::clone(&sandbox),
                cgroups.clone(),
                &config.limits,
                config.pool.clone(),
            )
        });
        let capacity = if sandbox.exclusive() && config.max_concurrency > 1 {
            tracing::warn!(
                configured = config.max_concurrency,
                "executions cannot be isolated from each other here (a shared uid without \
                 Landlock): running one at a time"
            );
            1
        } else {
            config.max_concurrency
        };
        Self {
            sandbox,
            cgroups,
            limits: config.limits.clone(),
            admission: Admission::new(capacity, config.queue_wait),
            pool,
        }
    }

    pub fn kind(&self) -> SandboxKind {
        self.sandbox.kind()
    }

    pub fn isolation(&self) -> Isolation {
        self.sandbox.isolation()
    }

    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.cgroups.as_ref().map(CgroupRoot::version)
    }

    pub fn pool_status(&self) -> Option<PoolStatus> {
        self.pool.as_ref().map(Pool::status)
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    pub async fn execute(&self, request: ExecuteRequest) -> Result<ExecuteResponse, ApiError> {
        let permit = self.admission.admit().await?;
        let job = Job {
            script: request.script,
            args: request.args,
            files: request.files,
            limits: self.limits.with_wall_at_most(request.timeout),
        };
        let this = self.clone();
        // Its own task: if the client goes away mid-run, the execution still ends and cleans up
        // (kills, reaps, removes its cgroup) instead of being dropped half-way.
        let task = tokio::spawn(async move {
            let answer = this.run(job).await;
            drop(permit);
            answer
        });
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "the execution task failed");
            Err(sandbox_failed())
        })
    }

    async fn run(&self, job: Job) -> Result<ExecuteResponse, ApiError> {
        // The pool refills when `_refill` drops, after the execution: a replacement's start
        // must not compete for the CPU with the request it replaces.
        let (warm, _refill) = match &self.pool {
            Some(pool) => {
                let (warm, refill) = pool.take(&job.script);
                (warm, Some(refill))
            }
            None => (None, None),
        };
        let warm_start = warm.is_some();
        let sandbox = match warm {
            Some(sandbox) => sandbox,
            None => process::start(&*self.sandbox, self.cgroups.as_ref(), &self.limits, &[])
                .map_err(|error| {
                    tracing::error!(%error, "could not start a sandbox");
                    sandbox_failed()
                })?,
        };
        let mut execution = sandbox.run(&job).await;
        execution.warm_start = warm_start;
        interpret(&execution, &job.limits)
    }
}
