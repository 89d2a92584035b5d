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
//! The data template grows on demand, by the modules scripts import: the first script that
//! imports a package of `PRELOAD_ON_DEMAND` (matplotlib, scipy, scikit-learn, pyarrow by
//! default: each tens of MB of heap) starts a template that preloads what it imported of it too
//! ([`Templates::grow`]), on top of what the current one preloads; later scripts importing
//! other such modules grow it again, up to [`MAX_GROWTH`] modules. The current template serves
//! meanwhile (such scripts import the modules themselves); once the new one is ready it takes
//! over, and the old one retires when the last execution forked from it has ended ([`Lease`]).
//! A service whose scripts never use a package never holds it.

mod life;
mod routing;

pub use routing::import_statements;
mod spares;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::config::TemplateConfig;
use crate::limits::Limits;
use crate::observe::metrics::{ColdReason, Start, TemplateState};
use crate::packages::Packages;
use crate::sandbox::{Runner, SandboxError, Started, Zygote};
use life::{Lifespan, Stage};

/// Index of the data set in `Shared::sets`.
const DATA: usize = 1;
/// The most modules scripts may add to the data template's preload set, over the service's
/// life: each one costs its heap in every template after, and a new template's imports.
pub const MAX_GROWTH: usize = 24;

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
    /// Every module that sends a script to the data template: `PRELOAD`, `PRELOAD_ON_DEMAND`,
    /// and those of the distributions that require them (scikit-learn needs numpy).
    data_modules: Vec<String>,
    on_demand: Vec<String>,
    /// The runtime's distributions, to tell which modules a script may grow the template by.
    packages: Packages,
    /// How long each template serves before it is replaced.
    lifespan: Lifespan,
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
    /// How many times a template was replaced at the end of its span.
    recycles: AtomicU64,
    /// Executions forked ahead of their request ([`spares`]).
    spares: spares::Spares,
    /// The modules scripts asked the set to grow by (the data set only), added or given up:
    /// none is asked for twice.
    asked: Mutex<BTreeSet<String>>,
    /// The generation of template wanted, raised by each replacement ([`life`]): growth,
    /// growth given up, the end of a span. A task keeping an older generation running stops
    /// restarting it.
    wanted: AtomicU64,
    /// The generation of the template serving; an older one retires once a newer serves.
    serving: watch::Sender<u64>,
}

