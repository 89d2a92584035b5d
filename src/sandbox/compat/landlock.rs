//! The compat sandbox's filesystem policy (Landlock), prepared before fork as a ruleset fd.
//!
//! Writes only in the execution's scratch directory, `/tmp` where the execution has a uid of its
//! own, and `/dev/null`; reads and execution only where the runtime lives. nsjail gets the same effect by mounting nothing else; without
//! namespaces, Landlock is the only way an unprivileged process can narrow what it can open.
//! Best effort by ABI: a kernel without Landlock gives no ruleset (and `/health` says so), an
//! older one enforces what it knows.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, RulesetAttr, RulesetCreatedAttr, RulesetError,
    Scope, ABI,
};

/// The ABI whose rights we ask for; newer kernels never widen them, older ones drop what they
/// lack. V6 brings the scopes: no signals to, and no abstract UNIX sockets of, processes outside
/// the sandbox.
const TARGET_ABI: ABI = ABI::V6;

/// What the system gives a Python runtime, read-only: the interpreter and shared libraries, a
/// shell for os.system(), and the harmless devices.
const SYSTEM_READ: [&str; 7] = [
    "/usr",
    "/lib",
    "/lib64",
    "/bin",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
];

/// Where a script may write besides its scratch directory.
const SYSTEM_WRITE: [&str; 1] = ["/dev/null"];

/// The paths one execution may use.
#[derive(Debug)]
pub struct FsPolicy<'a> {
    /// The layer's runtime and harness directories.
    pub runtime: &'a [PathBuf],
    pub scratch: &'a Path,
    /// The shared `/tmp`, writable where each execution has a uid of its own: Unix permissions
    /// (its uid, umask 077, the sticky bit) keep its files there its own.
    pub shared_tmp: Option<&'a Path>,
}

/// The ruleset to enforce in the child, or `None` where the kernel has no Landlock.
pub fn ruleset(policy: &FsPolicy<'_>) -> Result<Option<OwnedFd>, RulesetError> {
    let read = AccessFs::from_read(TARGET_ABI);
    let all = AccessFs::from_all(TARGET_ABI);
    let readable = policy
        .runtime
        .iter()
        .map(PathBuf::as_path)
        .chain(SYSTEM_READ.iter().map(Path::new));
    let writable = std::iter::once(policy.scratch)
        .chain(policy.shared_tmp)
        .chain(SYSTEM_WRITE.iter().map(Path::new));
    let created = landlock::Ruleset::default()
        .handle_access(all)?
        // Handled with no rule: no TCP bind or connect at all (seccomp already refuses the
        // sockets; this holds even if a future policy lets one through).
        .handle_access(AccessNet::from_all(TARGET_ABI))?
        .scope(Scope::from_all(TARGET_ABI))?
        .create()?
        // Missing paths (no /lib64 on arm64) are skipped by path_beneath_rules.
        .add_rules(path_beneath_rules(readable, read))?
        // procfs: files only, never a directory listing. A script can read its own
        // /proc/self/status, but cannot enumerate the host's processes (there is no PID
        // namespace here); another process's secrets (environ, mem) are kept by its uid and
        // by being undumpable, not by Landlock.
        .add_rules(path_beneath_rules(["/proc"], AccessFs::ReadFile))?
        .add_rules(path_beneath_rules(writable, all))?;
    Ok(created.into())
}

/// The Landlock ABI the running kernel offers (0 when it has none).
pub fn kernel_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented version query: no ruleset, size 0, only the flag.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(abi).unwrap_or(0)
}
