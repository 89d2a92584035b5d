//! Sandboxes started ahead of time, each waiting for exactly one job.
//!
//! Two kinds: "plain" (the interpreter up, nothing imported) and "data" (the configured preload
//! set, numpy and pandas by default, already imported). A script goes to the kind its imports
//! call for ([`routing`]). A pooled sandbox serves one request and is destroyed; a fresh one
//! replaces it in the background, as many as recent demand asks for ([`demand`]). Nothing is
//! shared between requests: each has its own namespaces, /tmp, cgroup and processes. The
//! script's process is forked from the warm supervisor and idles until its job arrives, so its
//! CPU time, like the deadline, effectively counts from hand-over.

mod demand;
mod routing;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::config::PoolConfig;
use crate::limits::Limits;
use crate::sandbox::cgroup::CgroupRoot;
use crate::sandbox::process::{self, Started};
use crate::sandbox::Sandbox;
use demand::Demand;

/// How often expired sandboxes are swept and pools resized.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sandbox: Arc<dyn Sandbox>,
    cgroups: Option<CgroupRoot>,
    /// The limits warm sandboxes start with; their deadline is set at hand-over.
    limits: Limits,
    config: PoolConfig,
    /// `[plain, data]`.
    kinds: [Kind; 2],
}

#[derive(Debug)]
struct Kind {
    name: &'static str,
    preload: Vec<String>,
    state: Mutex<KindState>,
}

#[derive(Debug)]
struct KindState {
    warm: VecDeque<Warm>,
    starting: usize,
    /// Requests in flight whose replacement waits until they end (see [`Refill`]).
    deferred: usize,
    demand: Demand,
}

#[derive(Debug)]
struct Warm {
    sandbox: Started,
    born: Instant,
}

/// Warm counts, for /health.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PoolStatus {
    pub plain: usize,
    pub data: usize,
}

impl Pool {
    /// Starts the pool and its maintenance task; call from within the runtime.
    pub fn start(
        sandbox: Arc<dyn Sandbox>,
        cgroups: Option<CgroupRoot>,
        limits: &Limits,
        config: PoolConfig,
    ) -> Self {
        let now = Instant::now();
        let kind = |name, preload: Vec<String>| Kind {
            name,
            preload,
            state: Mutex::new(KindState {
                warm: VecDeque::new(),
                starting: 0,
                deferred: 0,
                demand: Demand::new(config.demand_window, now),
            }),
        };
        let kinds = [
            kind("plain", Vec::new()),
            kind("data", config.preload.clone()),
        ];
        let shared = Arc::new(Shared {
            sandbox,
            cgroups,
            limits: warm_limits(limits, config.idle),
            config,
            kinds,
        });
        for index in 0..shared.kinds.len() {
            shared.refill(index, false);
        }
        tokio::spawn(maintain(Arc::downgrade(&shared)));
        Self { shared }
    }

    /// A warm sandbox suited to `script`, if one is ready. The returned [`Refill`] starts its
    /// replacement when dropped: hold it until the execution is over, so the replacement's
    /// start (half a second of CPU for pandas) never competes with the request it replaces.
    pub fn take(&self, script: &str) -> (Option<Started>, Refill) {
        let shared = &self.shared;
        let index = usize::from(routing::imports_any(script, &shared.config.preload));
        let mut state = shared.kinds[index].lock();
        state.demand.record(Instant::now());
        state.deferred += 1;
        let mut taken = None;
        while let Some(mut warm) = state.warm.pop_front() {
            if warm.sandbox.is_alive() && warm.born.elapsed() < shared.config.idle {
                taken = Some(warm.sandbox);
                break;
            }
            tokio::spawn(warm.sandbox.discard());
        }
        drop(state);
        tracing::debug!(
            pool = shared.kinds[index].name,
            warm = taken.is_some(),
            "pool take"
        );
        let refill = Refill {
            shared: Arc::clone(shared),
            index,
        };
        (taken, refill)
    }

    pub fn status(&self) -> PoolStatus {
        let count = |index: usize| self.shared.kinds[index].lock().warm.len();
        PoolStatus {
            plain: count(0),
            data: count(1),
        }
    }
}

/// Refills one kind of warm sandbox when dropped (see [`Pool::take`]).
#[derive(Debug)]
pub struct Refill {
    shared: Arc<Shared>,
    index: usize,
}

impl Drop for Refill {
    fn drop(&mut self) {
        self.shared.kinds[self.index].lock().deferred -= 1;
        self.shared.refill(self.index, true);
    }
}

/// A warm sandbox may wait up to `idle` before its job, so nsjail's backstop time limit (set
/// from `wall`) must allow for that wait on top of the deadline.
fn warm_limits(limits: &Limits, idle: Duration) -> Limits {
    Limits {
        wall: limits.wall + idle,
        ..limits.clone()
    }
}

impl Kind {
    fn lock(&self) -> MutexGuard<'_, KindState> {
        // A panic while holding this lock leaves only counts behind; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shared {
    /// Starts sandboxes until this kind has as many warm or starting as demand asks for, and
    /// ends the surplus and the expired. `replacing` is set when a request just ended: its
    /// replacement may start now. Otherwise (periodic maintenance) requests still in flight
    /// count as covered, so their replacements never start early and compete with them.
    fn refill(self: &Arc<Self>, index: usize, replacing: bool) {
        let kind = &self.kinds[index];
        let mut state = kind.lock();
        let target = state.demand.target(Instant::now(), self.config.size);
        let idle = self.config.idle;
        while state.warm.len() > target
            || state.warm.front().is_some_and(|w| w.born.elapsed() >= idle)
        {
            if let Some(warm) = state.warm.pop_front() {
                tokio::spawn(warm.sandbox.discard());
            }
        }
        let in_flight = if replacing { 0 } else { state.deferred };
        let missing = target.saturating_sub(state.warm.len() + state.starting + in_flight);
        state.starting += missing;
        drop(state);
        for _ in 0..missing {
            let shared = Arc::clone(self);
            tokio::spawn(async move { shared.start_one(index) });
        }
    }

    fn start_one(&self, index: usize) {
        let kind = &self.kinds[index];
        let started = process::start(
            &*self.sandbox,
            self.cgroups.as_ref(),
            &self.limits,
            &kind.preload,
        );
        let mut state = kind.lock();
        state.starting -= 1;
        match started {
            Ok(sandbox) => state.warm.push_back(Warm {
                sandbox,
                born: Instant::now(),
            }),
            Err(error) => {
                tracing::warn!(%error, pool = kind.name, "could not start a warm sandbox")
            }
        }
    }
}

async fn maintain(shared: Weak<Shared>) {
    let mut interval = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        interval.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        for index in 0..shared.kinds.len() {
            shared.refill(index, false);
        }
    }
}
