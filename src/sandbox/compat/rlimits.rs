//! The rlimits of one compat execution, computed before fork and set in the child.
//!
//! They are the same limits nsjail sets (CPU, address space, file size, open files, core), plus
//! the process limit: exact when each execution runs under a uid of its own (RLIMIT_NPROC counts
//! per uid), and only a backstop when the sandbox shares the service's uid.

use crate::limits::Limits;

pub use pyexec_isolate::Rlimit;

/// How many processes the sandbox's uid may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessLimit {
    /// The uid is the execution's own: the limit is exactly the configured one.
    OwnUid,
    /// The uid is shared with the service (and counts its threads too): the configured limit
    /// on top of what the uid already runs. Cgroups, when present, are the real limit.
    SharedUid { already_running: u64 },
}

pub fn for_execution(limits: &Limits, processes: ProcessLimit) -> Vec<Rlimit> {
    let nproc = u64::from(limits.processes)
        + match processes {
            ProcessLimit::OwnUid => 0,
            ProcessLimit::SharedUid { already_running } => already_running,
        };
    [
        // One second above the limit, as under nsjail: the harness lowers the script's soft
        // limit to the limit itself, so the limit arrives as SIGXCPU (see Limits).
        (libc::RLIMIT_CPU, limits.cpu_hard_seconds()),
        // Per process, as in nsjail: turns a huge allocation into Python's MemoryError.
        (libc::RLIMIT_AS, limits.memory.as_bytes()),
        (libc::RLIMIT_FSIZE, limits.file_size.as_bytes()),
        (libc::RLIMIT_NOFILE, u64::from(limits.open_files)),
        (libc::RLIMIT_NPROC, nproc),
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_MEMLOCK, 0),
        (libc::RLIMIT_MSGQUEUE, 0),
    ]
    .into_iter()
    .map(|(resource, value)| Rlimit { resource, value })
    .collect()
}

/// What RLIMIT_NPROC already counts for a shared uid and will still count when this execution
/// runs: every task of the uid (the service's threads, the templates, spare executions) but
/// those of executions running now, which will be gone by then (a spare is prepared while
/// another execution runs).
pub fn uid_tasks_staying() -> u64 {
    let running = crate::sandbox::live::running_sessions();
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    crate::sandbox::procfs::pids()
        .into_iter()
        .filter(|pid| {
            crate::sandbox::procfs::Stat::of(*pid).is_some_and(|stat| !running.contains(&stat.pgrp))
        })
        .filter_map(|pid| tasks_of_uid(pid, uid))
        .sum()
}

/// The number of threads of `pid` when its real uid is `uid`.
fn tasks_of_uid(pid: i32, uid: libc::uid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u64>().ok())
    };
    (field("Uid:")? == u64::from(uid)).then(|| field("Threads:").unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(rlimits: &[Rlimit], resource: u32) -> u64 {
        rlimits
            .iter()
            .find(|limit| limit.resource == resource)
            .map(|limit| limit.value)
            .expect("limit present")
    }

    #[test]
    fn limits_follow_the_configuration() {
        let limits = Limits::default();
        let rlimits = for_execution(&limits, ProcessLimit::OwnUid);
        assert_eq!(value(&rlimits, libc::RLIMIT_AS), limits.memory.as_bytes());
        assert_eq!(value(&rlimits, libc::RLIMIT_CPU), 11);
        assert_eq!(value(&rlimits, libc::RLIMIT_NPROC), 64);
        assert_eq!(value(&rlimits, libc::RLIMIT_CORE), 0);
    }

    #[test]
    fn a_shared_uid_keeps_room_for_the_service() {
        let rlimits = for_execution(
            &Limits::default(),
            ProcessLimit::SharedUid {
                already_running: 20,
            },
        );
        assert_eq!(value(&rlimits, libc::RLIMIT_NPROC), 84);
    }
}
