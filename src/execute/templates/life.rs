//! One template's life, from start to retirement, and the task that keeps each generation of a
//! set running.
//!
//! A set's template is replaced by a newer *generation* when the set grows by modules of
//! `PRELOAD_ON_DEMAND` a script imported, when a growth is given up, and when the template has lived its span
//! ([`Lifespan`]): every fork shares its template's hash seed, random-generator state before
//! reseeding, and address-space layout, so a script that learns them learns them only for the
//! executions of one template's span. The replacement starts at half the span, from a request
//! or a timer, and takes over once its imports are done; the old one retires when its last
//! execution has ended.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{Lease, Serving, Set, Shared, DATA};
use crate::sandbox::{SandboxError, ZygoteProcess};

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

/// How long a template serves, in forks and in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifespan {
    pub max_forks: u64,
    pub max_age: Duration,
}

/// Where a template is in its span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Young,
    /// Past half its span: its replacement should be starting.
    Due,
    /// Past its span: it forks nothing more (requests start cold until the replacement
    /// serves, which it normally does long before).
    Expired,
}

impl Lifespan {
    pub fn stage(&self, age: Duration, forks: u64) -> Stage {
        if age >= self.max_age || forks >= self.max_forks {
            Stage::Expired
        } else if age >= self.max_age / 2 || forks >= self.max_forks.div_ceil(2) {
            Stage::Due
        } else {
            Stage::Young
        }
    }
}

