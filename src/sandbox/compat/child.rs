//! What the compat sandbox does in the child between fork and exec, after the shared setup
//! (new session, cgroup, result fds). Everything is prepared before fork; here only
//! async-signal-safe system calls run, in an order where each step still has the rights it
//! needs: limits and identity first, then no_new_privs, Landlock, and seccomp last (so the
//! filter never has to allow the calls that install the other layers).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::rlimits::{self, Rlimit};
use super::{landlock, signals};
use crate::sandbox::seccomp::Policy;

/// A uid and gid to switch to (when the service runs as root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

#[derive(Debug)]
pub struct ChildHardening {
    pub rlimits: Vec<Rlimit>,
    pub identity: Option<Identity>,
    /// The scratch directory, the harness's working directory.
    pub scratch: CString,
    pub no_new_privs: bool,
    pub landlock: Option<OwnedFd>,
    /// `None` only where the platform refuses seccomp and MIN_ISOLATION allows that.
    pub seccomp: Option<Arc<Policy>>,
    /// Where the signal guard's listener goes (the child's end of the channel), when the
    /// policy has one.
    pub listener_socket: Option<OwnedFd>,
}

impl ChildHardening {
    pub fn run(&mut self) -> std::io::Result<()> {
        // The open-files limit comes last: until exec, the child still holds every fd of the
        // service (closed only at exec), so the signal guard's listener, created below, may get
        // a number above the limit.
        // (No allocation here: the two passes filter in place.)
        let is_open_files = |limit: &Rlimit| limit.resource == libc::RLIMIT_NOFILE;
        rlimits::apply_where(&self.rlimits, |limit| !is_open_files(limit))?;
        if let Some(identity) = self.identity {
            become_user(identity)?;
        }
        // SAFETY: chdir to a prepared NUL-terminated path.
        check(unsafe { libc::chdir(self.scratch.as_ptr()) })?;
        if self.no_new_privs {
            // SAFETY: prctl with integer arguments. Needed by both Landlock and seccomp for an
            // unprivileged process, and it keeps execve from ever granting privileges again.
            check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        }
        if let Some(ruleset) = &self.landlock {
            landlock::restrict_self(ruleset)?;
        }
        let programs = self
            .seccomp
            .as_deref()
            .map_or(&[][..], |policy| &policy.programs);
        for program in programs {
            // apply_filter builds its sock_fprog on the stack: no allocation.
            if seccompiler::apply_filter(program).is_err() {
                return Err(std::io::Error::last_os_error());
            }
        }
        // Last: from here on, a signal to another pid waits for the service's answer.
        let guard = self
            .seccomp
            .as_deref()
            .and_then(|p| p.supervised_signals.as_ref());
        if let (Some(program), Some(socket)) = (guard, &self.listener_socket) {
            signals::install_and_send(program, socket.as_raw_fd())?;
        }
        rlimits::apply_where(&self.rlimits, is_open_files)
    }
}

/// Drops root for good: no supplementary groups, then the gid, then the uid (in that order,
/// as changing the uid first would take away the right to change the others).
fn become_user(identity: Identity) -> std::io::Result<()> {
    // SAFETY: plain credential system calls with integer arguments.
    unsafe {
        check(libc::setgroups(0, std::ptr::null()))?;
        check(libc::setresgid(identity.gid, identity.gid, identity.gid))?;
        check(libc::setresuid(identity.uid, identity.uid, identity.uid))?;
    }
    Ok(())
}

fn check(result: libc::c_int) -> std::io::Result<()> {
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
