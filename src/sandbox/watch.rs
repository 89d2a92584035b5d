//! The service's own watch over a running execution, for the whole-sandbox limits the kernel
//! does not keep by itself: without cgroups (compat on Lambda), memory and CPU time summed over
//! every process of the sandbox; with cgroups, CPU time summed over the cgroup (a cgroup limits
//! the CPU's rate, not its total, and RLIMIT_CPU counts one process at a time).
//!
//! It samples every [`INTERVAL`]: a limit can be overshot by what the sandbox does within one
//! interval, which the per-process rlimits (address space, CPU) still bound.
//!
//! CPU time must not vanish with the processes that spent it, or a script could use every core
//! for its whole wall-clock limit in short-lived processes. A process's time is counted while
//! it runs and as a zombie; once reaped, it lives on where the kernel put it: in the waiting
//! parent's children's time (a member), or, for an orphan the service reaped, in what the
//! reaper recorded for the sandbox's group (`crate::sandbox::reaper`). A child its parent let the kernel
//! reap (SIGCHLD ignored) leaves nothing anywhere: its last sample is kept.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::cgroup::ExecCgroup;
use crate::limits::Limits;
use crate::sandbox::procfs::{self, Stat};

pub const INTERVAL: Duration = Duration::from_millis(100);

/// Which whole-sandbox limit the watch ended the execution for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tripped {
    Memory,
    Cpu,
}

/// What the watch saw of the sandbox's processes (when it had to look at them itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub tripped: Option<Tripped>,
    /// The most private resident memory seen at once, summed over the processes.
    pub peak_memory_bytes: Option<u64>,
    /// CPU time since hand-over, summed over the processes, at the last sample.
    pub cpu: Option<Duration>,
}

/// One execution's watch.
#[derive(Debug)]
pub struct Watch {
    /// The sandbox's first process, which leads its process group.
    leader: i32,
    memory_limit: u64,
    cpu_limit: Duration,
    /// CPU the sandbox had used before its job (a warm one imported pandas).
    cpu_before: Duration,
    observed: Observed,
    /// Each member at the last sample: its parent and its own CPU ticks.
    last_seen: HashMap<i32, Seen>,
    /// Ticks of members reaped by the kernel itself, as last seen.
    auto_reaped_ticks: u64,
    /// Keeps what the reaper records for this sandbox's group while the watch lasts.
    _reaped: crate::sandbox::reaper::ReapedWatch,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    ppid: i32,
    own_ticks: u64,
}

impl Watch {
    pub fn new(leader: i32, limits: &Limits, cgroup: Option<&ExecCgroup>) -> Self {
        let mut watch = Self {
            leader,
            memory_limit: limits.memory.as_bytes(),
            cpu_limit: limits.cpu,
            cpu_before: Duration::ZERO,
            observed: Observed::default(),
            last_seen: HashMap::new(),
            auto_reaped_ticks: 0,
            _reaped: crate::sandbox::reaper::ReapedWatch::new(leader),
        };
        let members = if cgroup.is_some() {
            Vec::new()
        } else {
            watch.members_at_hand_over()
        };
        watch.cpu_before = watch.cpu_now(cgroup, &members).unwrap_or_default();
        watch
    }

    /// The members when the job is handed over: a sandbox waiting for its job has started
    /// nothing of the script's, so its leader and the leader's descendants (the supervisor and
    /// the script's process; a cold nsjail's jail), found through the kernel's lists of
    /// children without a scan of /proc (which cost 1.3 ms per execution on a machine with
    /// 200 processes). A kernel that does not list children gets the scan.
    fn members_at_hand_over(&self) -> Vec<(i32, Stat)> {
        let Some(below) = procfs::descendants(self.leader) else {
            return self.members();
        };
        std::iter::once(self.leader)
            .chain(below)
            .filter_map(|pid| Some((pid, Stat::of(pid)?)))
            .collect()
    }

    pub fn observed(&self) -> Observed {
        self.observed
    }

