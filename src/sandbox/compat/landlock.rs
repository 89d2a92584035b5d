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
    path_beneath_rules, Access, AccessFs, AccessNet, BitFlags, PathBeneath, PathFd, RulesetAttr,
    RulesetCreatedAttr, RulesetError, Scope, ABI,
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

/// The rules every execution shares, their paths opened once (`O_PATH`) when the sandbox is
/// made: a ruleset is built per execution, and opening, inspecting and closing thirteen paths
/// each time was most of its system calls. Only the scratch directory is new per execution.
/// Holding the fds gives the service nothing it could not open again; a path replaced later
/// (a package upgrade) keeps the directory it named at start, as a running service's
/// interpreter does anyway.
#[derive(Debug)]
pub struct FixedRules {
    rules: Vec<(PathFd, BitFlags<AccessFs>)>,
}

impl FixedRules {
    /// The runtime's directories (the layer's runtime and harness), the system's read-only
    /// places, procfs's files and `/dev/null`, each with the rights its kind allows (a file
    /// cannot be given a directory's). Missing paths (no /lib64 on arm64) are skipped.
    pub fn open(runtime: &[PathBuf]) -> Self {
        let read = AccessFs::from_read(TARGET_ABI);
        let all = AccessFs::from_all(TARGET_ABI);
        let readable = runtime
            .iter()
            .map(PathBuf::as_path)
            .chain(SYSTEM_READ.iter().map(Path::new))
            .map(|path| (path, read));
        // procfs: files only, never a directory listing. A script can read its own
        // /proc/self/status, but cannot enumerate the host's processes (there is no PID
        // namespace here); another process's secrets (environ, mem) are kept by its uid and
        // by being undumpable, not by Landlock.
        let procfs = std::iter::once((Path::new("/proc"), BitFlags::from(AccessFs::ReadFile)));
        let writable = SYSTEM_WRITE.iter().map(|path| (Path::new(*path), all));
        let rules = readable
            .chain(procfs)
            .chain(writable)
            .filter_map(|(path, access)| {
                let fd = PathFd::new(path).ok()?;
                Some((fd, fitting(path, access)))
            })
            .collect();
        Self { rules }
    }
}

/// `access` narrowed to a file's rights where `path` is not a directory (what the kernel
/// accepts for it). Where the kind cannot be told, the rights stay as asked (as
/// `path_beneath_rules` does): the kernel then refuses the rule rather than widening it.
fn fitting(path: &Path, access: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    match std::fs::metadata(path) {
        Ok(found) if !found.is_dir() => access & AccessFs::from_file(TARGET_ABI),
        _ => access,
    }
}

/// What one execution may use besides the fixed rules.
#[derive(Debug)]
pub struct FsPolicy<'a> {
    pub fixed: &'a FixedRules,
    pub scratch: &'a Path,
    /// The shared `/tmp`, writable where each execution has a uid of its own: Unix permissions
    /// (its uid, umask 077, the sticky bit) keep its files there its own.
    pub shared_tmp: Option<&'a Path>,
}

/// The ruleset to enforce in the child, or `None` where the kernel has no Landlock.
pub fn ruleset(policy: &FsPolicy<'_>) -> Result<Option<OwnedFd>, RulesetError> {
    let all = AccessFs::from_all(TARGET_ABI);
    let writable = std::iter::once(policy.scratch).chain(policy.shared_tmp);
    let fixed = policy
        .fixed
        .rules
        .iter()
        .map(|(fd, access)| Ok::<_, RulesetError>(PathBeneath::new(fd, *access)));
    let created = landlock::Ruleset::default()
        .handle_access(all)?
        // Handled with no rule: no TCP bind or connect at all (seccomp already refuses the
        // sockets; this holds even if a future policy lets one through).
        .handle_access(AccessNet::from_all(TARGET_ABI))?
        .scope(Scope::from_all(TARGET_ABI))?
        .create()?
        .add_rules(fixed)?
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A file gets only a file's rights (the kernel refuses a rule giving it a directory's),
    /// a directory keeps what was asked, and a missing path gets no rule.
    #[test]
    fn fixed_rules_fit_each_path_kind() {
        let runtime = [PathBuf::from("/nonexistent-runtime")];
        let fixed = FixedRules::open(&runtime);
        let file_rights = AccessFs::from_file(TARGET_ABI);
        // The system's paths that exist here, and /proc.
        let present = SYSTEM_READ
            .iter()
            .chain(SYSTEM_WRITE.iter())
            .filter(|path| Path::new(path).exists())
            .count()
            + 1;
        assert_eq!(fixed.rules.len(), present, "{fixed:?}");
        let dev_null = fixed.rules.last().expect("/dev/null is present");
        assert!(file_rights.contains(dev_null.1), "{:?}", dev_null.1);
        let usr = &fixed.rules[0];
        assert!(usr.1.contains(AccessFs::ReadDir), "{:?}", usr.1);
    }
}
