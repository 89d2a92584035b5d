//! Pipes to and from a sandboxed child, and reading them with a cap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;

/// One pipe: the read end stays with the service, the write end goes to the child.
#[derive(Debug)]
pub struct ChildPipe {
    pub read: pipe::Receiver,
    pub write: OwnedFd,
}

impl ChildPipe {
    pub fn new() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Only the service's end is non-blocking: the child writes with ordinary blocking I/O.
        set_nonblocking(&read)?;
        Ok(Self {
            read: pipe::Receiver::from_owned_fd(read)?,
            write,
        })
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with valid commands.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What was read from a stream: at most the cap, and whether more was discarded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

impl Captured {
    /// The text, with a multi-byte character cut by the cap dropped rather than mangled.
    pub fn text(&self) -> String {
        match std::str::from_utf8(&self.bytes) {
            Ok(text) => text.to_owned(),
            Err(error) if self.truncated && error.error_len().is_none() => {
                String::from_utf8_lossy(&self.bytes[..error.valid_up_to()]).into_owned()
            }
            Err(_) => String::from_utf8_lossy(&self.bytes).into_owned(),
        }
    }
}

/// Reads to EOF, keeping the first `cap` bytes and draining the rest, so a chatty child never
/// blocks on a full pipe (which would turn an output cap into a timeout).
pub async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, cap: usize) -> Captured {
    let mut captured = Captured::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return captured,
            Ok(n) => {
                let room = cap.saturating_sub(captured.bytes.len());
                captured.bytes.extend_from_slice(&buffer[..n.min(room)]);
                captured.truncated |= n > room;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_cap_and_flags_the_rest() {
        let data = vec![b'x'; 200_000];
        let captured = read_capped(&data[..], 1000).await;
        assert_eq!(captured.bytes.len(), 1000);
        assert!(captured.truncated);
        let captured = read_capped(&b"hello"[..], 1000).await;
        assert_eq!(captured.text(), "hello");
        assert!(!captured.truncated);
    }

    #[test]
    fn a_character_cut_by_the_cap_is_dropped() {
        let captured = Captured {
            bytes: "aé".as_bytes()[..2].to_vec(),
            truncated: true,
        };
        assert_eq!(captured.text(), "a");
    }
}
