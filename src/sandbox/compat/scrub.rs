//! Where compat cannot give each execution a private place to write (no mount namespace, no
//! Landlock, the script under the service's own uid: AWS Lambda), nothing may outlive an
//! execution there either. The service takes one turn per execution on the places the uid can
//! write (`/tmp` on Lambda, and `/var/tmp`, `/dev/shm` wherever they are writable), and after
//! each execution, once every process of the sandbox is gone, empties them of everything that
//! was not there when the service started. The next execution starts only then.
//!
//! Emptying must survive whatever a script did to the tree: `chmod 0` and read-only
//! directories (the owner may always chmod them back), names with any bytes (only `*at` calls
//! relative to open directories, never joined paths), symlinks (never followed), FIFOs and
//! devices (unlinked, never opened), and trees deeper than any fd budget (each directory's
//! entries are moved up to the top level before it is removed, so depth costs no fds).

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OwnedMutexGuard};

/// The places a script's uid can write that outlive it, where they exist and are writable.
const CANDIDATES: [&str; 4] = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"];
/// A bound on one scrub, so a pathological tree cannot stall the service forever.
const SCRUB_BUDGET: Duration = Duration::from_secs(30);

/// The shared places and the turn every execution takes on them.
#[derive(Debug)]
pub struct SharedAreas {
    areas: Vec<Area>,
    turn: Arc<Mutex<()>>,
    /// Names for entries moved up while flattening a tree.
    moved: AtomicU64,
}

#[derive(Debug)]
struct Area {
    path: PathBuf,
    /// Name, device and inode of what was there at start: not the scripts', so never removed.
    /// (The name too: a script may delete such an entry and get its inode number reused.)
    found_at_start: HashSet<(CString, (u64, u64))>,
}

/// One execution's turn: held from hand-over until its leftovers are gone.
#[derive(Debug)]
pub struct Turn {
    areas: Arc<SharedAreas>,
    _turn: OwnedMutexGuard<()>,
}

impl SharedAreas {
    /// Records what the writable places hold now, before any script ran.
    pub fn discover() -> Self {
        let mut paths: Vec<PathBuf> = CANDIDATES.iter().map(PathBuf::from).collect();
        paths.push(std::env::temp_dir());
        let mut areas: Vec<Area> = Vec::new();
        for path in paths {
            let Ok(path) = path.canonicalize() else {
                continue;
            };
            if areas.iter().any(|area| area.path == path) || !writable(&path) {
                continue;
            }
            let found_at_start = entries(&path).into_iter().map(Entry::key).collect();
            areas.push(Area {
                path,
                found_at_start,
            });
        }
        Self {
            areas,
            turn: Arc::new(Mutex::new(())),
            moved: AtomicU64::new(0),
        }
    }

    pub fn paths(&self) -> Vec<&Path> {
        self.areas.iter().map(|area| area.path.as_path()).collect()
    }

    /// Waits for the previous execution's scrub, then holds the places for this one, emptied
    /// once more: whatever appeared since (written by anything but an execution, which would
    /// have held a turn) never reaches this one either. Nothing there costs one listing.
    pub async fn take_turn(self: &Arc<Self>) -> Turn {
        let guard = Arc::clone(&self.turn).lock_owned().await;
        self.scrub();
        Turn {
            areas: Arc::clone(self),
            _turn: guard,
        }
    }

    /// Removes everything that was not there at start. Returns how many entries were removed.
    pub fn scrub(&self) -> usize {
        let deadline = Instant::now() + SCRUB_BUDGET;
        let mut removed = 0;
        for area in &self.areas {
            removed += self.scrub_area(area, deadline);
        }
        removed
    }

    fn scrub_area(&self, area: &Area, deadline: Instant) -> usize {
        let Some(top) = open_directory(libc::AT_FDCWD, &path_cstring(&area.path)) else {
            return 0;
        };
        let mut removed = 0;
        // Each pass removes files and empties directories one level down into the top level;
        // it ends when a pass finds nothing new to remove.
        loop {
            let leftovers: Vec<Entry> = entries(&area.path)
                .into_iter()
                .filter(|entry| {
                    !area
                        .found_at_start
                        .contains(&(entry.name.clone(), entry.id))
                })
                .collect();
            if leftovers.is_empty() || Instant::now() > deadline {
                break;
            }
            let mut progress = false;
            for entry in leftovers {
                progress |= self.remove_or_flatten(&top, &entry.name);
                removed += 1;
            }
            if !progress {
                tracing::warn!(area = %area.path.display(), "entries left that cannot be removed");
                break;
            }
        }
        removed
    }

