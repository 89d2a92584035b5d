//! Where compat's executions get their working directories: one directory per service
//! process under the system's temporary directory, never `/tmp` itself. Creating and removing
//! a scratch directory there leaves `/tmp`'s change time alone, which is how an execution is
//! known to have left nothing in `/tmp` (see [`super::leftovers`]); and what a killed service
//! left is one directory, which the next start removes.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "python-executor-run-";

/// A service process's directory of scratch directories, removed when dropped.
#[derive(Debug)]
pub struct ScratchRoot {
    path: PathBuf,
}

/// Several sandboxes may live in one process (tests): each has a directory of its own.
static CREATED: AtomicU64 = AtomicU64::new(0);

impl ScratchRoot {
    /// Creates this process's directory in `parent`, after removing those of processes that
    /// no longer exist. Executions' uids may only pass through it (mode 0711).
    pub fn create(parent: &Path) -> io::Result<Self> {
        remove_those_of_dead_processes(parent);
        let count = CREATED.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("{PREFIX}{}-{count}", std::process::id()));
        if path.exists() {
            // A dead process's, whose pid this one now has.
            fs::remove_dir_all(&path)?;
        }
        fs::DirBuilder::new().mode(0o711).create(&path)?;
        // The umask may have taken bits away.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o711))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes the directories of service processes that ended without removing theirs (killed).
fn remove_those_of_dead_processes(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_processs_directory_goes_and_this_ones_stays_until_dropped() {
        let parent = tempfile::tempdir().expect("tempdir");
        // No process has a pid this high (pid_max is at most 2^22).
        let dead = parent.path().join(format!("{PREFIX}{}-0", 1u32 << 30));
        fs::create_dir_all(dead.join("left/behind")).expect("mkdir");
        let unrelated = parent.path().join("python-executor-something-else");
        fs::create_dir(&unrelated).expect("mkdir");
        let root = ScratchRoot::create(parent.path()).expect("a root");
        assert!(!dead.exists(), "a dead process's directory is removed");
        assert!(unrelated.exists(), "only the service's own kind is touched");
        let mode = fs::metadata(root.path())
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o711);
        let path = root.path().to_path_buf();
        let again = ScratchRoot::create(parent.path()).expect("another root");
        assert!(path.exists(), "a live process's directory stays");
        assert_ne!(again.path(), path);
        drop(root);
        assert!(!path.exists());
    }
}
