//! The sockets between the service and a template (and each of its forks): `SOCK_SEQPACKET`,
//! so every message arrives whole and alone, with its fds (`SCM_RIGHTS`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The most fds one message carries (an execution's pipes, status socket and ruleset).
const MAX_FDS: usize = 8;
/// The longest message the service receives (the forks' and templates' own are short).
const MAX_RECEIVED: usize = 4096;

/// Two connected ends; the first stays with the service, the second goes to the other side.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds on success.
    let result = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

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
            match ready.try_io(|socket| send_with_fds(socket.as_raw_fd(), payload, &raw)) {
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

fn send_with_fds(socket: RawFd, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} fds per message");
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    if !fds.is_empty() {
        let size = std::mem::size_of_val(fds) as u32;
        message.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_* are arithmetic over the control buffer, which has room for MAX_FDS.
        unsafe {
            message.msg_controllen = libc::CMSG_SPACE(size) as usize;
            let header = libc::CMSG_FIRSTHDR(&message);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(size) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(header).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    // SAFETY: a msghdr over buffers that outlive the call.
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    if unsafe { libc::sendmsg(socket, &message, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