/// A template ready for requests.
#[derive(Clone, Debug)]
struct Serving {
    template: Arc<Zygote>,
    /// The modules it imported.
    preload: Arc<[String]>,
    generation: u64,
    /// When it began to serve, and how many executions it forked since.
    born: Instant,
    forks: Arc<AtomicU64>,
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
    /// How many times it was replaced at the end of its span (`TEMPLATE_MAX_FORKS`,
    /// `TEMPLATE_MAX_AGE_S`).
    pub recycles: u64,
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
    pub fn start(
        runner: Runner,
        limits: &Limits,
        config: &TemplateConfig,
        packages: &Packages,
    ) -> Self {
        let set = |name, preload: Vec<String>| Set {
            name,
            preload: Mutex::new(preload),
            current: Mutex::new(None),
            started: watch::Sender::new(false),
            restarts: AtomicU64::new(0),
            recycles: AtomicU64::new(0),
            spares: spares::Spares::new(config.spare_forks),
            asked: Mutex::new(BTreeSet::new()),
            wanted: AtomicU64::new(0),
            serving: watch::Sender::new(0),
        };
        let mut data_modules = config.preload.clone();
        data_modules.extend(config.preload_on_demand.iter().cloned());
        let dependents = packages.modules_needing(&data_modules);
        data_modules.extend(dependents);
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
            packages: packages.clone(),
            lifespan: Lifespan {
                max_forks: config.max_forks.into(),
                max_age: config.max_age,
            },
        });
        for index in 0..shared.sets.len() {
            let preload = shared.sets[index].lock_preload().clone();
            tokio::spawn(life::keep_running(Arc::clone(&shared), index, 0, preload));
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
    /// job, and where it came from; or why it must start cold (its template is not serving right
    /// now, or the fork failed).
    pub async fn fork(&self, script: &str) -> Result<(Started, Start), ColdReason> {
        let shared = &self.shared;
        let index = usize::from(routing::imports_any(script, &shared.data_modules));
        let set = &shared.sets[index];
        if index == DATA && routing::imports_any(script, &shared.on_demand) {
            self.grow(script);
        }
        let serving = set.lock().clone().ok_or(ColdReason::TemplateDown)?;
        match shared
            .lifespan
            .stage(serving.born.elapsed(), serving.forks())
        {
            Stage::Young => {}
            Stage::Due => life::recycle(shared, index, serving.generation),
            Stage::Expired => {
                life::recycle(shared, index, serving.generation);
                return Err(ColdReason::TemplateDown);
            }
        }
        let started_at = std::time::Instant::now();
        let start = |spare| Start::Template {
            name: set.name,
            spare,
        };
        if let Some(spare) = set.spares.take(&serving, &shared.limits).await {
            let waited_us = started_at.elapsed().as_micros() as u64;
            tracing::debug!(template = set.name, waited_us, "spare taken");
            return Ok((spare, start(true)));
        }
        let forked = serving.fork(&shared.limits).await;
        let fork_us = started_at.elapsed().as_micros() as u64;
        tracing::debug!(template = set.name, ok = forked.is_ok(), fork_us, "forked");
        match forked {
            Ok(sandbox) => Ok((sandbox, start(false))),
            Err(error) => {
                tracing::warn!(template = set.name, %error, "could not fork from the template");
                Err(ColdReason::ForkFailed)
            }
        }
    }

    /// A script imported a package of `PRELOAD_ON_DEMAND`: starts a data template that also
    /// preloads what it imported of it (and the configured module), unless every one of those
    /// was asked for before, to take over from the current one once it is ready.
    fn grow(&self, script: &str) {
        let shared = &self.shared;
        let set = &shared.sets[DATA];
        let new: Vec<String> = {
            let mut asked = set.lock_asked();
            if asked.len() >= MAX_GROWTH {
                return;
            }
            // Modules asked for before are not looked up again: once a script's imports have
            // all been asked for, this costs a scan of its text and no file system call.
            let wanted = routing::growth(script, &shared.on_demand, |module| {
                !asked.contains(module) && shared.packages.has_module(module)
            });
            let room = MAX_GROWTH - asked.len();
            let new: Vec<String> = wanted
                .into_iter()
                .filter(|module| !asked.contains(module))
                .take(room)
                .collect();
            asked.extend(new.iter().cloned());
            new
        };
        if new.is_empty() {
            return;
        }
        if life::grow_by(shared, DATA, &new) {
            tracing::info!(
                template = set.name,
                modules = %new.join(","),
                "a script imported modules to preload on demand: starting a template that preloads them"
            );
        }
    }

    /// Each set's restarts, recycles and growth, for the metrics.
    pub fn counts(&self) -> Vec<TemplateState> {
        let counts = |set: &Set| TemplateState {
            name: set.name,
            restarts: set.restarts.load(Ordering::Relaxed),
            recycles: set.recycles.load(Ordering::Relaxed),
            grown: set.has_grown(),
        };
        self.shared.sets.iter().map(counts).collect()
    }

    pub fn status(&self) -> TemplatesStatus {
        let status = |set: &Set| {
            let serving = set.lock().as_ref().map(|serving| serving.preload.to_vec());
            TemplateStatus {
                ready: serving.is_some(),
                restarts: set.restarts.load(Ordering::Relaxed),
                recycles: set.recycles.load(Ordering::Relaxed),
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
    fn new(template: Arc<Zygote>, preload: &[String], generation: u64, lease: Lease) -> Self {
        Self {
            template,
            preload: preload.iter().cloned().collect(),
            generation,
            born: Instant::now(),
            forks: Arc::new(AtomicU64::new(0)),
            lease,
        }
    }

    fn forks(&self) -> u64 {
        self.forks.load(Ordering::Relaxed)
    }

    /// Forks an execution, which holds a lease on the template until its teardown is over.
    async fn fork(&self, limits: &Limits) -> Result<Started, SandboxError> {
        self.forks.fetch_add(1, Ordering::Relaxed);
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

    /// Whether scripts asked the set to grow (added or given up), for the metrics.
    fn has_grown(&self) -> bool {
        !self.lock_asked().is_empty()
    }

    fn lock_asked(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_wanted(&self, generation: u64) -> bool {
        self.wanted.load(Ordering::Acquire) == generation
    }

    /// Withdraws the serving template if it is `template` (and not a newer one).
    fn withdraw(&self, template: &Arc<Zygote>) {
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
