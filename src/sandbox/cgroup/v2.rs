//! Preparing a cgroup v2 subtree for sandboxes (Cloud Run gen2, most current hosts).
//!
//! cgroup v2 forbids a cgroup to hold processes and hand controllers to children at once (the
//! "no internal processes" rule). So the service first moves every process of its own cgroup
//! (normally just itself, as a container's PID 1) into a `supervisor` leaf, then enables the
//! memory and pids controllers and creates `sandboxes/`, under which each execution gets a leaf.

use std::fs;
use std::path::{Path, PathBuf};

use super::{ensure_dir, write, CgroupError, CgroupRoot};

const CONTROLLERS: &str = "+memory +pids";

pub fn prepare(mount: &Path) -> Result<CgroupRoot, CgroupError> {
    let own = own_cgroup(mount)?;
    let available = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    if !(available.contains("memory") && available.contains("pids")) {
        let error = std::io::Error::other("the memory and pids controllers are not delegated");
        return Err(CgroupError {
            path: own,
            source: error,
        });
    }
    let (base, supervisor) = if own.file_name().is_some_and(|name| name == "supervisor") {
        // Already prepared by an earlier start of this process tree.
        let base = own.parent().map_or_else(|| own.clone(), Path::to_path_buf);
        (base, own)
    } else {
        let supervisor = ensure_dir(&own.join("supervisor"))?;
        (own, supervisor)
    };
    move_processes(&base, &supervisor)?;
    write(&base.join("cgroup.subtree_control"), CONTROLLERS)?;
    let sandboxes = ensure_dir(&base.join("sandboxes"))?;
    write(&sandboxes.join("cgroup.subtree_control"), CONTROLLERS)?;
    super::sweep_stale(&sandboxes);
    Ok(CgroupRoot::V2 { sandboxes })
}

/// This process's cgroup directory, from the `0::/path` line of /proc/self/cgroup.
fn own_cgroup(mount: &Path) -> Result<PathBuf, CgroupError> {
    let listing = fs::read_to_string("/proc/self/cgroup").map_err(|source| CgroupError {
        path: "/proc/self/cgroup".into(),
        source,
    })?;
    let relative = listing
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .unwrap_or("/");
    Ok(mount.join(relative.trim_start_matches('/')))
}

fn move_processes(from: &Path, to: &Path) -> Result<(), CgroupError> {
    let procs = fs::read_to_string(from.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter(|line| !line.trim().is_empty()) {
        // A process may exit between the read and the move; that is not an error.
        let _ = write(&to.join("cgroup.procs"), pid.trim());
    }
    Ok(())
}
