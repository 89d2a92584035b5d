//! The templates executions are forked from: "plain" (the interpreter up, nothing imported)
//! and "data" (`PRELOAD`, numpy and pandas by default). A script goes to the one its imports
//! call for ([`routing`]).
//!
//! Each template is started once, at start-up (on Lambda, in the init phase, before the first
//! event is asked for), and kept running by a task of its own: when it dies, whatever the
//! cause, the task notices, logs it, counts it in `/health` and starts a new one. Requests that
//! find their template down start a cold sandbox instead. Nothing here runs between requests:
//! a request forks, and the fork's teardown ends with it.
//!
//! The data template grows once: the first script that imports a module of
//! `PRELOAD_ON_DEMAND` (matplotlib by default, 30 MB of heap) starts a template that preloads
//! it too ([`Templates::grow`]). The current one serves meanwhile (such scripts import the
//! module themselves); once the new one is ready it takes over, and the old one retires when
//! the last execution forked from it has ended ([`Lease`]). A service whose scripts never plot
//! never holds matplotlib.

mod routing;
mod spares;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::config::TemplateConfig;
use crate::limits::Limits;
use crate::sandbox::process::Started;
use crate::sandbox::template::{self, Template, TemplateProcess};
use crate::sandbox::{Runner, SandboxError};

/// The first wait before starting a template again; doubled after each quick failure.
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// A template that served this long before dying is restarted without waiting.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// How long a replaced template waits for its executions beyond their wall-clock limit
/// (teardown, a queue of them) before it is ended regardless.
const RETIRE_GRACE: Duration = Duration::from_secs(30);
/// How many times a grown template may fail to start before its set gives the growth up.
const GROWTH_ATTEMPTS: u32 = 3;
/// Index of the data set in `Shared::sets`.
const DATA: usize = 1;

#[derive(Clone, Debug)]
pub struct Templates {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    runner: Runner,
    limits: Limits,
    /// `PRELOAD`, what the data template imports until it grows.
    preload: Vec<String>,
    /// Every module that sends a script to the data template: `PRELOAD` and `PRELOAD_ON_DEMAND`.
    data_modules: Vec<String>,
    on_demand: Vec<String>,
    /// `[plain, data]`.
    sets: [Set; 2],
}

#[derive(Debug)]
struct Set {
    name: &'static str,
    /// What its next template imports.
    preload: Mutex<Vec<String>>,
    /// The template serving requests, once one is ready.
    current: Mutex<Option<Serving>>,
    /// Set once the first template of this set was ready (or failed to be).
    started: watch::Sender<bool>,
    restarts: AtomicU64,
    /// Executions forked ahead of their request ([`spares`]).
    spares: spares::Spares,
    /// The generation of template wanted: 0 until the set grows by `PRELOAD_ON_DEMAND` (the
    /// data set only, once), raised again if that growth is given up. A task keeping an older
    /// generation running stops restarting it.
    wanted: AtomicU64,
    /// The generation of the template serving; an older one retires once a newer serves.
    serving: watch::Sender<u64>,
}

/// A template ready for requests.
#[derive(Clone, Debug)]
struct Serving {
    template: Arc<Template>,
    /// The modules it imported.
    preload: Arc<[String]>,
    lease: Lease,
}

/// Held by every execution forked from one template, until its teardown is over: the template
/// may only be ended once none is left (under nsjail its executions live in its jail).
#[derive(Clone, Debug)]
struct Lease {
    _held: mpsc::Sender<()>,
}

/// One template's state, for /health.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TemplateStatus {
    pub ready: bool,
    /// How many times it died and was started again.
    pub restarts: u64,
    /// The modules the serving template imported (while none serves, those the next will).
    pub preload: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TemplatesStatus {
    pub plain: TemplateStatus,
    pub data: TemplateStatus,
}

