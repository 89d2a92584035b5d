//! AWS Lambda's conditions on this machine, for the test profile that runs the whole suite as
//! Lambda would run the service: an unprivileged uid that owns nothing, a read-only filesystem
//! but for a fresh `/tmp`, no cgroup it may create, and a kernel that refuses user namespaces and
//! has no Landlock.
//!
//! Lambda's kernel cannot be booted here, so a seccomp filter stands in for it: `unshare` and
//! `clone` with `CLONE_NEWUSER` answer `EPERM` (as where user namespaces are disabled), and the
//! `landlock_*` calls answer `ENOSYS` (as on a kernel built without Landlock). The read-only
//! filesystem comes from a private mount namespace entered as root, before the uid is dropped.
//!
//! [`Conditions::prepare_in`] enters the same conditions inside a root directory instead (an
//! image's filesystem, as Lambda runs a container image): the root is bound onto itself,
//! made read-only and chrooted into, with the host's /proc and /dev bound in as a container
//! runtime provides them.
//!
//! [`enter`] runs between fork and exec (`Command::pre_exec`); everything it needs is prepared
//! before the fork by [`Conditions::prepare`], as only async-signal-safe calls may run there.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Lambda runs functions as `sbx_user1051`. Each test gets an unprivileged uid of its own in
/// this range (nothing on this machine belongs to one), so tests running side by side, which on
/// Lambda would be separate machines, do not share RLIMIT_NPROC's per-uid count.
const LAMBDA_UIDS: std::ops::Range<u32> = 20_000..30_000;
/// Set in the environment of a process that runs under these conditions.
pub const PROFILE_VARIABLE: &str = "PYEXEC_TEST_PROFILE";
pub const PROFILE_LAMBDA: &str = "lambda";

/// Lambda's /tmp: the only writable place, 512 MiB by default.
const TMP_OPTIONS: &[u8] = b"size=512m,mode=1777\0";

/// Everything [`enter`] needs, built before the fork.
#[derive(Debug)]
pub struct Conditions {
    /// Every mount point but /proc's, to be made read-only.
    mounts: Vec<CString>,
    /// What must stay visible below /tmp once a fresh /tmp hides the host's: the checkout and
    /// the test binaries, when they live there (a CI clone under /tmp, say). Each with the
    /// directories to create on the way, outermost first.
    kept_in_tmp: Vec<KeptInTmp>,
    /// The root directory to enter, if any, with what is bound into it.
    chroot: Option<Chroot>,
    filters: Vec<BpfProgram>,
    uid: u32,
}

/// A host directory below /tmp, moved back into the fresh /tmp (read-only) at the same path.
#[derive(Debug)]
struct KeptInTmp {
    path: CString,
    /// Every directory from /tmp's child down to `path`, to create in the fresh /tmp.
    on_the_way: Vec<CString>,
}

/// A root directory and the host paths bound into it, as C strings ready for the child.
#[derive(Debug)]
struct Chroot {
    root: CString,
    /// (host path, path below the root), bound read-write (/proc, /dev).
    writable: Vec<(CString, CString)>,
    /// (host path, path below the root), bound read-only (tools the test brings in).
    read_only: Vec<(CString, CString)>,
}

/// Whether this process already runs under Lambda's conditions (a re-executed test).
pub fn active() -> bool {
    std::env::var(PROFILE_VARIABLE).is_ok_and(|value| value == PROFILE_LAMBDA)
}

impl Conditions {
    pub fn prepare(uid: u32) -> Self {
        Self {
            mounts: mount_points(),
            kept_in_tmp: kept_in_tmp(),
            chroot: None,
            filters: lambda_kernel_filters(),
            uid,
        }
    }

    /// The same conditions inside `root`: the host's /proc and /dev are bound in, and each
    /// `(host directory, absolute path inside the root)` of `read_only` too, over a directory
    /// the root already has.
    pub fn prepare_in(root: &Path, read_only: &[(&Path, &str)], uid: u32) -> Self {
        let c = |path: &Path| CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
        let inside = |path: &str| c(&root.join(path.trim_start_matches('/')));
        let chroot = Chroot {
            root: c(root),
            writable: ["/proc", "/dev"]
                .map(|path| (c(Path::new(path)), inside(path)))
                .into(),
            read_only: read_only
                .iter()
                .map(|(host, path)| (c(host), inside(path)))
                .collect(),
        };
        Self {
            mounts: Vec::new(),
            kept_in_tmp: Vec::new(),
            chroot: Some(chroot),
            filters: lambda_kernel_filters(),
            uid,
        }
    }

