//! Loopback ports: a listener the test keeps (its port cannot be taken while it holds it), or the
//! address of a port free right now, for a child process that binds it itself.

// Each crate that mounts this module uses only part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};

/// A listener on a loopback port the kernel picked.
pub fn loopback_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("a free loopback port")
}

/// A loopback address nothing listens on right now. The port is released on return so that a
/// child process can bind it; the kernel picks port-0 binds at random across the ephemeral range,
/// so another test taking it in between is unlikely, and a child that lost that race fails to
/// come up (a loud failure, never a wrong answer).
pub fn free_addr() -> SocketAddr {
    loopback_listener()
        .local_addr()
        .expect("a bound listener has an address")
}
