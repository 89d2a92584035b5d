//! compat's signal guard, the service's half: every signal a compat script aims at another
//! process arrives here as a seccomp user notification (`seccomp/notify.rs`), and is allowed
//! only when its target is in the sandbox's own process group. Scripts cannot leave that group
//! (setsid and setpgid are refused), and nothing else can join it, so the group is exactly the
//! sandbox's process tree. On Lambda this is what keeps a script from killing the service's
//! threads or the sandbox waiting for the next caller, which share its uid.
//!
//! The listener is created in the child between fork and exec and handed over a socket pair
//! (`SCM_RIGHTS`), as only the child can install the filter on itself.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::task::JoinHandle;

use crate::procfs::Stat;

/// The two ends of the socket pair the listener travels over.
#[derive(Debug)]
pub struct ListenerChannel {
    pub parent: OwnedFd,
    pub child: OwnedFd,
}

impl ListenerChannel {
    pub fn new() -> io::Result<Self> {
        let (parent, child) = crate::sandbox::pipes::seqpacket_pair()?;
        Ok(Self { parent, child })
    }
}

/// In the service, once the child said it installed the filter: the listener it sent (the cold
/// path's child did so before exec, and the spawn returns only after exec, so it is waiting).
pub fn receive_listener(socket: &OwnedFd) -> io::Result<OwnedFd> {
    let mut buffer = [0u8; pyexec_isolate::fdpass::MAX_MESSAGE];
    let (_, fd) =
        pyexec_isolate::fdpass::receive(socket.as_raw_fd(), &mut buffer, libc::MSG_DONTWAIT)?;
    fd.ok_or_else(|| io::Error::other("no listener arrived with the message"))
}

/// Answers the sandbox's notifications until every process under the filter is gone. The
/// returned handle aborts the task when dropped.
pub fn serve(listener: OwnedFd, group: i32) -> io::Result<Guard> {
    // SAFETY: the AsyncFd owns the listener, which stays open and the same until it is dropped.
    let listener = unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
        .map_err(io::Error::from)?;
    Ok(Guard(tokio::spawn(async move {
        loop {
            let Ok(mut ready) = listener.readable().await else {
                return;
            };
            loop {
                match pending(listener.get_ref().as_raw_fd()) {
                    Pending::Notification => answer_one(listener.get_ref().as_raw_fd(), group),
                    Pending::Nothing => {
                        ready.clear_ready();
                        break;
                    }
                    Pending::HungUp => return,
                }
            }
        }
    })))
}

/// Ends the serving task with the sandbox.
#[derive(Debug)]
pub struct Guard(JoinHandle<()>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

enum Pending {
    Notification,
    Nothing,
    /// No process uses the filter any more.
    HungUp,
}

fn pending(listener: RawFd) -> Pending {
    let mut poll = libc::pollfd {
        fd: listener,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd, without waiting.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready > 0 && poll.revents & libc::POLLIN != 0 {
        Pending::Notification
    } else if ready > 0 && poll.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        Pending::HungUp
    } else {
        Pending::Nothing
    }
}

/// What the service answers a notified call.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Let the kernel run the call as made.
    Continue,
    /// The call's result, as if the kernel had returned it (0 or a negative errno).
    Returned(i64),
}

fn answer_one(listener: RawFd, group: i32) {
    // SAFETY: the kernel requires a zeroed buffer; RECV fills it (a notification is pending, so
    // it does not block).
    let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut request) } != 0 {
        return; // the caller died in the meantime
    }
    let data = request.data;
    let verdict = decide(data.nr as i64, &data.args, group);
    let mut response = libc::seccomp_notif_resp {
        id: request.id,
        val: 0,
        error: 0,
        flags: 0,
    };
    match verdict {
        Verdict::Continue => response.flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        Verdict::Returned(result) if result < 0 => response.error = result as i32,
        Verdict::Returned(result) => response.val = result,
    }
    // SAFETY: SEND reads the response; ENOENT (the caller died) needs no handling.
    unsafe { libc::ioctl(listener, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut response) };
}

/// The decision for one call, from its number and arguments: targets inside the sandbox's
/// group pass, everything else is refused with EPERM, as the kernel would refuse a process it
/// may not signal.
fn decide(nr: i64, args: &[u64; 6], group: i32) -> Verdict {
    let denied = Verdict::Returned(-i64::from(libc::EPERM));
    let target = args[0] as u32 as i32;
    match nr {
        libc::SYS_kill if target > 0 => kill_member(target, args[1] as u32 as i32, group),
        // A negative pid names a process group: only the sandbox's own.
        libc::SYS_kill if target < -1 && -target == group => Verdict::Continue,
        // tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo: the first argument is the thread group.
        libc::SYS_tgkill | libc::SYS_rt_sigqueueinfo | libc::SYS_rt_tgsigqueueinfo
            if is_member(target, group) =>
        {
            Verdict::Continue
        }
        _ => denied,
    }
}

fn is_member(pid: i32, group: i32) -> bool {
    pid > 0 && Stat::of(pid).is_some_and(|stat| stat.pgrp == group)
}

/// `kill(pid, signal)` for a pid in the group, sent by the service through a pidfd: the pidfd
/// pins the process, so a pid that died and was reused between the check and the signal can
/// never redirect the signal to a process outside the sandbox.
fn kill_member(pid: i32, signal: i32, group: i32) -> Verdict {
    // SAFETY: pidfd_open with integer arguments; the fd is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Verdict::Returned(-i64::from(last_errno()));
    }
    let verdict = if !is_member(pid, group) {
        Verdict::Returned(-i64::from(libc::EPERM))
    } else {
        // SAFETY: pidfd_send_signal on the pidfd opened above, without siginfo.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd,
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        Verdict::Returned(if sent < 0 {
            -i64::from(last_errno())
        } else {
            0
        })
    };
    // SAFETY: closing the pidfd opened above.
    unsafe { libc::close(pidfd as RawFd) };
    verdict
}

fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sandboxs_own_group_may_be_signalled() {
        // SAFETY: getpgrp cannot fail.
        let own_group = unsafe { libc::getpgrp() };
        let denied = Verdict::Returned(-i64::from(libc::EPERM));
        let args = |first: i32| [first as u32 as u64, 0, 0, 0, 0, 0];
        // This test process is in `own_group`; pid 1 is not.
        assert_eq!(decide(libc::SYS_tgkill, &args(1), own_group), denied);
        assert_eq!(decide(libc::SYS_kill, &args(-1), own_group), denied);
        assert_eq!(
            decide(libc::SYS_kill, &args(-own_group), own_group),
            Verdict::Continue
        );
        assert_eq!(
            decide(libc::SYS_kill, &args(-own_group), own_group + 1),
            denied
        );
        let me = std::process::id() as i32;
        assert_eq!(
            decide(libc::SYS_tgkill, &args(me), own_group),
            Verdict::Continue
        );
        assert_eq!(decide(libc::SYS_kill, &args(1), own_group), denied);
        // Signal 0 to ourselves through the pidfd path: allowed, and harmless.
        assert_eq!(
            decide(libc::SYS_kill, &args(me), own_group),
            Verdict::Returned(0)
        );
    }
}
