//! Pipes to and from a sandboxed child, and draining them with a cap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use std::sync::{Arc, OnceLock};

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

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

/// The pipe a job travels on: the write end stays with the service (non-blocking), the read
/// end becomes the sandbox's stdin.
pub fn job_pipe() -> io::Result<(pipe::Sender, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(&write)?;
    Ok((pipe::Sender::from_owned_fd(write)?, read))
}

/// The most a pipe is grown to for a large job (the kernel's default cap for unprivileged
/// users, `/proc/sys/fs/pipe-max-size`).
const LARGEST_PIPE: usize = 1 << 20;

/// Grows the pipe of `fd` to hold `bytes` (up to [`LARGEST_PIPE`]) when they are more than its
/// default 64 KiB: a session's state of a megabyte then crosses in a few writes instead of
/// sixteen rounds of filling and waking the reader. Only a speed-up: a refusal (the uid's
/// pipe allowance used up) leaves the pipe as it was.
pub fn fit_pipe_to(fd: &impl AsRawFd, bytes: usize) {
    const DEFAULT: usize = 64 << 10;
    if bytes > DEFAULT {
        let size = bytes.next_power_of_two().min(LARGEST_PIPE);
        // SAFETY: F_SETPIPE_SZ on an open fd; a failure changes nothing.
        let _ = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
    }
}

/// Two connected `SOCK_SEQPACKET` ends (every message arrives whole, with its fds): the first
/// stays with the service, the second goes to the other side.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
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

    /// Keeps what fits under `cap` of `chunk`; what was kept.
    fn keep<'a>(&mut self, chunk: &'a [u8], cap: usize) -> &'a [u8] {
        let room = cap.saturating_sub(self.bytes.len());
        let kept = &chunk[..chunk.len().min(room)];
        self.bytes.extend_from_slice(kept);
        self.truncated |= chunk.len() > room;
        kept
    }
}

/// Which of the script's streams output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Output as the script wrote it, for an execution watched while it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: Stream,
    pub bytes: Vec<u8>,
}

/// Where a drain also sends what it keeps, once an execution is watched: set when the job is
/// handed over (a drain starts with its sandbox, which may be forked ahead of its request).
/// Only what the cap lets through is sent, so a watcher sees what the answer will hold.
#[derive(Clone, Debug, Default)]
pub struct Tap(Arc<OnceLock<(Stream, mpsc::UnboundedSender<OutputChunk>)>>);

impl Tap {
    pub fn connect(&self, stream: Stream, sender: mpsc::UnboundedSender<OutputChunk>) {
        let _ = self.0.set((stream, sender));
    }

    fn send(&self, bytes: &[u8]) {
        if let Some((stream, sender)) = self.0.get() {
            if !bytes.is_empty() {
                let chunk = OutputChunk {
                    stream: *stream,
                    bytes: bytes.to_vec(),
                };
                // A watcher that is gone no longer wants the output; the answer still has it.
                let _ = sender.send(chunk);
            }
        }
    }
}

/// When a drain is done without being told to finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// At end of file.
    Eof,
    /// As soon as a complete harness report is in (the sandbox may still hold the pipe open).
    Report,
}

/// Reads until EOF (or a complete report), keeping the first `cap` bytes and discarding the
/// rest, so a chatty child never blocks on a full pipe. When `finish` fires, it takes what is
/// already buffered in the pipe and stops: the execution is over, and processes that might
/// still hold the pipe are being killed.
pub async fn drain(
    reader: pipe::Receiver,
    cap: usize,
    mut finish: oneshot::Receiver<()>,
    completion: Completion,
    tap: Tap,
) -> Captured {
    let mut captured = Captured::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            biased;
            ready = reader.readable() => {
                if ready.is_err() {
                    return captured;
                }
            }
            _ = &mut finish => {
                take_buffered(&reader, &mut buffer, &mut captured, cap, &tap);
                return captured;
            }
        }
        match reader.try_read(&mut buffer) {
            Ok(0) => return captured,
            Ok(n) => tap.send(captured.keep(&buffer[..n], cap)),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
            Err(_) => return captured,
        }
        if completion == Completion::Report && report_complete(&captured.bytes) {
            return captured;
        }
    }
}

/// Whether a report channel holds a complete report: the harness's header line announces the
/// lengths of the frame, the files and the session state that follow it (what they mean is the
/// execute layer's).
fn report_complete(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Lengths {
        frame_bytes: usize,
        #[serde(default)]
        files_bytes: usize,
        #[serde(default)]
        state_bytes: usize,
    }
    let Some(newline) = bytes.iter().position(|&byte| byte == b'\n') else {
        return false;
    };
    serde_json::from_slice::<Lengths>(&bytes[..newline]).is_ok_and(|lengths| {
        let announced = lengths.frame_bytes + lengths.files_bytes + lengths.state_bytes;
        bytes.len() >= newline + 1 + announced
    })
}

fn take_buffered(
    reader: &pipe::Receiver,
    buffer: &mut [u8],
    captured: &mut Captured,
    cap: usize,
    tap: &Tap,
) {
    while let Ok(n) = reader.try_read(buffer) {
        if n == 0 {
            break;
        }
        tap.send(captured.keep(&buffer[..n], cap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_whole_once_every_announced_byte_is_in() {
        let header = r#"{"frame_bytes": 5, "files_bytes": 2, "exit_code": 0}"#;
        let whole = format!("{header}\nabcdeXY");
        assert!(report_complete(whole.as_bytes()));
        assert!(!report_complete(&whole.as_bytes()[..whole.len() - 1]));
        assert!(!report_complete(br#"{"frame_bytes": 5}"#), "no newline yet");
        assert!(!report_complete(b"garbage\nabc"));
    }
    use std::io::Write;

    fn pipe_with(data: &[u8]) -> (pipe::Receiver, std::fs::File) {
        let pipe = ChildPipe::new().expect("pipe");
        let mut writer = std::fs::File::from(pipe.write);
        writer.write_all(data).expect("write");
        (pipe.read, writer)
    }

    #[tokio::test]
    async fn keeps_the_cap_and_flags_the_rest() {
        let (reader, writer) = pipe_with(&[b'x'; 50_000]);
        drop(writer);
        let (_finish, finishing) = oneshot::channel();
        let captured = drain(reader, 1000, finishing, Completion::Eof, Tap::default()).await;
        assert_eq!(captured.bytes.len(), 1000);
        assert!(captured.truncated);
    }

    #[tokio::test]
    async fn finishing_takes_what_is_buffered_without_eof() {
        let (reader, _writer_still_open) = pipe_with(b"hello");
        let (finish, finishing) = oneshot::channel();
        let task = tokio::spawn(drain(
            reader,
            1000,
            finishing,
            Completion::Eof,
            Tap::default(),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        finish.send(()).expect("drain is waiting");
        let captured = task.await.expect("drain ends");
        assert_eq!(captured.text(), "hello");
    }

    #[tokio::test]
    async fn a_complete_report_ends_the_drain_without_eof() {
        let report = b"{\"frame_bytes\": 2, \"frame_oversized\": false, \"exit_code\": null, \"signal\": null}\n{}";
        let (reader, _writer_still_open) = pipe_with(report);
        let (_finish, finishing) = oneshot::channel();
        let captured = drain(
            reader,
            1 << 20,
            finishing,
            Completion::Report,
            Tap::default(),
        )
        .await;
        assert_eq!(captured.bytes, report.to_vec());
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
