//! What the compat sandbox does in the child between fork and exec, after the shared setup
//! (new session, cgroup, result fds): the isolation steps of `pyexec_isolate`, the very ones a
//! template's child runs, on a spec and fds prepared before fork (only system calls happen
//! here).

use std::os::fd::{AsRawFd, OwnedFd};

use pyexec_isolate::{Fds, Spec};

/// A uid and gid to switch to (when the service runs as root).
pub use pyexec_isolate::Identity;

#[derive(Debug)]
pub struct ChildHardening {
    pub spec: Spec,
    pub landlock: Option<OwnedFd>,
    /// Where the signal guard's listener goes (the child's end of the channel), when the
    /// policy has one.
    pub listener_socket: Option<OwnedFd>,
}

impl ChildHardening {
    pub fn run(&mut self) -> std::io::Result<()> {
        self.spec.apply(Fds {
            landlock: self.landlock.as_ref().map(AsRawFd::as_raw_fd),
            listener_socket: self.listener_socket.as_ref().map(AsRawFd::as_raw_fd),
        })
    }
}
