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

use crate::sandbox::exits::pidfd_open;
use crate::sandbox::procfs::Stat;

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
    let verdict = decide(data.nr as i64, &data.args, request.pid as i32, group);
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

/// The decision for one call, from its number and arguments and the calling thread: targets
/// inside the sandbox's group get the signal, everything else is refused with EPERM, as the
/// kernel would refuse a process it may not signal. A target is pinned by a pidfd before it is
/// checked, and the service sends the signal through it, so a pid that died and was reused in
/// between can never redirect it outside the sandbox. A call aimed at the caller's own process
/// runs as made: that target cannot be reused while it is making the call.
fn decide(nr: i64, args: &[u64; 6], caller: i32, group: i32) -> Verdict {
    let denied = Verdict::Returned(-i64::from(libc::EPERM));
    let target = args[0] as u32 as i32;
    match nr {
        libc::SYS_kill if target > 0 => kill_member(target, args[1] as u32 as i32, group),
        // A negative pid names a process group: only the sandbox's own.
        libc::SYS_kill if target < -1 && -target == group => Verdict::Continue,
        // tgkill, rt_sigqueueinfo, rt_tgsigqueueinfo: the first argument is the thread group.
        libc::SYS_tgkill | libc::SYS_rt_sigqueueinfo | libc::SYS_rt_tgsigqueueinfo
            if target > 0 && is_thread_of(caller, target) =>
        {
            Verdict::Continue
        }
        libc::SYS_tgkill if target > 0 => {
            let (thread, signal) = (args[1] as u32 as i32, args[2] as u32 as i32);
            tgkill_member(target, thread, signal, group)
        }
        // A queued signal carries data in the caller's memory, which the service cannot read
        // (the caller is undumpable): to another process, refused.
        _ => denied,
    }
}

/// Whether thread `thread` belongs to process `process` (both alive: the caller is blocked in
/// its system call).
fn is_thread_of(thread: i32, process: i32) -> bool {
    std::path::Path::new(&format!("/proc/{process}/task/{thread}")).exists()
}

fn is_member(pid: i32, group: i32) -> bool {
    pid > 0 && Stat::of(pid).is_some_and(|stat| stat.pgrp == group)
}

/// A process pinned by a pidfd, once it was seen in the sandbox's group.
struct Member(OwnedFd);

impl Member {
    /// `pid`, pinned, if it is in `group`; otherwise the errno to answer.
    fn pin(pid: i32, group: i32) -> Result<Self, i32> {
        let pinned = Self(pidfd_open(pid, 0).map_err(|error| errno_of(&error))?);
        if is_member(pid, group) {
            Ok(pinned)
        } else {
            Err(libc::EPERM)
        }
    }

    /// Whether the pinned process still runs (then its pid is still its own).
    fn is_alive(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd, without waiting; readable means exited.
        unsafe { libc::poll(&mut poll, 1, 0) == 0 }
    }
}

/// `kill(pid, signal)` for a pid in the group, sent by the service through the pinned pidfd.
fn kill_member(pid: i32, signal: i32, group: i32) -> Verdict {
    let member = match Member::pin(pid, group) {
        Ok(member) => member,
        Err(errno) => return Verdict::Returned(-i64::from(errno)),
    };
    // SAFETY: pidfd_send_signal on a pidfd we own, without siginfo.
    let sent = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            member.0.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    returned(sent)
}

/// `tgkill(process, thread, signal)` for a process in the group, sent by the service: through
/// a pidfd of the thread itself where the kernel has them (6.9 and later), otherwise by tgkill
/// while the pinned process is seen alive (its pid cannot have been reused then).
fn tgkill_member(process: i32, thread: i32, signal: i32, group: i32) -> Verdict {
    let member = match Member::pin(process, group) {
        Ok(member) => member,
        Err(errno) => return Verdict::Returned(-i64::from(errno)),
    };
    if !is_thread_of(thread, process) {
        return Verdict::Returned(-i64::from(libc::ESRCH));
    }
    if let Ok(thread_fd) = pidfd_open(thread, PIDFD_THREAD) {
        // The thread's pidfd was opened after the check: the thread is still the process's.
        if !is_thread_of(thread, process) || !member.is_alive() {
            return Verdict::Returned(-i64::from(libc::ESRCH));
        }
        // SAFETY: pidfd_send_signal on a thread pidfd we own, without siginfo.
        let sent = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                thread_fd.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                PIDFD_SIGNAL_THREAD,
            )
        };
        return returned(sent);
    }
    if !member.is_alive() {
        return Verdict::Returned(-i64::from(libc::ESRCH));
    }
    // SAFETY: tgkill with integer arguments, on a process pinned and seen alive just now.
    returned(unsafe { libc::syscall(libc::SYS_tgkill, process, thread, signal) })
}

/// `pidfd_open`'s flag for a thread's own pidfd, and `pidfd_send_signal`'s to signal just it.
const PIDFD_THREAD: libc::c_long = libc::O_EXCL as libc::c_long;
const PIDFD_SIGNAL_THREAD: libc::c_long = 1;

fn returned(result: libc::c_long) -> Verdict {
    Verdict::Returned(if result < 0 {
        -i64::from(last_errno())
    } else {
        0
    })
}

fn last_errno() -> i32 {
    errno_of(&io::Error::last_os_error())
}

fn errno_of(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_sandboxs_own_group_may_be_signalled() {
        // SAFETY: getpgrp and gettid cannot fail.
        let (own_group, me) = unsafe { (libc::getpgrp(), libc::gettid()) };
        let process = std::process::id() as i32;
        let denied = Verdict::Returned(-i64::from(libc::EPERM));
        let args =
            |first: i32, second: i32| [first as u32 as u64, second as u32 as u64, 0, 0, 0, 0];
        // This test process is in `own_group`; pid 1 is not. The caller is a thread of ours,
        // or pid 1's (a target of its own elsewhere).
        let other_caller = 1;
        assert_eq!(decide(libc::SYS_tgkill, &args(1, 1), me, own_group), denied);
        assert_eq!(decide(libc::SYS_kill, &args(-1, 0), me, own_group), denied);
        assert_eq!(
            decide(libc::SYS_kill, &args(-own_group, 0), me, own_group),
            Verdict::Continue
        );
        assert_eq!(
            decide(libc::SYS_kill, &args(-own_group, 0), me, own_group + 1),
            denied
        );
        // To its own process, a call runs as made.
        assert_eq!(
            decide(libc::SYS_tgkill, &args(process, me), me, own_group),
            Verdict::Continue
        );
        assert_eq!(
            decide(libc::SYS_rt_sigqueueinfo, &args(process, 0), me, own_group),
            Verdict::Continue
        );
        // To another member, tgkill and kill go through a pidfd (signal 0: harmless), and a
        // queued signal with data is refused.
        assert_eq!(
            decide(
                libc::SYS_tgkill,
                &args(process, me),
                other_caller,
                own_group
            ),
            Verdict::Returned(0)
        );
        assert_eq!(
            decide(libc::SYS_tgkill, &args(process, 1), other_caller, own_group),
            Verdict::Returned(-i64::from(libc::ESRCH))
        );
        assert_eq!(
            decide(
                libc::SYS_rt_sigqueueinfo,
                &args(process, 0),
                other_caller,
                own_group
            ),
            denied
        );
        assert_eq!(decide(libc::SYS_kill, &args(1, 0), me, own_group), denied);
        assert_eq!(
            decide(libc::SYS_kill, &args(process, 0), me, own_group),
            Verdict::Returned(0)
        );
    }
}
