//! A raw HTTP/1.1 client over a blocking `std::net::TcpStream`, for tests that must control
//! exactly what is written and when: a whole body before reading (as urllib does), a body
//! trickled byte by byte, a connection that says nothing. Run it inside `spawn_blocking`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// No test waits longer than this for a read: a hung server fails the test instead.
pub const READ_LIMIT: Duration = Duration::from_secs(30);

/// A response as read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// The header block, lowercased, for simple `contains` checks.
    pub head: String,
    pub body: Value,
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(READ_LIMIT)).expect("timeout");
    stream
}

/// The head of a POST /execute with JSON; `framing` is the body's framing header line.
pub fn execute_head(framing: &str) -> String {
    format!(
        "POST /execute HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    )
}

/// `body` in chunked transfer coding, in chunks of `size`.
pub fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / size * 10 + 5);
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `head` and all of `body`, and only then reads the answer, as urllib and most SDKs do.
/// An `Err` is what such a client sees when the server breaks its pipe.
pub fn send_then_read(addr: SocketAddr, head: &str, body: &[u8]) -> io::Result<RawResponse> {
    let mut stream = connect(addr);
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    read_response(&mut stream)
}

/// Reads one response with a `Content-Length` body (every answer of this service has one).
pub fn read_response(stream: &mut TcpStream) -> io::Result<RawResponse> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        }
        received.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length: {head:?}"));
    while received.len() < head_end + length {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body cut short",
            ));
        }
        received.extend_from_slice(&buffer[..n]);
    }
    let body = serde_json::from_slice(&received[head_end..head_end + length])
        .unwrap_or_else(|error| panic!("the body is not JSON ({error})"));
    Ok(RawResponse { status, head, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Blocks until the server closes `stream` (EOF or reset), or fails after [`READ_LIMIT`].
pub fn wait_for_close(stream: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => return,
            Err(error) => panic!("the server did not close the connection: {error}"),
        }
    }
}
