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
/// so another process taking it in between is unlikely. Should one, the child fails to bind, and
/// `Running::wait_listening` finds the listener is not the child's ([`listener_inodes`]): a loud
/// failure either way, never a test talking to the wrong program.
pub fn free_addr() -> SocketAddr {
    loopback_listener()
        .local_addr()
        .expect("a bound listener has an address")
}

/// The inodes of the sockets listening on `port`, on any local address (a service may bind
/// 0.0.0.0 or [::]), from the kernel's tables of TCP sockets (/proc/net/tcp and tcp6).
pub fn listener_inodes(port: u16) -> Vec<u64> {
    // Each line: slot, local address:port (the port in hex), remote, state (0A is LISTEN), ...,
    // the inode tenth.
    let port = format!(":{port:04X}");
    const LISTEN: &str = "0A";
    let tables = ["/proc/net/tcp", "/proc/net/tcp6"];
    let lines: Vec<String> = tables
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    lines
        .iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(1)?.ends_with(&port) && fields.get(3) == Some(&LISTEN);
            listening.then(|| fields.get(9)?.parse().ok()).flatten()
        })
        .collect()
}
