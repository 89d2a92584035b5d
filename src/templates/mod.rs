//! The templates executions are forked from: "plain" (the interpreter up, nothing imported)
//! and "data" (the configured preload set, numpy, pandas and matplotlib by default). A script
//! goes to the one its imports call for ([`routing`]).
//!
//! Each template is started once, at start-up (on Lambda, in the init phase, before the first
//! event is asked for), and kept running by a task of its own: when it dies, whatever the
//! cause, the task notices, logs it, counts it in `/health` and starts a new one. Requests that
//! find their template down start a cold sandbox instead. Nothing here runs between requests:
//! a request forks, and the fork's teardown ends with it.

mod routing;
mod spares;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::TemplateConfig;
use crate::limits::Limits;
use crate::sandbox::process::Started;
use crate::sandbox::template::{self, Template};
use crate::sandbox::{Runner, SandboxError};

/// The first wait before starting a template again; doubled after each quick failure.
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// A template that served this long before dying is restarted without waiting.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Templates {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    runner: Runner,
    limits: Limits,
    preload: Vec<String>,
    /// `[plain, data]`.
    sets: [Set; 2],
}

#[derive(Debug)]
struct Set {
    name: &'static str,
    preload: Vec<String>,
    /// The running template, once it is ready.
    current: Mutex<Option<Arc<Template>>>,
    /// Set once the first template of this set was ready (or failed to be).
    started: tokio::sync::watch::Sender<bool>,
    restarts: AtomicU64,
    /// Executions forked ahead of their request ([`spares`]).
    spares: spares::Spares,
}

/// One template's state, for /health.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TemplateStatus {
    pub ready: bool,
    /// How many times it died and was started again.
    pub restarts: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TemplatesStatus {
    pub plain: TemplateStatus,
    pub data: TemplateStatus,
}

impl Templates {
    /// Starts both templates and the tasks that keep them running; call within the runtime.
    pub fn start(runner: Runner, limits: &Limits, config: &TemplateConfig) -> Self {
        let preload = config.preload.clone();
        let set = |name, preload: Vec<String>| Set {
            name,
            preload,
            current: Mutex::new(None),
            started: tokio::sync::watch::Sender::new(false),
            restarts: AtomicU64::new(0),
            spares: spares::Spares::new(config.spare_forks),
        };
        let shared = Arc::new(Shared {
            runner,
            limits: limits.clone(),
            sets: [set("plain", Vec::new()), set("data", preload.clone())],
            preload,
        });
        for index in 0..shared.sets.len() {
            tokio::spawn(keep_running(Arc::clone(&shared), index));
        }
        Self { shared }
    }

    /// Resolves once every template has become ready or failed to, at most `timeout` later.
    pub async fn wait_until_started(&self, timeout: Duration) {
        let all = async {
            for set in &self.shared.sets {
                let mut started = set.started.subscribe();
                let _ = started.wait_for(|started| *started).await;
            }
        };
        let _ = tokio::time::timeout(timeout, all).await;
    }

    /// An execution forked from the template suited to `script`, isolated and waiting for its
    /// job; `None` when that template is not running right now.
    pub async fn fork(&self, script: &str) -> Option<Result<Started, SandboxError>> {
        let shared = &self.shared;
        let index = usize::from(routing::imports_any(script, &shared.preload));
        let set = &shared.sets[index];
        let template = set.lock().clone()?;
        let started_at = std::time::Instant::now();
        if let Some(spare) = set.spares.take(&template, &shared.limits).await {
            let waited_us = started_at.elapsed().as_micros() as u64;
            tracing::debug!(template = set.name, waited_us, "spare taken");
            return Some(Ok(spare));
        }
        let forked = template.fork(&shared.limits).await;
        let fork_us = started_at.elapsed().as_micros() as u64;
        tracing::debug!(template = set.name, ok = forked.is_ok(), fork_us, "forked");
        Some(forked)
    }

    pub fn status(&self) -> TemplatesStatus {
        let status = |set: &Set| TemplateStatus {
            ready: set.lock().is_some(),
            restarts: set.restarts.load(Ordering::Relaxed),
        };
        TemplatesStatus {
            plain: status(&self.shared.sets[0]),
            data: status(&self.shared.sets[1]),
        }
    }
}

impl Set {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Template>>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts one set's template, and again whenever it dies, for as long as the service runs.
async fn keep_running(shared: Arc<Shared>, index: usize) {
    let set = &shared.sets[index];
    let mut backoff = RESTART_BACKOFF;
    loop {
        let started_at = tokio::time::Instant::now();
        match run_once(&shared, set).await {
            Ok(()) => {}
            Err(error) => tracing::error!(template = set.name, %error, "template failed"),
        }
        set.started.send_replace(true);
        set.restarts.fetch_add(1, Ordering::Relaxed);
        if started_at.elapsed() > HEALTHY_RUN {
            backoff = RESTART_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
    }
}

/// One template's life: start it, publish it once ready, and withdraw it when it exits.
async fn run_once(shared: &Shared, set: &Set) -> Result<(), SandboxError> {
    let (template, mut process) =
        template::spawn(shared.runner.clone(), &shared.limits, &set.preload)?;
    let template = Arc::new(template);
    if let Err(error) = template.ready().await {
        process.kill();
        let (status, log) = process.exited().await;
        tracing::error!(template = set.name, ?status, %log, "the template did not start");
        return Err(error.into());
    }
    tracing::info!(template = set.name, pid = process.pid(), "template ready");
    *set.lock() = Some(Arc::clone(&template));
    set.spares.fill(&template, &shared.limits);
    set.started.send_replace(true);
    tokio::select! {
        () = template.closed() => {}
        _ = process.exited() => {}
    }
    *set.lock() = None;
    set.spares.clear();
    process.kill();
    let (status, log) = process.exited().await;
    tracing::error!(template = set.name, ?status, %log, "template exited; starting a new one");
    Ok(())
}