impl Templates {
    /// Starts both templates and the tasks that keep them running; call within the runtime.
    pub fn start(runner: Runner, limits: &Limits, config: &TemplateConfig) -> Self {
        let set = |name, preload: Vec<String>| Set {
            name,
            preload: Mutex::new(preload),
            current: Mutex::new(None),
            started: watch::Sender::new(false),
            restarts: AtomicU64::new(0),
            spares: spares::Spares::new(config.spare_forks),
            wanted: AtomicU64::new(0),
            serving: watch::Sender::new(0),
        };
        let mut data_modules = config.preload.clone();
        data_modules.extend(config.preload_on_demand.iter().cloned());
        let shared = Arc::new(Shared {
            runner,
            limits: limits.clone(),
            sets: [
                set("plain", Vec::new()),
                set("data", config.preload.clone()),
            ],
            preload: config.preload.clone(),
            data_modules,
            on_demand: config.preload_on_demand.clone(),
        });
        for index in 0..shared.sets.len() {
            tokio::spawn(keep_running(Arc::clone(&shared), index, 0));
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
        let index = usize::from(routing::imports_any(script, &shared.data_modules));
        let set = &shared.sets[index];
        if index == DATA && !set.has_grown() && routing::imports_any(script, &shared.on_demand) {
            self.grow();
        }
        let serving = set.lock().clone()?;
        let started_at = std::time::Instant::now();
        if let Some(spare) = set.spares.take(&serving, &shared.limits).await {
            let waited_us = started_at.elapsed().as_micros() as u64;
            tracing::debug!(template = set.name, waited_us, "spare taken");
            return Some(Ok(spare));
        }
        let forked = serving.fork(&shared.limits).await;
        let fork_us = started_at.elapsed().as_micros() as u64;
        tracing::debug!(template = set.name, ok = forked.is_ok(), fork_us, "forked");
        Some(forked)
    }

    /// The first time a script imports a module of `PRELOAD_ON_DEMAND`: starts a data template
    /// that preloads those modules too, to take over from the current one once it is ready.
    fn grow(&self) {
        let shared = &self.shared;
        let set = &shared.sets[DATA];
        // Under the preload set's lock, so the set grows once: extended, then wanted.
        let mut preload = set.lock_preload();
        if set.has_grown() {
            return;
        }
        preload.extend(shared.on_demand.iter().cloned());
        let generation = 1;
        set.wanted.store(generation, Ordering::Release);
        drop(preload);
        tracing::info!(
            template = set.name,
            modules = %shared.on_demand.join(","),
            "a script imported an on-demand module: starting a template that preloads it"
        );
        tokio::spawn(keep_running(Arc::clone(shared), DATA, generation));
    }

    pub fn status(&self) -> TemplatesStatus {
        let status = |set: &Set| {
            let serving = set.lock().as_ref().map(|serving| serving.preload.to_vec());
            TemplateStatus {
                ready: serving.is_some(),
                restarts: set.restarts.load(Ordering::Relaxed),
                preload: serving.unwrap_or_else(|| set.lock_preload().clone()),
            }
        };
        TemplatesStatus {
            plain: status(&self.shared.sets[0]),
            data: status(&self.shared.sets[DATA]),
        }
    }
}

impl Serving {
    /// Forks an execution, which holds a lease on the template until its teardown is over.
    async fn fork(&self, limits: &Limits) -> Result<Started, SandboxError> {
        let mut started = self.template.fork(limits).await?;
        started.hold(Box::new(self.lease.clone()));
        Ok(started)
    }
}

impl Set {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Serving>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_preload(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.preload.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the set has grown (or tried to): only then is a generation past 0 wanted.
    fn has_grown(&self) -> bool {
        self.wanted.load(Ordering::Acquire) > 0
    }

    fn is_wanted(&self, generation: u64) -> bool {
        self.wanted.load(Ordering::Acquire) == generation
    }

    /// Withdraws the serving template if it is `template` (and not a newer one).
    fn withdraw(&self, template: &Arc<Template>) {
        let mut current = self.lock();
        if current
            .as_ref()
            .is_some_and(|serving| Arc::ptr_eq(&serving.template, template))
        {
            *current = None;
            drop(current);
            self.spares.clear();
        }
    }
}

/// Keeps one generation of a set's template running, starting it again whenever it dies, until
/// a newer generation is wanted.
async fn keep_running(shared: Arc<Shared>, index: usize, generation: u64) {
    let set = &shared.sets[index];
    let mut backoff = RESTART_BACKOFF;
    let (mut served, mut failed_starts) = (false, 0);
    while set.is_wanted(generation) {
        let started_at = tokio::time::Instant::now();
        match run_once(&shared, set, generation).await {
            Ok(Ended::Replaced) => return,
            Ok(Ended::Died) => served = true,
            Err(error) => {
                tracing::error!(template = set.name, %error, "template failed");
                failed_starts += 1;
            }
        }
        set.started.send_replace(true);
        if !set.is_wanted(generation) {
            return;
        }
        if generation > 0 && !served && failed_starts >= GROWTH_ATTEMPTS {
            give_up_growth(&shared, index, generation);
            return;
        }
        set.restarts.fetch_add(1, Ordering::Relaxed);
        if started_at.elapsed() > HEALTHY_RUN {
            backoff = RESTART_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
    }
}

/// A grown template that never started (a module of `PRELOAD_ON_DEMAND` missing or broken):
/// the set goes back to `PRELOAD`, through a generation of its own, which replaces whichever
/// template still serves. Scripts importing those modules import them themselves.
fn give_up_growth(shared: &Arc<Shared>, index: usize, generation: u64) {
    let set = &shared.sets[index];
    tracing::error!(
        template = set.name,
        modules = %shared.on_demand.join(","),
        "the template preloading on-demand modules did not start; going on without them"
    );
    *set.lock_preload() = shared.preload.clone();
    let next = generation + 1;
    if set
        .wanted
        .compare_exchange(generation, next, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        tokio::spawn(keep_running(Arc::clone(shared), index, next));
    }
}

/// How a template's life ended.
enum Ended {
    /// It exited or was killed: start another.
    Died,
    /// A newer generation took over, and it retired.
    Replaced,
}

/// One template's life: start it, publish it once ready, and withdraw it when it exits or
/// retire it when a newer generation takes over.
async fn run_once(shared: &Shared, set: &Set, generation: u64) -> Result<Ended, SandboxError> {
    let preload = set.lock_preload().clone();
    let (template, mut process) = template::spawn(shared.runner.clone(), &shared.limits, &preload)?;
    let template = Arc::new(template);
    if let Err(error) = template.ready().await {
        process.kill();
        let (status, log) = process.exited().await;
        tracing::error!(template = set.name, ?status, %log, "the template did not start");
        return Err(error.into());
    }
    if !set.is_wanted(generation) {
        // Superseded while it imported its modules: the newer generation serves.
        process.kill();
        process.exited().await;
        return Ok(Ended::Replaced);
    }
    let (lease, mut leases_gone) = mpsc::channel(1);
    let serving = Serving {
        template: Arc::clone(&template),
        preload: preload.iter().cloned().collect(),
        lease: Lease { _held: lease },
    };
    tracing::info!(template = set.name, pid = process.pid(), preload = %preload.join(","), "template ready");
    *set.lock() = Some(serving.clone());
    // The spares of an older generation go with it: they hold its leases.
    set.spares.clear();
    set.spares.fill(&serving, &shared.limits);
    drop(serving);
    set.serving.send_replace(generation);
    set.started.send_replace(true);
    let mut serving = set.serving.subscribe();
    tokio::select! {
        () = template.closed() => {}
        _ = process.exited() => {}
        () = replaced(&mut serving, generation) => {
            retire(shared, set, &mut process, &mut leases_gone).await;
            return Ok(Ended::Replaced);
        }
    }
    set.withdraw(&template);
    process.kill();
    let (status, log) = process.exited().await;
    tracing::error!(template = set.name, ?status, %log, "template exited; starting a new one");
    Ok(Ended::Died)
}

/// Resolves once a template newer than `generation` serves.
async fn replaced(serving: &mut watch::Receiver<u64>, generation: u64) {
    // The guard `wait_for` returns must not be held across an await: dropped here.
    let _ = serving.wait_for(|serving| *serving > generation).await;
}

/// Ends a replaced template once the executions forked from it are over (those in flight
/// finish: under nsjail they live in its jail), or after their longest run and a grace.
async fn retire(
    shared: &Shared,
    set: &Set,
    process: &mut TemplateProcess,
    leases_gone: &mut mpsc::Receiver<()>,
) {
    let longest = shared.limits.wall + RETIRE_GRACE;
    tokio::select! {
        // `None` once every lease is dropped: no execution of this template is left.
        _ = tokio::time::timeout(longest, leases_gone.recv()) => {}
        _ = process.exited() => {}
    }
    process.kill();
    process.exited().await;
    tracing::info!(template = set.name, "the replaced template retired");
}
