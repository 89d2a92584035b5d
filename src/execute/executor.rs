//! Runs one validated request: wait for a slot, fork a sandbox from a template (or start a
//! fresh one), hand it the job, interpret what happened, and record its figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::config::Config;
use crate::execute::admission::Admission;
use crate::execute::answer::{interpret, sandbox_failed, shared_places_unclean};
use crate::execute::api::{ApiError, ErrorCode, ExecuteRequest, ExecuteResponse};
use crate::execute::sessions::Sessions;
use crate::execute::templates::{Templates, TemplatesStatus};
use crate::limits::Limits;
use crate::observe::metrics::{ColdReason, ExecutionFigures, Metrics, Start, State};
use crate::packages::Packages;
use crate::sandbox::{
    Abort, Execution, Isolation, Job, Runner, SandboxKind, Started, Watcher, Zygote,
};

#[derive(Clone, Debug)]
pub struct Executor {
    runner: Runner,
    limits: Limits,
    admission: Admission,
    /// `None` when `TEMPLATES=0`: every request starts its own sandbox.
    templates: Option<Templates>,
    sessions: Arc<Sessions>,
    metrics: Arc<Metrics>,
}

/// One execution's answer, and what it measured.
struct Ran {
    answer: Result<ExecuteResponse, ApiError>,
    start: Option<Start>,
    cpu: Option<Duration>,
    peak_memory_bytes: Option<u64>,
}

