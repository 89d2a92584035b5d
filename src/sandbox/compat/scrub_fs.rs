//! The file-system half of the scrub: reading a directory through its fd (`getdents64`, so an
//! entry costs no `stat` and no path) and removing what a script left, one system call per
//! entry where possible, whatever the script did to the tree.
//!
//! Only `*at` calls relative to open directories, never joined paths (names may hold any byte);
//! symlinks are never followed, FIFOs and devices never opened; a directory is emptied of its
//! files in place and its subdirectories are moved up to the top level, so depth costs no fds.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// One directory entry as `getdents64` gives it.
#[derive(Debug)]
pub struct Entry {
    pub name: CString,
    pub inode: u64,
    /// `DT_DIR`, `DT_REG`... or `DT_UNKNOWN` where the file system does not say.
    pub kind: u8,
}

impl Entry {
    pub fn may_be_directory(&self) -> bool {
        self.kind == libc::DT_DIR || self.kind == libc::DT_UNKNOWN
    }
}

/// The size of one `getdents64` read: a few hundred entries.
const DIRENT_BUFFER: usize = 32 * 1024;

/// Reads the entries of an open directory from its start, a buffer at a time, handing each
/// (but `.` and `..`) to `visit` until it answers `false`. Returns whether it read to the end.
pub fn for_each_entry(directory: RawFd, mut visit: impl FnMut(Entry) -> bool) -> bool {
    // SAFETY: lseek on an fd the caller holds; a directory's offset 0 is its first entry.
    if unsafe { libc::lseek(directory, 0, libc::SEEK_SET) } < 0 {
        return true;
    }
    let mut buffer = vec![0u8; DIRENT_BUFFER];
    loop {
        // SAFETY: getdents64 writes at most `buffer.len()` bytes into the buffer.
        let read = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                directory,
                buffer.as_mut_ptr(),
                buffer.len(),
            )
        };
        if read <= 0 {
            return true;
        }
        let mut offset = 0;
        while offset < read as usize {
            let Some((entry, length)) = parse_dirent(&buffer[offset..read as usize]) else {
                return true;
            };
            offset += length;
            if let Some(entry) = entry {
                if !visit(entry) {
                    return false;
                }
            }
        }
    }
}

/// One `linux_dirent64` record: the entry (none for `.` and `..`) and the record's length.
fn parse_dirent(bytes: &[u8]) -> Option<(Option<Entry>, usize)> {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    let inode = u64::from_ne_bytes(bytes.get(0..8)?.try_into().ok()?);
    let length = usize::from(u16::from_ne_bytes(bytes.get(16..18)?.try_into().ok()?));
    let kind = *bytes.get(18)?;
    let name = CStr::from_bytes_until_nul(bytes.get(19..length)?).ok()?;
    if length == 0 {
        return None;
    }
    let entry = (name != c"." && name != c"..").then(|| Entry {
        name: name.to_owned(),
        inode,
        kind,
    });
    Some((entry, length))
}

/// Removes `name` from `parent` if it is anything but a directory (or an empty directory).
pub fn remove_entry(parent: RawFd, name: &CStr) -> bool {
    // SAFETY: *at calls relative to an open directory, with a NUL-terminated name.
    unsafe {
        libc::unlinkat(parent, name.as_ptr(), 0) == 0
            || libc::unlinkat(parent, name.as_ptr(), libc::AT_REMOVEDIR) == 0
    }
}

/// What emptying one directory did, for the scrub's budget.
#[derive(Debug, Default)]
pub struct Emptied {
    /// Entries removed or moved up.
    pub handled: usize,
    /// Whether the directory could be read to its end (within `allowed` entries).
    pub complete: bool,
}

/// Empties directory `name` in `parent`: its files are removed in place, its subdirectories
/// moved up into `top` under names from `fresh_name` (a later pass empties them). At most
/// `allowed` entries are handled, so a huge directory cannot overrun the scrub's budget.
pub fn empty_directory(
    parent: RawFd,
    name: &CStr,
    top: RawFd,
    allowed: usize,
    fresh_name: &mut dyn FnMut() -> CString,
) -> Emptied {
    make_directory_ours(parent, name);
    let Some(directory) = open_directory(parent, name) else {
        return Emptied::default();
    };
    let fd = directory.as_raw_fd();
    let mut emptied = Emptied::default();
    let mut subdirectories = Vec::new();
    emptied.complete = for_each_entry(fd, |entry| {
        if emptied.handled >= allowed {
            return false;
        }
        emptied.handled += 1;
        // SAFETY: unlinkat relative to the open directory, NUL-terminated name.
        let removed = unsafe { libc::unlinkat(fd, entry.name.as_ptr(), 0) } == 0;
        if !removed && entry.may_be_directory() {
            subdirectories.push(entry.name);
        }
        true
    });
    for child in subdirectories {
        // Moving a directory rewrites its "..": it must be writable too.
        make_directory_ours(fd, &child);
        let new_name = fresh_name();
        // SAFETY: renameat between two open directories, NUL-terminated names.
        unsafe { libc::renameat(fd, child.as_ptr(), top, new_name.as_ptr()) };
    }
    emptied
}

/// `chmod 0700` on a directory (its owner may always do that), never on anything else: chmod
/// follows symlinks, and a symlink's target is not the script's to change.
pub fn make_directory_ours(parent: RawFd, name: &CStr) {
    // SAFETY: fstatat and fchmodat relative to an open directory; `stat` is written by fstatat.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let found = libc::fstatat(parent, name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW);
        if found == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFDIR {
            libc::fchmodat(parent, name.as_ptr(), 0o700, 0);
        }
    }
}

pub fn open_directory(parent: RawFd, name: &CStr) -> Option<OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: openat relative to an open directory (or the cwd), NUL-terminated name.
    let fd = unsafe { libc::openat(parent, name.as_ptr(), flags) };
    // SAFETY: a new fd owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn entries_are_read_with_their_names_and_kinds() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("file"), "x").expect("write");
        std::fs::create_dir(root.path().join("dir")).expect("mkdir");
        let path = CString::new(root.path().as_os_str().as_bytes()).expect("path");
        let directory = open_directory(libc::AT_FDCWD, &path).expect("open");
        let mut seen = Vec::new();
        assert!(for_each_entry(directory.as_raw_fd(), |entry| {
            seen.push((entry.name.into_string().expect("utf-8"), entry.kind));
            true
        }));
        seen.sort();
        assert_eq!(
            seen,
            [("dir".into(), libc::DT_DIR), ("file".into(), libc::DT_REG)]
        );
    }
}
