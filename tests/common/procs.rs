//! Finding host processes: by a marker in their command line (the test binaries that check
//! nothing a script started outlives its execution), and by descent from a process (the
//! sandboxes a service started, the processes a tool started). `/proc/<pid>/stat` is read by the
//! service's own parser, `python_executor::sandbox::procfs`.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long a killed process may take to disappear: the kernel reaps them asynchronously.
const REAPED_WITHIN: Duration = Duration::from_secs(3);

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for pid in pids() {
        if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!("{pid}: {cmdline}"));
            }
        }
    }
    found
}

/// Waits until no process carries `marker` (at most [`REAPED_WITHIN`]); returns what is left.
pub async fn survivors(marker: &str) -> Vec<String> {
    // The loop is `wait::until_async`'s, written out: the integration binary mounts this file on
    // its own, without its siblings.
    let deadline = Instant::now() + REAPED_WITHIN;
    loop {
        let found = processes_with(marker);
        if found.is_empty() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every process below `root`, from /proc's parent links, nearest first.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut found = Vec::new();
    let mut frontier: HashSet<u32> = HashSet::from([root]);
    while !frontier.is_empty() {
        let next: HashSet<u32> = parents
            .iter()
            .filter(|(_, parent)| frontier.contains(parent))
            .map(|(pid, _)| *pid)
            .collect();
        found.extend(next.iter().copied());
        frontier = next;
    }
    found
}

/// Every process on the machine.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The state and parent of `pid` from `/proc/<pid>/stat`, if it still exists: the fields
/// after the command name, which may itself hold spaces and parentheses.
fn state_and_parent(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// The parent of `pid`, if it still exists.
pub fn parent_of(pid: u32) -> Option<u32> {
    state_and_parent(pid).map(|(_, parent)| parent)
}

/// Whether `pid` has ended: gone, or a zombie waiting to be reaped.
pub fn has_ended(pid: u32) -> bool {
    state_and_parent(pid).is_none_or(|(state, _)| state == 'Z' || state == 'X')
}
