//! Whether a directory gained or lost an entry since a moment, without listing it: its change
//! time (ctime), which every entry added, removed or renamed sets and no one can set back. The
//! scrub and the removal of an execution's leftovers use it so that their cost follows what the
//! scripts wrote, not what the directory held (a listing of thousands of entries per execution).

use std::ffi::CStr;

/// A directory's change time as it was, and when that was read (`at`). Trusted only when the
/// change time is older than the reading by [`MARGIN_NS`]: the kernel stamps changes with a
/// coarse clock, so a change just after the reading could carry the same stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtimeMark {
    ctime: (i64, i64),
    at: (i64, i64),
}

/// Far more than the kernel's coarse clock's tick (1 to 10 ms).
const MARGIN_NS: i64 = 50_000_000;

impl CtimeMark {
    /// The change time of the open directory `fd`, read now.
    pub fn of_fd(fd: i32) -> Option<Self> {
        // SAFETY: fstat fills a struct zeroed here.
        Self::read(|stat| unsafe { libc::fstat(fd, stat) })
    }

    /// The change time of the directory at `path`, read now.
    pub fn of_path(path: &CStr) -> Option<Self> {
        // SAFETY: stat of a NUL-terminated path; fills a struct zeroed here.
        Self::read(|stat| unsafe { libc::stat(path.as_ptr(), stat) })
    }

    fn read(stat_into: impl FnOnce(&mut libc::stat) -> i32) -> Option<Self> {
        // SAFETY: clock_gettime fills a struct zeroed here; `stat` is plain data.
        let (mut stat, mut clock): (libc::stat, libc::timespec) =
            unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
        // SAFETY: as above.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut clock) } != 0
            || stat_into(&mut stat) != 0
        {
            return None;
        }
        Some(Self {
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
            at: (clock.tv_sec, clock.tv_nsec),
        })
    }

    /// Whether a change after the reading is sure to carry another stamp.
    pub fn is_trusted(&self) -> bool {
        let nanos =
            |(seconds, nanos): (i64, i64)| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        nanos(self.at) - nanos(self.ctime) > i128::from(MARGIN_NS)
    }

    /// Whether `now`, a later reading of the same directory, shows no change since this one,
    /// by a mark that can be trusted.
    pub fn unchanged_at(&self, now: Option<Self>) -> bool {
        self.is_trusted() && now.is_some_and(|now| now.ctime == self.ctime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn an_added_entry_shows_and_a_fresh_change_is_not_trusted() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = CString::new(root.path().as_os_str().as_bytes()).expect("path");
        let fresh = CtimeMark::of_path(&path).expect("a mark");
        assert!(!fresh.is_trusted(), "just created: within the margin");
        assert!(!fresh.unchanged_at(CtimeMark::of_path(&path)));
        std::thread::sleep(std::time::Duration::from_millis(60));
        let settled = CtimeMark::of_path(&path).expect("a mark");
        assert!(settled.unchanged_at(CtimeMark::of_path(&path)));
        std::fs::write(root.path().join("new"), "x").expect("write");
        assert!(!settled.unchanged_at(CtimeMark::of_path(&path)));
    }
}
