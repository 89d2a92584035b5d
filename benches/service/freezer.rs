//! A cgroup v1 freezer cgroup, to stop a whole process tree between invocations the way AWS
//! Lambda freezes an execution environment: every process in it stops at once, timers and
//! background work included, and runs on where it was when thawed.
//!
//! Processes are moved in one by one through cgroup.procs; a process forked afterwards by one
//! inside is born inside. On drop the cgroup is thawed, emptied into the root freezer cgroup and
//! removed, so nothing is left frozen whatever happened in between.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::procs::{descendants, has_ended};

const HIERARCHY: &str = "/sys/fs/cgroup/freezer";
/// How long freezing may take: a task in an uninterruptible sleep freezes once it wakes.
const FROZEN_WITHIN: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Freezer {
    dir: PathBuf,
}

impl Freezer {
    /// A new freezer cgroup, or why there cannot be one (no v1 freezer hierarchy mounted, not
    /// root).
    pub fn create(name: &str) -> Result<Self, String> {
        let root = Path::new(HIERARCHY);
        if !root.join("cgroup.procs").is_file() {
            return Err(format!("no cgroup v1 freezer hierarchy at {HIERARCHY}"));
        }
        let dir = root.join(name);
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Self { dir })
    }

    /// Moves `root` and every process below it into the cgroup, parents before children (a
    /// child forked meanwhile by a moved parent is born inside). Returns how many were moved
    /// that were not in it yet (zombies aside).
    pub fn adopt_tree(&self, root: u32) -> io::Result<usize> {
        let inside = self.pids();
        let mut moved = 0;
        for pid in std::iter::once(root).chain(descendants(root)) {
            // A zombie cannot run, and leaves every cgroup as it exits: nothing to freeze.
            if inside.contains(&pid) || has_ended(pid) {
                continue;
            }
            match fs::write(self.dir.join("cgroup.procs"), pid.to_string()) {
                Ok(()) => moved += 1,
                // It ended between the listing and the move.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    fn pids(&self) -> Vec<u32> {
        let procs = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        procs.lines().filter_map(|line| line.parse().ok()).collect()
    }

    /// Freezes every process in the cgroup; false if they were not all frozen in time.
    pub async fn freeze(&self) -> io::Result<bool> {
        fs::write(self.dir.join("freezer.state"), "FROZEN")?;
        let deadline = Instant::now() + FROZEN_WITHIN;
        loop {
            let state = fs::read_to_string(self.dir.join("freezer.state"))?;
            if state.trim() == "FROZEN" {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn thaw(&self) -> io::Result<()> {
        fs::write(self.dir.join("freezer.state"), "THAWED")
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = self.thaw();
        let root_procs = Path::new(HIERARCHY).join("cgroup.procs");
        // Each pass moves out what is listed; a process forked meanwhile is moved next pass.
        for _ in 0..10 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = fs::write(&root_procs, pid.to_string());
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}
