//! Waiting for processes to exit, on their pidfds: the wait ends at the first exit instead of
//! at the end of a sleep chosen in advance. Any process can be waited for this way, not only a
//! child; a pidfd becomes readable once its process has exited (a zombie counts as exited).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Waits until one of `pids` has exited, or `within` has passed. A pid that is already gone
/// ends the wait at once; where pidfds are missing (kernels before 5.3), it is a sleep.
pub fn wait_for_any(pids: &[i32], within: Duration) {
    let mut pidfds = Vec::with_capacity(pids.len());
    for &pid in pids {
        match pidfd_open(pid, 0) {
            Ok(pidfd) => pidfds.push(pidfd),
            Err(error) if error.raw_os_error() == Some(libc::ESRCH) => return,
            Err(_) => {
                std::thread::sleep(within);
                return;
            }
        }
    }
    let mut polled: Vec<libc::pollfd> = pidfds
        .iter()
        .map(|pidfd| libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = within.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: poll over a live array of pollfds whose fds stay open until it returns. An
    // interruption (EINTR) only ends the wait early; the caller looks again.
    unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) };
}

/// A pidfd for `pid` (`flags` as pidfd_open(2) takes them): the process, pinned.
pub fn pidfd_open(pid: i32, flags: libc::c_long) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; the fd is owned below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_wait_ends_at_the_exit_not_at_the_timeout() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("sleep starts");
        let started = Instant::now();
        wait_for_any(&[child.id() as i32], Duration::from_secs(30));
        let waited = started.elapsed();
        child.wait().expect("reaped");
        assert!(waited < Duration::from_secs(20), "waited {waited:?}");
        assert!(waited >= Duration::from_millis(150), "waited {waited:?}");
    }

    #[test]
    fn a_pid_already_gone_ends_the_wait_at_once() {
        let mut child = std::process::Command::new("true").spawn().expect("starts");
        let pid = child.id() as i32;
        child.wait().expect("reaped");
        let started = Instant::now();
        wait_for_any(&[pid], Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
