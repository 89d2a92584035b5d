//! Makes moving a process into a cgroup cheap on cgroup v1, for as long as the service runs.
//!
//! Every forked execution is moved into its own cgroup before it may go on. By default the
//! kernel makes such a move wait for an RCU grace period (it takes `cgroup_threadgroup_rwsem`
//! for writing, which is tuned for cheap forks and exits and costly writers), and while it
//! waits every fork and exit on the machine waits too: 5 to 15 ms per execution on a small VM,
//! spent on the request path or beside it. The kernel's remedy is the `favordynmods` cgroup
//! mount option ("reduce the latencies of dynamic cgroup modifications such as task migrations
//! ... at the cost of making hot path operations such as forks and exits more expensive"). A v1
//! hierarchy's options cannot change once mounted, but the semaphore is shared by every
//! hierarchy, so mounting one more hierarchy (named, without controllers) with the option
//! turns it on for all of them.
//!
//! That hierarchy is mounted detached (`fsopen`/`fsmount`, attached nowhere) and held by an fd
//! for the life of the process: when the service exits, however it exits, the mount is
//! released, the hierarchy (which has no cgroups) is destroyed, and the kernel goes back to
//! its default. Services running side by side share it by name. Where it cannot be mounted
//! (no `CAP_SYS_ADMIN`, an older kernel) moves just stay slower.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// The hierarchy's name: one for every service on the machine.
const NAME: &CStr = c"python-executor-favordynmods";

// From <linux/mount.h>.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// Turns `favordynmods` on until the process exits (once; later calls return the first
/// outcome). An error only means moves keep their default cost.
pub fn favor_migrations() -> Result<(), &'static io::Error> {
    static HELD: OnceLock<io::Result<OwnedFd>> = OnceLock::new();
    HELD.get_or_init(|| {
        let held = mount_detached();
        match &held {
            Ok(_) => tracing::info!("cgroup v1: favordynmods on while the service runs"),
            Err(error) => tracing::info!(%error, "cgroup v1: favordynmods unavailable"),
        }
        held
    })
    .as_ref()
    .map(|_| ())
}

fn mount_detached() -> io::Result<OwnedFd> {
    // SAFETY: fsopen with a NUL-terminated name; the fd it returns is ours.
    let context =
        owned(unsafe { libc::syscall(libc::SYS_fsopen, c"cgroup".as_ptr(), FSOPEN_CLOEXEC) })?;
    let context_fd = context.as_raw_fd();
    set(context_fd, FSCONFIG_SET_FLAG, c"none", None)?;
    set(context_fd, FSCONFIG_SET_STRING, c"name", Some(NAME))?;
    set(context_fd, FSCONFIG_SET_FLAG, c"favordynmods", None)?;
    // SAFETY: fsconfig on our context; no key or value for the create command.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            context_fd,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: fsmount on a created context; the mount fd it returns is ours.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, context_fd, FSMOUNT_CLOEXEC, 0) })
}

fn set(fd: RawFd, command: libc::c_uint, key: &CStr, value: Option<&CStr>) -> io::Result<()> {
    let value = value.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: fsconfig on our context with NUL-terminated key and value (or none).
    check(unsafe { libc::syscall(libc::SYS_fsconfig, fd, command, key.as_ptr(), value, 0) })
}

fn check(result: libc::c_long) -> io::Result<()> {
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn owned(result: libc::c_long) -> io::Result<OwnedFd> {
    check(result)?;
    let fd = RawFd::try_from(result).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the system call returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root on a kernel with the option (this machine's), the hierarchy is mounted (the
    /// kernel accepted the option, or the mount would have failed) and stays for the life of
    /// the process.
    #[test]
    fn mounts_the_option_when_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                favor_migrations().is_err(),
                "an unprivileged process mounted a hierarchy"
            );
            return;
        }
        favor_migrations().expect("mounting a favordynmods hierarchy as root");
        let name = NAME.to_str().expect("ASCII");
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        assert!(
            cgroups
                .lines()
                .any(|line| line.contains(&format!("name={name}"))),
            "the named hierarchy is not listed for this process: {cgroups}"
        );
        assert!(
            favor_migrations().is_ok(),
            "a second call must reuse the first"
        );
    }
}