impl Executor {
    /// Builds the executor and, unless disabled, starts the templates (within the runtime);
    /// [`Executor::wait_for_templates`] waits until they have imported their modules.
    pub fn start(
        runner: Runner,
        config: &Config,
        packages: &Packages,
        sessions: Sessions,
        metrics: Arc<Metrics>,
    ) -> Self {
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
            limits: config.limits.clone(),
            admission: Admission::new(capacity, config.queue_wait, runner.abort()),
            runner,
            templates,
            sessions: Arc::new(sessions),
            metrics,
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
    /// not is ended after its invocation, and the runtime started again empties its places.
    pub fn healthy(&self) -> bool {
        self.runner.healthy()
    }

    /// Resolves once no execution is still ending after its answer (see `sandbox::Settling`).
    pub async fn settled(&self) {
        self.runner.settled().await;
    }

    /// The state the metrics read: slots in use and in all, the templates' counts.
    pub fn state(&self) -> State {
        State {
            in_flight: self.admission.in_use(),
            capacity: self.admission.capacity(),
            templates: self
                .templates
                .as_ref()
                .map(Templates::counts)
                .unwrap_or_default(),
        }
    }

    /// Runs one validated request: a slot, then the execution, then its answer.
    pub async fn execute(&self, request: ExecuteRequest) -> Result<ExecuteResponse, ApiError> {
        self.admit().await?.execute(request, None).await
    }

    /// A slot for one execution, or `OVERLOADED` after the queue wait: taken before a streamed
    /// answer starts, so a refusal is still an HTTP status.
    pub async fn admit(&self) -> Result<Admitted, ApiError> {
        if !self.healthy() {
            self.metrics.overloaded();
            return Err(shared_places_unclean());
        }
        let queued = Instant::now();
        let permit = self.admission.admit().await.inspect_err(|_| {
            self.metrics.overloaded();
        })?;
        Ok(Admitted {
            executor: self.clone(),
            permit,
            queue_wait: queued.elapsed(),
        })
    }

    /// Runs `request`, in its session when it names one: the state restored before, the new
    /// one saved after.
    async fn run_in_session(&self, request: ExecuteRequest, watcher: Option<Watcher>) -> Ran {
        let limits = self.limits.with_wall_at_most(request.timeout);
        let Some(asked) = &request.session else {
            let job = super::job::for_request(&request, limits, None);
            return self.run(&request.script, job, watcher).await;
        };
        let begun = match self.sessions.begin(&request.caller, asked).await {
            Ok(begun) => begun,
            Err(error) => return Ran::failed(error),
        };
        let job = super::job::for_request(&request, limits, Some(begun.state.as_deref()));
        // Routed by the session's earlier imports too: restoring a DataFrame imports pandas.
        let routing = [begun.imports.join("\n").as_str(), &request.script].join("\n");
        let mut ran = self.run(&routing, job, watcher).await;
        ran.answer = self
            .sessions
            .finish(begun, &request.script, ran.answer)
            .await;
        ran
    }

    fn record(&self, ran: &Ran, queue_wait: Duration, run: Duration) {
        let code = match &ran.answer {
            Ok(_) => "OK",
            Err(error) if error.code == ErrorCode::Overloaded => {
                self.metrics.overloaded();
                error.code.as_str()
            }
            Err(error) => error.code.as_str(),
        };
        self.metrics.execution(ExecutionFigures {
            code,
            sandbox: self.kind().as_str(),
            queue_wait,
            run,
            cpu: ran.cpu,
            peak_memory_bytes: ran.peak_memory_bytes,
            start: ran.start,
        });
    }

    /// Runs `job` (whose script is `script`) from its template, or cold where none serves.
    async fn run(&self, script: &str, job: Job, watcher: Option<Watcher>) -> Ran {
        let forked = match &self.templates {
            Some(templates) => templates.fork(script).await,
            None => Err(ColdReason::Disabled),
        };
        let (sandbox, start) = match forked {
            Ok((sandbox, start)) => (Ok(sandbox), start),
            // A template that is down or failed to fork: a cold start still answers.
            Err(reason) => (self.start_cold(), Start::Cold(reason)),
        };
        let sandbox = match sandbox {
            Ok(sandbox) => sandbox,
            Err(error) => return Ran::failed(error),
        };
        let execution = sandbox.run_watched(&job, watcher).await;
        Ran::measured(interpret(&execution, &job.limits), &execution, start)
    }

    fn start_cold(&self) -> Result<Started, ApiError> {
        self.runner.start(&self.limits).map_err(|error| {
            tracing::error!(%error, "could not start a sandbox");
            sandbox_failed()
        })
    }
}

/// An execution slot, held until the execution it is spent on has ended.
#[derive(Debug)]
pub struct Admitted {
    executor: Executor,
    permit: tokio::sync::OwnedSemaphorePermit,
    queue_wait: Duration,
}

impl Admitted {
    /// Runs `request` in this slot; with `watcher`, its output is sent there as it is written.
    pub async fn execute(
        self,
        request: ExecuteRequest,
        watcher: Option<Watcher>,
    ) -> Result<ExecuteResponse, ApiError> {
        let Self {
            executor,
            permit,
            queue_wait,
        } = self;
        // Its own task: if the client goes away mid-run, the execution still ends and cleans up
        // (kills, reaps, removes its cgroup, saves its session) instead of being dropped
        // half-way. In the request's span, so what it logs carries the request's id.
        let task = tokio::spawn(
            async move {
                let started = Instant::now();
                let ran = executor.run_in_session(request, watcher).await;
                drop(permit);
                executor.record(&ran, queue_wait, started.elapsed());
                ran.answer
            }
            .in_current_span(),
        );
        task.await.unwrap_or_else(|error| {
            tracing::error!(%error, "the execution task failed");
            Err(sandbox_failed())
        })
    }
}

impl Ran {
    fn measured(
        answer: Result<ExecuteResponse, ApiError>,
        execution: &Execution,
        start: Start,
    ) -> Self {
        Self {
            answer,
            start: Some(start),
            cpu: execution.cpu,
            peak_memory_bytes: execution.peak_memory_bytes,
        }
    }

    /// Nothing ran: no sandbox could be had, or the session could not be taken up.
    fn failed(error: ApiError) -> Self {
        Self {
            answer: Err(error),
            start: None,
            cpu: None,
            peak_memory_bytes: None,
        }
    }
}