    /// Removes one top-level entry; a directory first has its entries moved up beside it.
    fn remove_or_flatten(&self, top: &OwnedFd, name: &CStr) -> bool {
        let parent = top.as_raw_fd();
        // SAFETY: *at calls relative to an open directory, with a NUL-terminated name.
        unsafe {
            if libc::unlinkat(parent, name.as_ptr(), 0) == 0 {
                return true;
            }
            // A directory (or an entry we may not remove). Make it ours to read and change.
            make_directory_ours(parent, name);
            if libc::unlinkat(parent, name.as_ptr(), libc::AT_REMOVEDIR) == 0 {
                return true;
            }
        }
        let Some(directory) = open_directory(parent, name) else {
            return false;
        };
        let mut moved_any = false;
        for child in entries_of_fd(&directory) {
            // Moving a directory rewrites its "..": it must be writable too.
            make_directory_ours(directory.as_raw_fd(), &child.name);
            let new_name = self.fresh_name();
            // SAFETY: renameat between two open directories, NUL-terminated names.
            moved_any |= unsafe {
                libc::renameat(
                    directory.as_raw_fd(),
                    child.name.as_ptr(),
                    parent,
                    new_name.as_ptr(),
                )
            } == 0;
        }
        drop(directory);
        // SAFETY: as above.
        let removed = unsafe { libc::unlinkat(parent, name.as_ptr(), libc::AT_REMOVEDIR) } == 0;
        moved_any || removed
    }

    fn fresh_name(&self) -> CString {
        let id = self.moved.fetch_add(1, Ordering::Relaxed);
        CString::new(format!(
            ".python-executor-scrub-{}-{id}",
            std::process::id()
        ))
        .unwrap_or_default()
    }
}

impl Drop for Turn {
    /// After the execution, empty the shared places; the next turn starts when this one is
    /// dropped. Teardown drops it only once none of the execution's processes is left
    /// (`process::teardown`), so nothing can write there any more.
    fn drop(&mut self) {
        let removed = self.areas.scrub();
        tracing::debug!(removed, "shared places emptied after the execution");
    }
}

/// A directory entry: its name and identity.
#[derive(Debug)]
struct Entry {
    name: CString,
    id: (u64, u64),
}

impl Entry {
    fn key(self) -> (CString, (u64, u64)) {
        (self.name, self.id)
    }
}

fn entries(path: &Path) -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    read.filter_map(Result::ok)
        .filter_map(|entry| {
            let metadata = entry.path().symlink_metadata().ok()?;
            Some(Entry {
                name: CString::new(entry.file_name().as_bytes()).ok()?,
                id: (metadata.dev(), metadata.ino()),
            })
        })
        .collect()
}

/// The entries of an open directory, read through its fd.
fn entries_of_fd(directory: &OwnedFd) -> Vec<Entry> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", directory.as_raw_fd()));
    entries(&path)
}

/// `chmod 0700` on a directory (its owner may always do that), never on anything else: chmod
/// follows symlinks, and a symlink's target is not the script's to change.
fn make_directory_ours(parent: RawFd, name: &CStr) {
    // SAFETY: fstatat and fchmodat relative to an open directory; `stat` is written by fstatat.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let found = libc::fstatat(parent, name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW);
        if found == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
            libc::fchmodat(parent, name.as_ptr(), 0o700, 0);
        }
    }
}

fn open_directory(parent: RawFd, name: &CStr) -> Option<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat relative to an open directory (or the cwd), NUL-terminated name.
    let fd = unsafe { libc::openat(parent, name.as_ptr(), flags) };
    // SAFETY: a new fd owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn path_cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

fn writable(path: &Path) -> bool {
    let path = path_cstring(path);
    // SAFETY: access(2) on a NUL-terminated path. It also answers EROFS on a read-only mount.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn areas_at(path: &Path) -> SharedAreas {
        SharedAreas {
            areas: vec![Area {
                path: path.to_path_buf(),
                found_at_start: entries(path).into_iter().map(Entry::key).collect(),
            }],
            turn: Arc::new(Mutex::new(())),
            moved: AtomicU64::new(0),
        }
    }

    #[test]
    fn hostile_trees_are_removed_and_what_was_there_stays() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path();
        std::fs::write(path.join("before"), "kept").expect("write");
        let areas = areas_at(path);
        // A deep chain, a locked directory, a read-only one, odd names, a FIFO, a symlink out.
        let mut deep = path.join("deep");
        for _ in 0..300 {
            deep = deep.join("d");
        }
        std::fs::create_dir_all(&deep).expect("deep");
        let locked = path.join("locked");
        std::fs::create_dir_all(locked.join("inner")).expect("locked");
        std::fs::write(locked.join("inner/file"), "x").expect("write");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let odd = path.join("new\nline \u{1b}[31m");
        std::fs::create_dir(&odd).expect("odd");
        std::fs::write(odd.join("f"), "x").expect("write");
        let fifo = CString::new(path.join("fifo").as_os_str().as_bytes()).expect("path");
        // SAFETY: mkfifo on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink("/etc", path.join("link")).expect("symlink");
        areas.scrub();
        let left: Vec<String> = std::fs::read_dir(path)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, ["before"]);
        assert!(Path::new("/etc/passwd").exists(), "a symlink was followed");
    }
}