    /// Enters the conditions; call in the child between fork and exec, as root.
    ///
    /// # Safety
    /// Only async-signal-safe system calls on data prepared before the fork.
    pub unsafe fn enter(&self) -> std::io::Result<()> {
        // SAFETY: system calls on NUL-terminated strings prepared before the fork.
        unsafe {
            check(libc::unshare(libc::CLONE_NEWNS))?;
            let root = c"/";
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            match &self.chroot {
                Some(chroot) => enter_root(chroot)?,
                None => self.remount_read_only()?,
            }
            // What must stay visible under /tmp, taken as detached mounts before /tmp is hidden.
            let mut detached = [-1; MAX_KEPT];
            for (kept, fd) in self.kept_in_tmp.iter().zip(detached.iter_mut()) {
                *fd = check_fd(libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    kept.path.as_ptr(),
                    OPEN_TREE_CLONE | libc::AT_RECURSIVE as libc::c_uint,
                ))?;
            }
            check(libc::mount(
                c"tmpfs".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                TMP_OPTIONS.as_ptr().cast(),
            ))?;
            for (kept, fd) in self.kept_in_tmp.iter().zip(detached) {
                put_back(kept, fd)?;
            }
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(self.uid, self.uid, self.uid))?;
            check(libc::setresuid(self.uid, self.uid, self.uid))?;
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        }
        for filter in &self.filters {
            seccompiler::apply_filter(filter).map_err(|_| std::io::Error::last_os_error())?;
        }
        Ok(())
    }
}

/// At most this many directories are kept visible below /tmp (the checkout, the binaries).
const MAX_KEPT: usize = 4;
/// open_tree(2)'s flag for a detached copy of the tree (not in every libc).
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// move_mount(2)'s flag: the source is the fd itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// Moves a detached tree back to its path in the fresh /tmp, creating the directories on the
/// way (root's, and only traversable: the test's uid needs nothing more).
///
/// # Safety
/// Only system calls on data prepared before the fork.
unsafe fn put_back(kept: &KeptInTmp, detached: libc::c_int) -> std::io::Result<()> {
    // SAFETY: NUL-terminated strings prepared before the fork, and an fd opened just now.
    unsafe {
        for directory in &kept.on_the_way {
            libc::mkdir(directory.as_ptr(), 0o755);
        }
        check(libc::syscall(
            libc::SYS_move_mount,
            detached,
            c"".as_ptr(),
            libc::AT_FDCWD,
            kept.path.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) as libc::c_int)?;
        libc::close(detached);
    }
    Ok(())
}

/// The checkout and the test binaries' directory, where they live below /tmp.
fn kept_in_tmp() -> Vec<KeptInTmp> {
    let tmp = Path::new("/tmp");
    let mut candidates = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR"))];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        candidates.push(dir);
    }
    let mut kept: Vec<PathBuf> = Vec::new();
    for candidate in candidates {
        let Ok(candidate) = candidate.canonicalize() else {
            continue;
        };
        if candidate.starts_with(tmp) && !kept.iter().any(|k| candidate.starts_with(k)) {
            kept.push(candidate);
        }
    }
    assert!(
        kept.len() <= MAX_KEPT,
        "too many directories to keep: {kept:?}"
    );
    let c = |path: &Path| CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path");
    kept.iter()
        .map(|path| {
            let mut on_the_way: Vec<CString> = path
                .ancestors()
                .take_while(|ancestor| *ancestor != tmp)
                .map(c)
                .collect();
            on_the_way.reverse();
            KeptInTmp {
                path: c(path),
                on_the_way,
            }
        })
        .collect()
}

fn check_fd(result: libc::c_long) -> std::io::Result<libc::c_int> {
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(result as libc::c_int)
}

