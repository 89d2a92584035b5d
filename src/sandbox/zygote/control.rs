//! The sockets between the service and a template (and each of its forks): `SOCK_SEQPACKET`,
//! so every message arrives whole and alone, with its fds (`SCM_RIGHTS`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The longest message the service receives (the forks' and templates' own are short).
const MAX_RECEIVED: usize = 4096;

/// One message: its bytes (empty when the other side is gone) and the fd it carried.
#[derive(Debug)]
pub struct Message {
    pub payload: Vec<u8>,
    pub fd: Option<OwnedFd>,
}

/// The service's end, non-blocking under tokio.
#[derive(Debug)]
pub struct Socket(AsyncFd<OwnedFd>);

impl Socket {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(fd.as_raw_fd())?;
        // SAFETY: the AsyncFd owns the socket, which stays open and the same until dropped.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
            .map(Self)
            .map_err(io::Error::from)
    }

    pub async fn send(&self, payload: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        loop {
            let mut ready = self.0.writable().await?;
            let sent = ready
                .try_io(|socket| pyexec_isolate::fdpass::send(socket.as_raw_fd(), payload, &raw));
            match sent {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn receive(&self) -> io::Result<Message> {
        loop {
            let mut ready = self.0.readable().await?;
            let mut buffer = vec![0u8; MAX_RECEIVED];
            let received = ready.try_io(|socket| {
                pyexec_isolate::fdpass::receive(socket.as_raw_fd(), &mut buffer, libc::MSG_DONTWAIT)
            });
            match received {
                Ok(Ok((length, fd))) => {
                    buffer.truncate(length);
                    return Ok(Message {
                        payload: buffer,
                        fd,
                    });
                }
                Ok(Err(error)) => return Err(error),
                Err(_would_block) => continue,
            }
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own, with valid commands.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
