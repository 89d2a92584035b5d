//! Short messages, each with at most one fd, over a `SOCK_SEQPACKET` socket: how a template's
//! child and the service talk while the child isolates itself, and how the signal guard's
//! listener reaches the service. Sending allocates nothing (it runs between fork and exec too).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The child's pidfd, sent first: the service learns the child's pid in its own PID namespace
/// from it, puts the child into its cgroup, and watches it.
pub const PID: &[u8] = b"pid";
/// The service's answer once the child is in its cgroup: isolation may begin.
pub const GO: &[u8] = b"go";
/// The signal guard's listener (compat).
pub const LISTENER: &[u8] = b"listener";
/// Every step is done: the job may come.
pub const ISOLATED: &[u8] = b"isolated";
/// What a failed step says, followed by which step and why.
pub const ERROR_PREFIX: &[u8] = b"error: ";

/// The longest message either side sends.
pub const MAX_MESSAGE: usize = 512;

/// The most fds one message carries (an execution's pipes, status socket and ruleset).
pub const MAX_FDS: usize = 8;

/// Control buffer for up to `MAX_FDS` fds, aligned for cmsghdr.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// Sends `payload` with `fds` (at most [`MAX_FDS`]); allocates nothing.
pub fn send(socket: RawFd, payload: &[u8], fds: &[RawFd]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut control = Control([0; 64]);
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
        message.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE and CMSG_LEN are arithmetic; the buffer holds one cmsghdr with
        // room for MAX_FDS fds and outlives the call.
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

/// One message into `buffer`: its length (0 when the other side is gone) and its fd, if any.
/// `flags` may add `MSG_DONTWAIT`; received fds are close-on-exec.
pub fn receive(
    socket: RawFd,
    buffer: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut control = Control([0; 64]);
    let mut iov = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    // SAFETY: an all-zero msghdr is valid; its pointers are set to live buffers below.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.0.as_mut_ptr().cast();
    message.msg_controllen = control.0.len();
    // SAFETY: a msghdr over buffers that outlive the call.
    let length = unsafe { libc::recvmsg(socket, &mut message, flags | libc::MSG_CMSG_CLOEXEC) };
    if length < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut received = None;
    // SAFETY: the kernel filled the control buffer; each header is checked before it is read.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<RawFd>());
                received = Some(OwnedFd::from_raw_fd(fd));
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    Ok((length as usize, received))
}

/// A pidfd of the calling process.
pub fn own_pidfd() -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open on our own pid with no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}
