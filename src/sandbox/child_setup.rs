//! What the sandbox's first process does between fork and exec, before the sandbox's own
//! hardening: its own session, its cgroup, and the report and log channels on fds 3 and 4.

use super::Hardening;

/// What the child does between fork and exec, before the sandbox's own hardening.
pub(super) struct ChildSetup {
    pub cgroup_procs: Vec<std::ffi::CString>,
    pub channel_fd: i32,
    pub tool_log_fd: i32,
    /// Raise the OOM score (inherited by everything the sandbox starts): as root this also
    /// keeps a script from lowering it; an unprivileged, undumpable child cannot write it.
    pub first_for_oom: bool,
    pub hardening: Option<Hardening>,
}

/// The fds the harness and the isolation tool find their channels on.
const CHANNEL_FD: i32 = 3;
const TOOL_LOG_FD: i32 = 4;

impl ChildSetup {
    pub fn into_closure(mut self) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        move || self.run()
    }

    fn run(&mut self) -> std::io::Result<()> {
        // SAFETY: only async-signal-safe libc calls on data prepared before fork.
        unsafe {
            // A session of its own: one signal reaches the whole sandbox, and it has no terminal.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for procs in &self.cgroup_procs {
                join_cgroup(procs)?;
            }
            if self.first_for_oom {
                let _ = write_file(c"/proc/self/oom_score_adj", b"1000");
            }
            // Park both ends above the targets first: either may already sit on fd 3 or 4.
            let channel = check(libc::fcntl(self.channel_fd, libc::F_DUPFD_CLOEXEC, 10))?;
            let tool_log = check(libc::fcntl(self.tool_log_fd, libc::F_DUPFD_CLOEXEC, 10))?;
            // dup2 clears close-on-exec on the target, so exactly fds 3 and 4 are inherited.
            check(libc::dup2(channel, CHANNEL_FD))?;
            check(libc::dup2(tool_log, TOOL_LOG_FD))?;
            libc::close(channel);
            libc::close(tool_log);
        }
        match &mut self.hardening {
            Some(harden) => harden(),
            None => Ok(()),
        }
    }
}

/// Moves the calling process into a cgroup by writing "0" to its `cgroup.procs`.
unsafe fn join_cgroup(procs: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: as `write_file`'s.
    unsafe { write_file(procs, b"0") }
}

/// Writes `content` to the file at `path` in one write, with only system calls.
unsafe fn write_file(path: &std::ffi::CStr, content: &[u8]) -> std::io::Result<()> {
    // SAFETY: a valid NUL-terminated path and a live buffer.
    unsafe {
        let fd = check(libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
        let written = libc::write(fd, content.as_ptr().cast(), content.len());
        libc::close(fd);
        if written != content.len() as isize {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn check(result: i32) -> std::io::Result<i32> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// The child's shared setup puts the report and log channels on fds 3 and 4 before the
/// sandbox's own hardening runs; an fd the hardening needs (Landlock's ruleset, the signal
/// guard's socket) that happened to get one of those numbers (they are free in a busy service
/// whenever an fd was just closed) would be overwritten. Move it well above them.
pub(crate) fn above_child_channels(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: fcntl on an fd we own; the duplicate is a new fd we then own.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 64) };
    if high < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl returned a fresh fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}
