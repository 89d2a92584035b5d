//! Reaping orphans. As a container's PID 1 (Cloud Run), and as a child subreaper everywhere
//! (see `platform::protect_service`), the service inherits every process whose parent died,
//! e.g. what a script left when its sandbox was killed. Their exit statuses must be collected or
//! they stay zombies for the life of the instance.
//!
//! tokio waits for the sandboxes it spawned; a blanket `waitpid(-1)` would steal their statuses.
//! So the reaper lists our children in /proc and waits only for those that are not live
//! sandboxes (`sandbox::live`), holding the same lock the spawner holds while it records a pid.

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use crate::procfs::Stat;
use crate::sandbox::live;

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

/// Waits for every exited child that is not a live sandbox; returns how many were reaped.
pub fn reap_orphans() -> usize {
    let ours = live::lock();
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let mut reaped = 0;
    for pid in children_of(me) {
        if ours.contains(&pid) {
            continue;
        }
        let mut status = 0;
        // SAFETY: WNOHANG on one pid: never blocks, never touches another child.
        if unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) } > 0 {
            reaped += 1;
        }
    }
    reaped
}

/// The pids whose parent is `parent`.
fn children_of(parent: i32) -> Vec<u32> {
    crate::procfs::pids()
        .into_iter()
        .filter(|&pid| Stat::of(pid).is_some_and(|stat| stat.ppid == parent))
        .map(|pid| pid as u32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphaned_zombie_is_reaped() {
        // A child that is not a live sandbox exits: the reaper collects it.
        let child = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn /bin/true");
        let pid = child.id();
        std::mem::forget(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            reap_orphans();
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("process {pid} was never reaped");
    }
}
