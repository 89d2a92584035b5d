//! Runs one validated request: wait for a slot, fork a sandbox from a template (or start a
//! fresh one), hand it the job, interpret what happened.

use crate::admission::Admission;
use crate::answer::{interpret, sandbox_failed};
use crate::api::{ApiError, ExecuteRequest, ExecuteResponse};
use crate::config::Config;
use crate::limits::Limits;
use crate::sandbox::cgroup::CgroupRoot;
use crate::sandbox::isolation::Isolation;
use crate::sandbox::process;
use crate::sandbox::{Job, Runner, SandboxKind};
use crate::templates::{Templates, TemplatesStatus};

#[derive(Clone, Debug)]
pub struct Executor {
    runner: Runner,
    limits: Limits,
    admission: Admission,
    /// `None` when `TEMPLATES=0`: every request starts its own sandbox.
    templates: Option<Templates>,
}

impl Executor {
    /// Builds the executor and, unless disabled, starts the templates (within the runtime);
    /// [`Executor::wait_for_templates`] waits until they have imported their modules.
    pub fn start(runner: Runner, config: &Config) -> Self {
        let templates = config
            .templates
            .enabled
            .then(|| Templates::start(runner.clone(), &config.limits, &config.templates));
        let capacity = if runner.sandbox.exclusive() && config.max_concurrency > 1 {
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
            runner,
            limits: config.limits.clone(),
            admission: Admission::new(capacity, config.queue_wait),
            templates,
        }
    }

    /// Resolves once the templates are ready (or failed to start, then requests start cold).
    pub async fn wait_for_templates(&self) {
        if let Some(templates) = &self.templates {
            templates
                .wait_until_started(crate::sandbox::template::READY_TIMEOUT)
                .await;
        }
    }

    pub fn kind(&self) -> SandboxKind {
        self.runner.sandbox.kind()
    }

    pub fn isolation(&self) -> Isolation {
        self.runner.sandbox.isolation()
    }

    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.runner.cgroups.as_ref().map(CgroupRoot::version)
    }

    pub fn templates_status(&self) -> Option<TemplatesStatus> {
        self.templates.as_ref().map(Templates::status)
    }

    /// Ends every execution now (a shutdown past its grace period).
    pub fn abort(&self) -> crate::sandbox::live::Abort {
        self.runner.abort.clone()
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
            mode: request.mode,
            save_figures: request.save_figures,
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
        let forked = match &self.templates {
            Some(templates) => templates.fork(&job.script).await,
            None => None,
        };
        let (sandbox, warm_start) = match forked {
            Some(Ok(sandbox)) => (sandbox, true),
            Some(Err(error)) => {
                // The template is there but this fork failed: a cold start still answers.
                tracing::warn!(%error, "could not fork from the template; starting cold");
                (self.start_cold()?, false)
            }
            None => (self.start_cold()?, false),
        };
        let mut execution = sandbox.run(&job).await;
        execution.warm_start = warm_start;
        interpret(&execution, &job.limits)
    }

    fn start_cold(&self) -> Result<process::Started, ApiError> {
        self.runner.start(&self.limits, &[]).map_err(|error| {
            tracing::error!(%error, "could not start a sandbox");
            sandbox_failed()
        })
    }
}