/// Keeps one generation of a set's template running, starting it again whenever it dies, until
/// a newer generation is wanted. `preload` is what this generation imports.
pub async fn keep_running(
    shared: Arc<Shared>,
    index: usize,
    generation: u64,
    preload: Vec<String>,
) {
    let set = &shared.sets[index];
    let grown = index == DATA && preload != shared.preload;
    let mut backoff = RESTART_BACKOFF;
    let (mut served, mut failed_starts) = (false, 0);
    while set.is_wanted(generation) {
        let started_at = tokio::time::Instant::now();
        match run_once(&shared, index, generation, &preload).await {
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
        if grown && !served && failed_starts >= GROWTH_ATTEMPTS {
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

/// Starts the next generation of a set's template, unless one newer than `generation` is
/// already wanted; `prepare` runs first, under the preload set's lock (growing the set, say).
pub fn start_next_generation(
    shared: &Arc<Shared>,
    index: usize,
    generation: u64,
    prepare: impl FnOnce(&mut Vec<String>),
) -> bool {
    let set = &shared.sets[index];
    let mut preload = set.lock_preload();
    if !set.is_wanted(generation) {
        return false;
    }
    prepare(&mut preload);
    spawn_next(shared, index, generation, preload.clone());
    true
}

/// Starts the next generation of the data set's template with `modules` added to what the
/// newest generation preloads, whichever that is: growths accumulate, and one that starts while
/// another is still importing supersedes it. False when all of them are preloaded already.
pub fn grow_by(shared: &Arc<Shared>, index: usize, modules: &[String]) -> bool {
    let set = &shared.sets[index];
    let mut preload = set.lock_preload();
    let before = preload.len();
    for module in modules {
        if !preload.contains(module) {
            preload.push(module.clone());
        }
    }
    if preload.len() == before {
        return false;
    }
    let generation = set.wanted.load(Ordering::Acquire);
    spawn_next(shared, index, generation, preload.clone());
    true
}

/// Wants generation `generation + 1`, importing `preload`, and starts the task keeping it
/// running. Called with the set's preload lock held, so generations are wanted in order.
fn spawn_next(shared: &Arc<Shared>, index: usize, generation: u64, preload: Vec<String>) {
    let set = &shared.sets[index];
    set.wanted.store(generation + 1, Ordering::Release);
    tokio::spawn(keep_running(
        Arc::clone(shared),
        index,
        generation + 1,
        preload,
    ));
}

/// A template that has lived half its span: its replacement starts.
pub fn recycle(shared: &Arc<Shared>, index: usize, generation: u64) {
    if start_next_generation(shared, index, generation, |_| {}) {
        let set = &shared.sets[index];
        set.recycles.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            template = set.name,
            "the template has lived half its span: starting its replacement"
        );
    }
}

/// A grown template that never started (a module of `PRELOAD_ON_DEMAND` missing or broken,
/// or one a script named that fails to import): the set goes back to `PRELOAD`, through a
/// generation of its own, which replaces whichever template still serves. Every module asked
/// for so far stays asked for, so none is tried again, and scripts importing them import them
/// themselves. Going back to `PRELOAD` rather than to the last template that served keeps this
/// from looping: `PRELOAD` is not a growth, so it is never given up.
fn give_up_growth(shared: &Arc<Shared>, index: usize, generation: u64) {
    let set = &shared.sets[index];
    let grown: Vec<String> = set
        .lock_preload()
        .iter()
        .filter(|module| !shared.preload.contains(module))
        .cloned()
        .collect();
    tracing::error!(
        template = set.name,
        modules = %grown.join(","),
        "the template preloading on-demand modules did not start; going on without them"
    );
    start_next_generation(shared, index, generation, |preload| {
        *preload = shared.preload.clone();
    });
}

/// How a template's life ended.
enum Ended {
    /// It exited or was killed: start another.
    Died,
    /// A newer generation took over, and it retired.
    Replaced,
}

/// One template's life: start it, publish it once ready, start its replacement at half its
/// span, and withdraw it when it exits or retire it when a newer generation takes over.
async fn run_once(
    shared: &Arc<Shared>,
    index: usize,
    generation: u64,
    preload: &[String],
) -> Result<Ended, SandboxError> {
    let set = &shared.sets[index];
    let (template, mut process) = shared.runner.spawn_zygote(&shared.limits, preload)?;
    let template = Arc::new(template);
    if let Err(error) = template.ready().await {
        process.kill();
        let (status, log) = process.exited().await;
        tracing::error!(template = set.name, ?status, %log, "the template did not start");
        return Err(error);
    }
    if !set.is_wanted(generation) {
        // Superseded while it imported its modules: the newer generation serves.
        process.kill();
        process.exited().await;
        return Ok(Ended::Replaced);
    }
    let (lease, mut leases_gone) = mpsc::channel(1);
    let serving = Serving::new(
        Arc::clone(&template),
        preload,
        generation,
        Lease { _held: lease },
    );
    tracing::info!(template = set.name, pid = process.pid(), preload = %preload.join(","), "template ready");
    *set.lock() = Some(serving.clone());
    // The spares of an older generation go with it: they hold its leases.
    set.spares.clear();
    set.spares.fill(&serving, &shared.limits);
    drop(serving);
    set.serving.send_replace(generation);
    set.started.send_replace(true);
    let mut serving = set.serving.subscribe();
    let due = tokio::time::sleep(shared.lifespan.max_age / 2);
    tokio::pin!(due);
    loop {
        tokio::select! {
            () = template.closed() => break,
            _ = process.exited() => break,
            () = replaced(&mut serving, generation) => {
                retire(shared, set, &mut process, &mut leases_gone).await;
                return Ok(Ended::Replaced);
            }
            () = &mut due, if !due.is_elapsed() => recycle(shared, index, generation),
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
    process: &mut ZygoteProcess,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_is_due_at_half_its_span_and_expires_at_its_end() {
        let span = Lifespan {
            max_forks: 10,
            max_age: Duration::from_secs(600),
        };
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(span.stage(minutes(0), 0), Stage::Young);
        assert_eq!(span.stage(minutes(4), 4), Stage::Young);
        assert_eq!(span.stage(minutes(5), 0), Stage::Due);
        assert_eq!(span.stage(minutes(0), 5), Stage::Due);
        assert_eq!(span.stage(minutes(9), 9), Stage::Due);
        assert_eq!(span.stage(minutes(10), 0), Stage::Expired);
        assert_eq!(span.stage(minutes(0), 10), Stage::Expired);
        let odd = Lifespan {
            max_forks: 3,
            max_age: Duration::from_secs(600),
        };
        assert_eq!(odd.stage(minutes(0), 1), Stage::Young);
        assert_eq!(odd.stage(minutes(0), 2), Stage::Due);
    }
}