    /// Resolves when a whole-sandbox limit is passed; never, otherwise.
    pub async fn tripped(&mut self, cgroup: Option<&ExecCgroup>) -> Tripped {
        // The first sample one interval in: at hand-over there is nothing to see yet.
        let first = tokio::time::Instant::now() + INTERVAL;
        let mut ticks = tokio::time::interval_at(first, INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Some(tripped) = self.sample(cgroup) {
                self.observed.tripped = Some(tripped);
                return tripped;
            }
        }
    }

    fn sample(&mut self, cgroup: Option<&ExecCgroup>) -> Option<Tripped> {
        // With a cgroup, its CPU counter; the memory cgroup keeps the memory limit itself.
        let members = if cgroup.is_some() {
            Vec::new()
        } else {
            self.members()
        };
        let cpu = self.cpu_now(cgroup, &members)?;
        let cpu = cpu.saturating_sub(self.cpu_before);
        self.observed.cpu = Some(cpu);
        if cpu > self.cpu_limit {
            return Some(Tripped::Cpu);
        }
        if cgroup.is_some() {
            return None;
        }
        let memory: u64 = members
            .iter()
            .filter(|(_, stat)| !stat.is_zombie())
            .filter_map(|&(pid, _)| procfs::private_resident_bytes(pid))
            .sum();
        let peak = self.observed.peak_memory_bytes.unwrap_or(0).max(memory);
        self.observed.peak_memory_bytes = Some(peak);
        (memory > self.memory_limit).then_some(Tripped::Memory)
    }

    fn cpu_now(
        &mut self,
        cgroup: Option<&ExecCgroup>,
        members: &[(i32, Stat)],
    ) -> Option<Duration> {
        if let Some(cgroup) = cgroup {
            return cgroup.cpu();
        }
        self.account_for_the_vanished(members);
        let ticks: u64 = members.iter().map(|(_, stat)| stat.cpu_ticks).sum::<u64>()
            + self.auto_reaped_ticks
            + crate::sandbox::reaper::reaped_ticks(self.leader);
        Some(Duration::from_millis(
            ticks * 1000 / procfs::ticks_per_second(),
        ))
    }

    /// Keeps the last sample of every member the kernel reaped by itself (its parent, still a
    /// member, ignores SIGCHLD), and remembers this sample's members for the next.
    fn account_for_the_vanished(&mut self, members: &[(i32, Stat)]) {
        let present: HashSet<i32> = members.iter().map(|(pid, _)| *pid).collect();
        for (pid, seen) in &self.last_seen {
            if !present.contains(pid)
                && present.contains(&seen.ppid)
                && procfs::ignores_sigchld(seen.ppid)
            {
                self.auto_reaped_ticks += seen.own_ticks;
            }
        }
        self.last_seen = members
            .iter()
            .map(|(pid, stat)| {
                let seen = Seen {
                    ppid: stat.ppid,
                    own_ticks: stat.own_cpu_ticks,
                };
                (*pid, seen)
            })
            .collect();
    }

    /// The sandbox's processes, zombies included: its process group (compat; orphans
    /// included, whose parent is now the service) and everything below its leader (nsjail's
    /// jail, which has a session of its own).
    fn members(&self) -> Vec<(i32, Stat)> {
        let table: Vec<(i32, Stat)> = procfs::pids()
            .into_iter()
            .filter_map(|pid| Some((pid, Stat::of(pid)?)))
            .collect();
        let mut members: HashSet<i32> = table
            .iter()
            .filter(|(pid, stat)| *pid == self.leader || stat.pgrp == self.leader)
            .map(|(pid, _)| *pid)
            .collect();
        loop {
            let before = members.len();
            for (pid, stat) in &table {
                if members.contains(&stat.ppid) {
                    members.insert(*pid);
                }
            }
            if members.len() == before {
                break;
            }
        }
        table
            .into_iter()
            .filter(|(pid, _)| members.contains(pid))
            .collect()
    }
}
