//! Runs one validated request: wait for a slot, fork a sandbox from a template (or start a
//! fresh one), hand it the job, interpret what happened.

use crate::config::Config;
use crate::execute::admission::Admission;
use crate::execute::answer::{interpret, sandbox_failed, shared_places_unclean};
use crate::execute::api::{ApiError, ExecuteRequest, ExecuteResponse};
use crate::execute::templates::{Templates, TemplatesStatus};
use crate::limits::Limits;
use crate::packages::Packages;
use crate::sandbox::{Abort, Isolation, Job, Runner, SandboxKind, Started, Zygote};

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
    pub fn start(runner: Runner, config: &Config, packages: &Packages) -> Self {
        let templates = config
            .templates
            .enabled
            .then(|| Templates::start(runner.clone(), &config.limits, &config.templates, packages));
        let capacity = if runner.exclusive() && config.max_concurrency > 1 {
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
            templates.wait_until_started(Zygote::READY_TIMEOUT).await;
        }
    }

    pub fn kind(&self) -> SandboxKind {
        self.runner.kind()
    }

    pub fn isolation(&self) -> Isolation {
        self.runner.isolation()
    }

    pub fn cgroup_version(&self) -> Option<&'static str> {
        self.runner.cgroup_version()
    }

    pub fn templates_status(&self) -> Option<TemplatesStatus> {
        self.templates.as_ref().map(Templates::status)
    }

    /// Ends every execution now (a shutdown past its grace period).
    pub fn abort(&self) -> Abort {
        self.runner.abort()
    }

    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Whether scripts can run now (see `Sandbox::healthy`); on Lambda, an environment that is
    /// not is ended after its invocation so the platform replaces it.
    pub fn healthy(&self) -> bool {
        self.runner.healthy()
    }

    pub async fn execute(&self, request: ExecuteRequest) -> Result<ExecuteResponse, ApiError> {
        if !self.healthy() {
            return Err(shared_places_unclean());
        }
        let permit = self.admission.admit().await?;
        let job = super::job::for_request(&request, self.limits.with_wall_at_most(request.timeout));
        let this = self.clone();
        // Its own task: if the client goes away mid-run, the execution still ends and cleans up
        // (kills, reaps, removes its cgroup) instead of being dropped half-way.
        let task = tokio::spawn(async move {
            let answer = this.run(&request.script, job).await;
            drop(permit);
            answer
        });
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "the execution task failed");
            Err(sandbox_failed())
        })
    }

    /// Runs `job` (whose script is `script`) from its template, or cold where none serves.
    async fn run(&self, script: &str, job: Job) -> Result<ExecuteResponse, ApiError> {
        let forked = match &self.templates {
            Some(templates) => templates.fork(script).await,
            None => None,
        };
        let sandbox = match forked {
            Some(Ok(sandbox)) => sandbox,
            Some(Err(error)) => {
                // The template is there but this fork failed: a cold start still answers.
                tracing::warn!(%error, "could not fork from the template; starting cold");
                self.start_cold()?
            }
            None => self.start_cold()?,
        };
        let execution = sandbox.run(&job).await;
        interpret(&execution, &job.limits)
    }

    fn start_cold(&self) -> Result<Started, ApiError> {
        self.runner.start(&self.limits).map_err(|error| {
            tracing::error!(%error, "could not start a sandbox");
            sandbox_failed()
        })
    }
}
