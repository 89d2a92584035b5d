//! Finding host processes: by a marker in their command line (the test binaries that check
//! nothing a script started outlives its execution), and by descent from a process (the
//! sandboxes a service started, the processes a tool started).

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::time::Duration;

/// Processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(marker) {
                found.push(format!(
                    "{}: {cmdline}",
                    entry.file_name().to_string_lossy()
                ));
            }
        }
    }
    found
}

/// Waits (briefly: the kernel reaps killed processes asynchronously) until no process carries
/// `marker`; returns what is left.
pub async fn survivors(marker: &str) -> Vec<String> {
    for _ in 0..30 {
        let found = processes_with(marker);
        if found.is_empty() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processes_with(marker)
}

/// Every process below `root`, from /proc's parent links, nearest first.
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
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

/// The parent of `pid`, from /proc/<pid>/stat.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its last ')' do not.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}
