//! Where compat's executions get their working directories: one directory per service
//! process, in memory where each execution has a memory cgroup, else under the system's
//! temporary directory ([`parent`]), never in `/tmp` itself. Creating and removing
//! a scratch directory there leaves `/tmp`'s change time alone, which is how an execution is
//! known to have left nothing in `/tmp` (see [`super::leftovers`]); and what a killed service
//! left is one directory, which the next start removes. A directory's owner holds a lock on it
//! (`flock`) for its life, so a start removes only those whose owner is gone, whatever PID
//! namespace either runs in.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const PREFIX: &str = "python-executor-run-";

/// The memory-backed filesystem most Linux hosts mount (not Lambda's).
const SHARED_MEMORY: &str = "/dev/shm";

/// Where the directory goes: in memory (`/dev/shm`) when each execution has a memory cgroup
/// and `/dev/shm` has the kernel's default size, else the system's temporary directory. A
/// scratch directory lives for one execution, and on a disk each costs journalled inode
/// creation and removal (and a discard, on hosts that mount with it): a tenth of the service's
/// own CPU per request here. In memory, what a script writes there is charged to its cgroup,
/// so its memory limit caps its files too (on a disk only RLIMIT_FSIZE caps each file).
/// Without a memory cgroup nothing would cap them; and a small `/dev/shm` (a container's
/// default is 64 MiB) is one that an execution could fill for the others running beside it
/// before its memory limit stops it. Then the disk it stays.
pub fn parent(memory_cgroups: bool) -> PathBuf {
    let in_memory = Path::new(SHARED_MEMORY);
    if memory_cgroups && is_large_writable_tmpfs(in_memory) {
        in_memory.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A tmpfs this process may write, sized as the kernel sizes one by default (half the memory)
/// or larger.
fn is_large_writable_tmpfs(path: &Path) -> bool {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs(2) into a zeroed local struct, on a NUL-terminated path.
    let mut found: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c_path.as_ptr(), &mut found) } != 0 {
        return false;
    }
    // SAFETY: sysconf with constants.
    let memory = unsafe {
        (libc::sysconf(libc::_SC_PHYS_PAGES).max(0) as u64)
            .saturating_mul(libc::sysconf(libc::_SC_PAGESIZE).max(0) as u64)
    };
    let place = Place {
        tmpfs: found.f_type == libc::TMPFS_MAGIC,
        size: (found.f_blocks as u64).saturating_mul(found.f_bsize as u64),
        // SAFETY: access(2) on a NUL-terminated path.
        writable: unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) } == 0,
    };
    place.suits_scratch(memory)
}

/// What `statfs` and `access` tell of a candidate place for scratch directories.
#[derive(Clone, Copy, Debug)]
struct Place {
    tmpfs: bool,
    /// Bytes.
    size: u64,
    writable: bool,
}

impl Place {
    /// Whether scratch directories may go there, on a host with `memory` bytes.
    fn suits_scratch(self, memory: u64) -> bool {
        self.tmpfs && self.writable && self.size >= memory / 2
    }
}

/// A service process's directory of scratch directories, removed when dropped.
#[derive(Debug)]
pub struct ScratchRoot {
    path: PathBuf,
    /// The directory, open and locked: it is in use while this is held.
    _lock: fs::File,
}

/// Several sandboxes may live in one process (tests): each has a directory of its own.
static CREATED: AtomicU64 = AtomicU64::new(0);

impl ScratchRoot {
    /// Creates this process's directory in `parent`, after removing those no process holds
    /// any more. Executions' uids may only pass through it (mode 0711).
    pub fn create(parent: &Path) -> io::Result<Self> {
        remove_unheld(parent);
        let name = format!(
            "{}-{}",
            std::process::id(),
            CREATED.fetch_add(1, Ordering::Relaxed)
        );
        // Made and locked under a name no sweep looks at, then renamed: another service
        // starting meanwhile never finds it unlocked.
        let making = parent.join(format!(".{PREFIX}{name}"));
        // One of this name is a gone process's, killed between its making and its rename.
        let _ = fs::remove_dir_all(&making);
        fs::DirBuilder::new().mode(0o711).create(&making)?;
        // The umask may have taken bits away.
        fs::set_permissions(&making, fs::Permissions::from_mode(0o711))?;
        let held = lock(&making).ok_or_else(|| io::Error::other("could not lock it"))?;
        let path = parent.join(format!("{PREFIX}{name}"));
        // Never over another's directory of that name (a process of this pid in another PID
        // namespace): the rename fails instead.
        rename_no_replace(&making, &path).inspect_err(|_| {
            let _ = fs::remove_dir(&making);
        })?;
        Ok(Self { path, _lock: held })
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

/// Removes the directories of service processes that ended without removing theirs (killed):
/// those whose lock nobody holds.
fn remove_unheld(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(PREFIX));
        let is_directory = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if ours && is_directory && lock(&entry.path()).is_some() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |path: &Path| {
        CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::other("a NUL in a path"))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: renameat2(2) on two NUL-terminated paths.
    let renamed = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if renamed == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The directory at `path`, open and locked exclusively; None while another holds it.
fn lock(path: &Path) -> Option<fs::File> {
    let directory = fs::File::open(path).ok()?;
    // SAFETY: flock(2) on an open fd; the lock goes with the fd.
    let locked = unsafe { libc::flock(directory.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    (locked == 0).then_some(directory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_memory_cgroup_the_scratch_stays_on_the_disk() {
        assert_eq!(parent(false), std::env::temp_dir());
        let chosen = parent(true);
        assert!(chosen == Path::new(SHARED_MEMORY) || chosen == std::env::temp_dir());
    }

    #[test]
    fn only_a_writable_tmpfs_of_half_the_memory_or_more_takes_scratch() {
        const GIB: u64 = 1 << 30;
        let memory = 24 * GIB;
        let default_size = Place {
            tmpfs: true,
            size: 12 * GIB,
            writable: true,
        };
        assert!(default_size.suits_scratch(memory));
        // A container's /dev/shm: one execution could fill it for its neighbours.
        let container = Place {
            size: 64 << 20,
            ..default_size
        };
        assert!(!container.suits_scratch(memory));
        let on_disk = Place {
            tmpfs: false,
            ..default_size
        };
        assert!(!on_disk.suits_scratch(memory));
        let read_only = Place {
            writable: false,
            ..default_size
        };
        assert!(!read_only.suits_scratch(memory));
    }

    #[test]
    fn a_gone_processs_directory_goes_and_a_held_one_stays_until_dropped() {
        let parent = tempfile::tempdir().expect("tempdir");
        // What a killed service left: nobody holds its lock.
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
        assert!(path.exists(), "a held directory stays");
        assert_ne!(again.path(), path);
        drop(root);
        assert!(!path.exists());
    }
}
