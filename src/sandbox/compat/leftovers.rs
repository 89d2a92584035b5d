//! Under compat as root each execution has a uid of its own, and may write the literal `/tmp`
//! as under nsjail: its files there are its uid's (private by the harness's umask 077 and
//! `/tmp`'s sticky bit), and before its answer, once none of its processes is left, every
//! entry of `/tmp` its uid owns is removed, so nothing of it is there for whoever gets the uid
//! next. Whoever wrote them pays for their removal, within the execution's CPU limit, as on
//! Lambda (see [`super::scrub`]). An execution that added nothing to `/tmp` (its change time
//! unmoved since hand-over, [`CtimeMark`]) has nothing there to remove: its answer waits for
//! neither its processes' exit nor a listing of `/tmp`, and its teardown looks again once they
//! are gone.

use std::ffi::{CStr, CString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::ctime_mark::CtimeMark;
use super::scrub_fs;

/// Names for directories moved up while their contents are removed.
static MOVED: AtomicU64 = AtomicU64::new(0);

/// The entries of a shared directory that one execution's uid owns.
#[derive(Debug)]
pub struct OwnLeftovers {
    pub dir: PathBuf,
    pub uid: u32,
    /// The directory's change time when the job was handed over (see [`Self::mark_hand_over`]).
    pub at_hand_over: Option<CtimeMark>,
}

impl OwnLeftovers {
    /// Notes the directory's change time before the script can run: the uid owns nothing there
    /// yet (the last execution under it left nothing, or it was not handed on).
    pub fn mark_hand_over(&mut self) {
        self.at_hand_over = self.dir_path().as_deref().and_then(CtimeMark::of_path);
    }

    /// Whether nothing was added to or removed from the directory since hand-over, by
    /// anyone: then the uid still owns nothing there. Once none of the execution's processes
    /// is left, that is final.
    pub fn untouched(&self) -> bool {
        let now = self.dir_path().as_deref().and_then(CtimeMark::of_path);
        self.at_hand_over.is_some_and(|mark| mark.unchanged_at(now))
    }

    fn dir_path(&self) -> Option<CString> {
        CString::new(self.dir.as_os_str().as_bytes()).ok()
    }

    /// Removes every entry of the directory the uid owns, within `budget`; whether it is done.
    pub fn remove(&self, budget: Duration) -> bool {
        let Some(path) = self.dir_path() else {
            return true;
        };
        let Some(top) = scrub_fs::open_directory(libc::AT_FDCWD, &path) else {
            return true;
        };
        let top = top.as_raw_fd();
        let deadline = Instant::now() + budget;
        loop {
            let mut owned = Vec::new();
            scrub_fs::for_each_entry(top, |entry| {
                if owner_of(top, &entry.name) == Some(self.uid) {
                    owned.push(entry);
                }
                true
            });
            if owned.is_empty() {
                return true;
            }
            let mut progress = false;
            for entry in owned {
                if Instant::now() > deadline {
                    return false;
                }
                progress |= self.remove_one(top, &entry);
            }
            if !progress {
                tracing::warn!(
                    uid = self.uid,
                    "entries an execution left in /tmp cannot be removed"
                );
                return true;
            }
        }
    }

    fn remove_one(&self, top: i32, entry: &scrub_fs::Entry) -> bool {
        if scrub_fs::remove_entry(top, &entry.name) {
            return true;
        }
        let mut fresh_name = || {
            let id = MOVED.fetch_add(1, Ordering::Relaxed);
            let name = format!(".python-executor-leftover-{}-{id}", std::process::id());
            CString::new(name).unwrap_or_default()
        };
        let emptied = scrub_fs::empty_directory(top, &entry.name, top, usize::MAX, &mut fresh_name);
        emptied.handled > 0 || scrub_fs::remove_entry(top, &entry.name)
    }
}

/// The owner of `name` in directory `parent`, never following a symlink.
fn owner_of(parent: i32, name: &CStr) -> Option<u32> {
    // SAFETY: fstatat relative to an open directory; `stat` is written by fstatat.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let found = libc::fstatat(parent, name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW);
        (found == 0).then_some(stat.st_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_uids_own_entries_go() {
        let root = tempfile::tempdir().expect("tempdir");
        // SAFETY: getuid cannot fail.
        let me = unsafe { libc::getuid() };
        std::fs::create_dir_all(root.path().join("mine/deep/er")).expect("mkdir");
        std::fs::write(root.path().join("mine/deep/er/file"), "x").expect("write");
        std::fs::write(root.path().join("also-mine"), "x").expect("write");
        let leftovers = OwnLeftovers {
            dir: root.path().to_path_buf(),
            uid: me,
            at_hand_over: None,
        };
        assert!(leftovers.remove(Duration::from_secs(10)));
        assert_eq!(std::fs::read_dir(root.path()).expect("read").count(), 0);
        let someone_elses = OwnLeftovers {
            dir: root.path().to_path_buf(),
            uid: me + 1,
            at_hand_over: None,
        };
        std::fs::write(root.path().join("kept"), "x").expect("write");
        assert!(someone_elses.remove(Duration::from_secs(10)));
        assert!(root.path().join("kept").exists());
    }
}
