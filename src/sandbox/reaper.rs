//! Reaping orphans. As a container's PID 1 (Cloud Run), and as a child subreaper everywhere
//! (see `platform::protect_service`), the service inherits every process whose parent died,
//! e.g. what a script left when its sandbox was killed. Their exit statuses must be collected or
//! they stay zombies for the life of the instance.
//!
//! tokio waits for the sandboxes it spawned; a blanket `waitpid(-1)` would steal their statuses.
//! So the reaper lists our children and waits only for those that are not live sandboxes
//! (`sandbox::live`), holding the same lock the spawner holds while it records a pid, and only
//! for those outside the service's own process group (every sandbox has a session of its own).
//!
//! What an orphan of a watched sandbox spent is recorded for the sandbox's process group
//! ([`ReapedWatch`]): reaped here, its CPU time would otherwise vanish from the watch's sums
//! (`sandbox::watch`).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use crate::sandbox::live;
use crate::sandbox::procfs::Stat;

/// SIGCHLD signals coalesce; a periodic sweep catches any we merged away.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Starts the reaper task.
pub fn spawn() -> std::io::Result<JoinHandle<()>> {
    let mut children = signal(SignalKind::child())?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = children.recv() => {},
                _ = tokio::time::sleep(SWEEP_EVERY) => {},
            }
            reap_orphans();
        }
    }))
}

/// CPU ticks of reaped orphans, by the process group of a watched sandbox.
static REAPED_TICKS: Mutex<BTreeMap<i32, u64>> = Mutex::new(BTreeMap::new());

/// Records what orphans of one process group spend, for as long as it lives.
#[derive(Debug)]
pub struct ReapedWatch(i32);

impl ReapedWatch {
    pub fn new(group: i32) -> Self {
        reaped_ticks_table().insert(group, 0);
        Self(group)
    }
}

impl Drop for ReapedWatch {
    fn drop(&mut self) {
        reaped_ticks_table().remove(&self.0);
    }
}

/// The CPU ticks of the orphans of `group` reaped here since its watch began.
pub fn reaped_ticks(group: i32) -> u64 {
    reaped_ticks_table().get(&group).copied().unwrap_or(0)
}

fn reaped_ticks_table() -> std::sync::MutexGuard<'static, BTreeMap<i32, u64>> {
    REAPED_TICKS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for every exited child that is not a live sandbox; returns how many were reaped.
pub fn reap_orphans() -> usize {
    let ours = live::lock();
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    // SAFETY: getpgrp cannot fail.
    let own_group = unsafe { libc::getpgrp() };
    let mut reaped = 0;
    for (pid, group) in children_of(me) {
        // A child in the service's own process group is one it started itself, whoever waits
        // for it (a tool, or a test's client): every sandbox, and so every orphan one leaves,
        // is in a session of its own, and a process there cannot join this one's group.
        if ours.contains(&(pid as u32)) || group == own_group {
            continue;
        }
        let mut status = 0;
        // SAFETY: a zeroed rusage for wait4 to fill.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: WNOHANG on one pid: never blocks, never touches another child.
        if unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } > 0 {
            reaped += 1;
            if let Some(ticks) = reaped_ticks_table().get_mut(&group) {
                *ticks += cpu_ticks(&usage);
            }
        }
    }
    reaped
}

/// A reaped process's CPU time (its own and its waited-for children's) in clock ticks.
fn cpu_ticks(usage: &libc::rusage) -> u64 {
    let micros = |time: libc::timeval| time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64;
    let total = micros(usage.ru_utime) + micros(usage.ru_stime);
    total * crate::sandbox::procfs::ticks_per_second() / 1_000_000
}

/// The pids whose parent is `parent`, with their process groups: from the kernel's list of
/// its children where it has one (a scan of all of /proc on every SIGCHLD cost the service
/// more than anything else it does per execution), else from that scan.
fn children_of(parent: i32) -> Vec<(i32, i32)> {
    let Some(children) = crate::sandbox::procfs::children(parent) else {
        return crate::sandbox::procfs::pids()
            .into_iter()
            .filter_map(|pid| Some((pid, Stat::of(pid)?)))
            .filter(|(_, stat)| stat.ppid == parent)
            .map(|(pid, stat)| (pid, stat.pgrp))
            .collect();
    };
    children
        .into_iter()
        .filter_map(|pid| Some((pid, Stat::of(pid)?.pgrp)))
        .collect()
}
