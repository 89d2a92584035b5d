//! A sandbox's first process, which the service watches and kills: one it spawned itself (nsjail,
//! compat's harness, a template), or an execution a template forked, known by its pidfd.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::{ExitStatus, Stdio};

use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

use super::child_setup::ChildSetup;
use super::{live, Hardening, SandboxError};

/// The sandbox's first process.
#[derive(Debug)]
pub(super) enum Leader {
    /// Started by the service (nsjail, or compat's harness): tokio waits for it. The
    /// registration is dropped after that wait, never before (see `sandbox::live`).
    Spawned {
        child: Child,
        _registration: live::Registration,
    },
    /// Forked by a template (not the service's child): watched through a pidfd.
    Forked(AsyncFd<OwnedFd>),
}

impl Leader {
    /// A fork known by its pidfd.
    pub fn forked(pidfd: OwnedFd) -> Result<Self, SandboxError> {
        // SAFETY: the AsyncFd owns the pidfd, which stays open and the same until dropped.
        unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map(Self::Forked)
            .map_err(|error| SandboxError::Failed(format!("watching the fork: {error}")))
    }

    /// Resolves when the leader has exited: with its status when the service is its parent.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        match self {
            Self::Spawned { child, .. } => child.wait().await.ok(),
            Self::Forked(pidfd) => {
                // A pidfd turns readable when its process exits, and stays so.
                let _ = pidfd.readable().await;
                None
            }
        }
    }

    /// Whether it still runs, without waiting.
    pub fn is_alive(&mut self) -> bool {
        match self {
            Self::Spawned { child, .. } => matches!(child.try_wait(), Ok(None)),
            Self::Forked(pidfd) => !pidfd_exited(pidfd.get_ref().as_raw_fd()),
        }
    }

    pub fn start_kill(&mut self) {
        match self {
            Self::Spawned { child, .. } => {
                let _ = child.start_kill();
            }
            Self::Forked(pidfd) => kill_through_pidfd(pidfd.get_ref()),
        }
    }
}

/// What a sandbox's first process starts with besides its program: its stdio, the channels that
/// go on fds 3 and 4, and the cgroup it joins.
pub(super) struct LeaderIo {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    pub channel_fd: RawFd,
    pub tool_log_fd: RawFd,
    pub cgroup_procs: Vec<std::ffi::CString>,
    /// Whether the kernel's OOM killer should pick this sandbox first (a script's; never a
    /// template).
    pub first_for_oom: bool,
}

/// Spawns a sandbox's first process (a cold sandbox's, or a template): a cleared environment,
/// a session of its own, its cgroup, the channels on fds 3 and 4, then `hardening`; recorded
/// as live so the orphan reaper leaves it to tokio.
pub(super) fn spawn_leader(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    hardening: Option<Hardening>,
    io: LeaderIo,
) -> Result<(Child, live::Registration), SandboxError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(io.stdin)
        .stdout(io.stdout)
        .stderr(io.stderr)
        .kill_on_drop(true);
    let setup = ChildSetup {
        cgroup_procs: io.cgroup_procs,
        channel_fd: io.channel_fd,
        tool_log_fd: io.tool_log_fd,
        first_for_oom: io.first_for_oom,
        hardening,
    };
    // SAFETY: ChildSetup::run only makes async-signal-safe calls on pre-built data.
    unsafe { command.pre_exec(setup.into_closure()) };
    let mut pids = live::lock();
    let child = command.spawn().map_err(|source| SandboxError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let registration = live::Registration::new(&mut pids, child.id().unwrap_or(0));
    Ok((child, registration))
}

/// Whether the process a pidfd names has exited (its pidfd is readable), without waiting.
pub(super) fn pidfd_exited(pidfd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one valid pollfd, without waiting.
    unsafe { libc::poll(&mut poll, 1, 0) != 0 }
}

/// SIGKILL through a pidfd: it can only reach the process it names, never a reused pid.
pub(super) fn kill_through_pidfd(pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on a pidfd we own, with no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// SIGKILL to a whole process group.
pub(super) fn kill_group(group: i32) {
    if group > 0 {
        // SAFETY: kill(2) on the process group a sandbox leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}