impl Conditions {
    /// Every mount point read-only, the root first (which must succeed).
    ///
    /// # Safety
    /// As [`Conditions::enter`].
    unsafe fn remount_read_only(&self) -> std::io::Result<()> {
        for mount in &self.mounts {
            let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
            // SAFETY: a NUL-terminated string prepared before the fork.
            let done = unsafe {
                libc::mount(
                    std::ptr::null(),
                    mount.as_ptr(),
                    std::ptr::null(),
                    flags,
                    std::ptr::null(),
                )
            };
            // The root must be read-only; a mount that cannot be remounted (a masked or
            // locked one) is left as it is, and is root's anyway.
            if done != 0 && mount.as_bytes() == b"/" {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Binds the root onto itself (so it is a mount of its own that can be made read-only), binds
/// /proc, /dev and the read-only extras in, makes the root and the extras read-only, and
/// chroots into it.
///
/// # Safety
/// Only async-signal-safe system calls on data prepared before the fork.
unsafe fn enter_root(chroot: &Chroot) -> std::io::Result<()> {
    let bind = |from: &CString, to: &CString| {
        // SAFETY: NUL-terminated strings prepared before the fork.
        check(unsafe {
            libc::mount(
                from.as_ptr(),
                to.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        })
    };
    let read_only = |at: &CString| {
        let flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY;
        // SAFETY: as above.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                at.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        })
    };
    bind(&chroot.root, &chroot.root)?;
    read_only(&chroot.root)?;
    for (host, inside) in &chroot.writable {
        bind(host, inside)?;
    }
    for (host, inside) in &chroot.read_only {
        bind(host, inside)?;
        read_only(inside)?;
    }
    // SAFETY: as above.
    unsafe {
        check(libc::chroot(chroot.root.as_ptr()))?;
        check(libc::chdir(c"/".as_ptr()))
    }
}

/// Every mount point of this process except /proc and what is below it, the root first.
fn mount_points() -> Vec<CString> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("/proc/self/mountinfo");
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_point)
        .filter(|point| point != "/proc" && !point.starts_with("/proc/"))
        .collect();
    points.sort();
    points.dedup();
    points
        .into_iter()
        .map(|point| CString::new(point).expect("no NUL in a mount point"))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(field: &str) -> String {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lambda's kernel, as seen by a process: no user namespaces (EPERM), no Landlock (ENOSYS).
fn lambda_kernel_filters() -> Vec<BpfProgram> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).expect("a seccomp architecture");
    let new_user = libc::CLONE_NEWUSER as u64;
    let flag_rule = |arg| {
        SeccompRule::new(vec![SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(new_user),
            new_user,
        )
        .expect("condition")])
        .expect("rule")
    };
    let no_user_namespaces = BTreeMap::from([
        (libc::SYS_unshare, vec![flag_rule(0)]),
        (libc::SYS_clone, vec![flag_rule(0)]),
    ]);
    let no_landlock = BTreeMap::from([
        (libc::SYS_landlock_create_ruleset, vec![]),
        (libc::SYS_landlock_add_rule, vec![]),
        (libc::SYS_landlock_restrict_self, vec![]),
        // clone3 hides its flags from seccomp; glibc falls back to clone, checked above.
        (libc::SYS_clone3, vec![]),
    ]);
    [
        (no_user_namespaces, libc::EPERM),
        (no_landlock, libc::ENOSYS),
    ]
    .into_iter()
    .map(|(rules, errno)| {
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .expect("filter");
        BpfProgram::try_from(filter).expect("program")
    })
    .collect()
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs one test of this binary again, by its full name, under Lambda's conditions, and fails
/// unless it ran and passed there.
pub fn rerun_under_lambda(test_path: &str) {
    use std::os::unix::process::CommandExt;
    let name = test_path
        .split_once("::")
        .map_or(test_path, |(_, rest)| rest);
    let exe = std::env::current_exe().expect("the test binary's path");
    let conditions = Conditions::prepare(uid_for(name));
    let mut command = std::process::Command::new(exe);
    command
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(PROFILE_VARIABLE, PROFILE_LAMBDA)
        .env("TMPDIR", "/tmp");
    // SAFETY: `enter` only makes system calls on data prepared above.
    unsafe { command.pre_exec(move || conditions.enter()) };
    let output = command.output().expect("the test binary starts again");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("--- under Lambda's conditions ---\n{stdout}\n{stderr}");
    assert!(
        output.status.success(),
        "{name} failed under Lambda's conditions"
    );
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run under Lambda's conditions (filter matched nothing?)"
    );
}

/// A stable uid for one test, from its name.
fn uid_for(test_name: &str) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    test_name.hash(&mut hasher);
    LAMBDA_UIDS.start + (hasher.finish() % u64::from(LAMBDA_UIDS.end - LAMBDA_UIDS.start)) as u32
}
