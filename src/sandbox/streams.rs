//! The service's ends of one sandbox's stdio, report channel and tool log, each drained from a
//! task of its own with a cap, and the sandbox's ends for the process that leads it.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::pipes::{drain, Captured, ChildPipe, Completion, Tap};
use super::SandboxError;
use crate::limits::{ByteSize, Limits};

/// The harness's report is at most the result and the output files plus a header and framing.
const CHANNEL_OVERHEAD: usize = 64 * 1024;
/// What each output file (or skipped entry) adds to the report besides its content: its path
/// (at most 16 components of 255 bytes, layer/harness_files.py) and its JSON.
const PER_FILE_OVERHEAD: usize = 5 * 1024;
/// Skipped entries the harness names at most (MAX_SKIPPED_LISTED there).
const SKIPPED_LISTED: usize = 32;
/// nsjail's own log is kept for diagnostics only.
const TOOL_LOG_CAP: usize = 16 * 1024;
/// How long a drain may take to hand over what it has once told to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// A stream being drained, and the signal that tells it to stop waiting for EOF.
#[derive(Debug)]
pub(super) struct Drain {
    pub task: JoinHandle<Captured>,
    finish: oneshot::Sender<()>,
}

impl Drain {
    fn spawn(pipe: ChildPipe, cap: usize, completion: Completion, tap: Tap) -> (Self, OwnedFd) {
        let (finish, finishing) = oneshot::channel();
        let task = tokio::spawn(drain(pipe.read, cap, finishing, completion, tap));
        (Self { task, finish }, pipe.write)
    }

    /// What was read, including whatever is still buffered in the pipe right now.
    pub async fn collect(self) -> Captured {
        let _ = self.finish.send(());
        let abort = self.task.abort_handle();
        match tokio::time::timeout(DRAIN_GRACE, self.task).await {
            Ok(Ok(captured)) => captured,
            _ => {
                abort.abort();
                Captured {
                    bytes: Vec::new(),
                    truncated: true,
                }
            }
        }
    }
}

/// The service's ends of a sandbox's stdio, report channel and tool log.
#[derive(Debug)]
pub(super) struct Streams {
    pub stdin: Option<pipe::Sender>,
    pub stdout: Drain,
    pub stderr: Drain,
    pub channel: Drain,
    pub tool_log: Drain,
    /// Where stdout's and stderr's drains send what they keep, once the execution is watched.
    pub taps: [Tap; 2],
}

/// The sandbox's ends of the same, for the process that leads it.
#[derive(Debug)]
pub(super) struct SandboxEnds {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub channel: OwnedFd,
    pub tool_log: OwnedFd,
}

impl Streams {
    /// Pipes for one execution with `limits`, their drains already running.
    pub fn open(limits: &Limits) -> Result<(Self, SandboxEnds), SandboxError> {
        let pipe = || ChildPipe::new().map_err(SandboxError::Pipe);
        let taps = [Tap::default(), Tap::default()];
        let output = |cap: ByteSize, tap: &Tap| -> Result<_, SandboxError> {
            Ok(Drain::spawn(
                pipe()?,
                cap.as_usize(),
                Completion::Eof,
                tap.clone(),
            ))
        };
        let (stdout, stdout_end) = output(limits.stdout, &taps[0])?;
        let (stderr, stderr_end) = output(limits.stderr, &taps[1])?;
        let channel_cap = channel_cap(limits);
        let (channel, channel_end) =
            Drain::spawn(pipe()?, channel_cap, Completion::Report, Tap::default());
        let (tool_log, tool_log_end) =
            Drain::spawn(pipe()?, TOOL_LOG_CAP, Completion::Eof, Tap::default());
        let (stdin, stdin_end) = super::pipes::job_pipe().map_err(SandboxError::Pipe)?;
        let streams = Self {
            stdin: Some(stdin),
            stdout,
            stderr,
            channel,
            tool_log,
            taps,
        };
        let ends = SandboxEnds {
            stdin: stdin_end,
            stdout: stdout_end,
            stderr: stderr_end,
            channel: channel_end,
            tool_log: tool_log_end,
        };
        Ok((streams, ends))
    }
}

/// The most the harness's report can be: the result, the output files in base64, a session's
/// state, and their framing. A larger channel is cut, and its report then never completes.
fn channel_cap(limits: &Limits) -> usize {
    let files = limits.output_bytes.as_usize().div_ceil(3) * 4;
    let entries = limits.output_files as usize + SKIPPED_LISTED;
    let state = limits.session_state.as_usize();
    limits.result.as_usize() + files + entries * PER_FILE_OVERHEAD + state + CHANNEL_OVERHEAD
}
