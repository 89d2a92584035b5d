//! Templates: one long-lived harness per preload set that imports its modules once and then
//! forks a child for every execution, so no execution pays for starting Python or importing
//! pandas, and children share the template's pages until they write them.
//!
//! A template is started under the sandbox like any harness (nsjail, or compat's direct
//! start) with `--template`, holds a control socket on fd 3, never reads a job and never runs a
//! script. For each execution the service sends it one message (a header for the harness and
//! the execution's isolation spec) with the execution's pipes and a status socket
//! ([`control`]). The template forks; the child takes a session of its own, sends its pidfd
//! back, waits while the service moves it into the execution's cgroup, then runs the isolation
//! steps of `pyexec_isolate` (the same code compat runs between fork and exec) and says
//! "isolated". Only then does the service hand over the job, through the child's stdin.
//! From there on it is an execution like any other ([`Started`]).
//!
//! This is the mechanism only; when templates start, grow, retire and are replaced is the
//! execute layer's (`execute::templates`).

mod control;

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use pyexec_isolate::fdpass;
use serde_json::json;
use thiserror::Error;
use tokio::process::Child;

use super::execution::Started;
use super::leader::{kill_through_pidfd, spawn_leader, Leader, LeaderIo};
use super::pipes::{drain, seqpacket_pair, ChildPipe, Completion, Tap};
use super::plan::harness_options;
use super::streams::Streams;
use super::teardown::Held;
use super::{compat, live, Runner, SandboxError};
use crate::limits::Limits;
use control::Socket;

/// How long a template may take to import its modules (Lambda's whole init phase is 10 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a forked child may take to report each step of its isolation.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The template's own log (nsjail's, and Python's on a crash), kept for diagnostics only.
const LOG_CAP: usize = 16 * 1024;

/// What went wrong starting a template or forking from it.
#[derive(Debug, Error)]
pub enum TemplateError {
    #[error("it did not become ready within {0:?}")]
    NotReady(Duration),
    #[error("it exited while starting")]
    ExitedWhileStarting,
    #[error("it said {0:?} instead of ready")]
    NotReadyMessage(String),
    #[error("{step}: {source}")]
    Io {
        step: &'static str,
        source: std::io::Error,
    },
    #[error("a fork did not isolate itself within {0:?}")]
    ForkTimedOut(Duration),
    #[error("a fork exited while isolating itself")]
    ForkExited,
    #[error("a fork said {0:?}")]
    ForkSaid(String),
}

fn io(step: &'static str) -> impl FnOnce(std::io::Error) -> TemplateError {
    move |source| TemplateError::Io { step, source }
}

/// A running template the service can fork executions from.
#[derive(Debug)]
pub struct Zygote {
    runner: Runner,
    control: Socket,
}

/// The template's process, for whoever watches it.
#[derive(Debug)]
pub struct ZygoteProcess {
    child: Child,
    /// Taken when the template's exit is first seen.
    log: Option<tokio::task::JoinHandle<super::pipes::Captured>>,
    _registration: live::Registration,
}

/// Starts a template importing `preload`; it is usable once [`Zygote::ready`] returns.
pub(super) fn spawn(
    runner: Runner,
    limits: &Limits,
    preload: &[String],
) -> Result<(Zygote, ZygoteProcess), SandboxError> {
    let plan = runner.sandbox.template_plan(limits, preload)?;
    let (service_end, template_end) = seqpacket_pair().map_err(SandboxError::Pipe)?;
    let log = ChildPipe::new().map_err(SandboxError::Pipe)?;
    let stderr = log.write.try_clone().map_err(SandboxError::Pipe)?;
    let io = LeaderIo {
        stdin: Stdio::null(),
        stdout: Stdio::null(),
        stderr: Stdio::from(stderr),
        channel_fd: template_end.as_raw_fd(),
        tool_log_fd: log.write.as_raw_fd(),
        cgroup_procs: Vec::new(),
        first_for_oom: false,
    };
    let (child, registration) =
        spawn_leader(&plan.program, &plan.args, &plan.env, plan.hardening, io)?;
    drop((template_end, log.write));
    let (_finish, finishing) = tokio::sync::oneshot::channel();
    let log_task = tokio::spawn(async move {
        let _keep_open = _finish;
        drain(
            log.read,
            LOG_CAP,
            finishing,
            Completion::Eof,
            Tap::default(),
        )
        .await
    });
    let template = Zygote {
        runner,
        control: Socket::new(service_end).map_err(SandboxError::Pipe)?,
    };
    let process = ZygoteProcess {
        child,
        log: Some(log_task),
        _registration: registration,
    };
    Ok((template, process))
}

impl ZygoteProcess {
    /// Waits for the template to exit, and says how, with what it logged.
    pub async fn exited(&mut self) -> (Option<ExitStatus>, String) {
        let status = self.child.wait().await.ok();
        let log = match self.log.take() {
            Some(log) => match tokio::time::timeout(Duration::from_secs(1), log).await {
                Ok(Ok(captured)) => captured.text(),
                _ => String::new(),
            },
            None => String::new(),
        };
        (status, log)
    }

    /// Ends the template (its executions in flight end with it under nsjail, whose jail it is
    /// the first process of; compat's go on, orphaned to the service).
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Zygote {
    /// Resolves once the template has imported its modules and waits for requests.
    pub async fn ready(&self) -> Result<(), SandboxError> {
        Ok(self.imports_done().await?)
    }

    /// How long [`Zygote::ready`] waits at most.
    pub const READY_TIMEOUT: Duration = READY_TIMEOUT;

    async fn imports_done(&self) -> Result<(), TemplateError> {
        let message = tokio::time::timeout(READY_TIMEOUT, self.control.receive())
            .await
            .map_err(|_| TemplateError::NotReady(READY_TIMEOUT))?
            .map_err(io("reading its control socket"))?;
        match message.payload.as_slice() {
            b"ready" => Ok(()),
            b"" => Err(TemplateError::ExitedWhileStarting),
            other => Err(TemplateError::NotReadyMessage(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    /// Resolves when the template's end of the control socket closes (it exited).
    pub async fn closed(&self) {
        loop {
            match self.control.receive().await {
                Ok(message) if !message.payload.is_empty() => continue,
                _ => return,
            }
        }
    }

    /// Forks an execution with `limits`, isolated and waiting for its job.
    pub async fn fork(&self, limits: &Limits) -> Result<Started, SandboxError> {
        let plan = self.runner.sandbox.fork_plan(limits)?;
        let (streams, ends) = Streams::open(limits)?;
        let (status_service, status_child) = seqpacket_pair().map_err(SandboxError::Pipe)?;
        let options: Vec<String> = harness_options(limits, &[])
            .into_iter()
            .map(|option| option.to_string_lossy().into_owned())
            .collect();
        let env: serde_json::Map<String, serde_json::Value> = plan
            .env
            .iter()
            .map(|(key, value)| (key.clone(), value.clone().into()))
            .collect();
        let header = json!({ "options": options, "env": env });
        let mut message = header.to_string().into_bytes();
        message.push(b'\n');
        message.extend(plan.spec.encode());
        let mut fds: Vec<OwnedFd> = vec![
            ends.stdin,
            ends.stdout,
            ends.stderr,
            ends.channel,
            status_child,
        ];
        fds.extend(plan.landlock);
        self.control
            .send(&message, &fds)
            .await
            .map_err(io("sending a fork request"))?;
        // Ours close now: the child holds the only write ends, so EOF comes when it is done.
        drop((fds, ends.tool_log));
        let status = Socket::new(status_service).map_err(io("watching a fork's status"))?;
        let requested = std::time::Instant::now();
        let child = Handshake::new(status).await?;
        first_for_oom(child.pid);
        let forked_us = requested.elapsed().as_micros() as u64;
        let mut handshake = HandshakeGuard(Some(child));
        let child = handshake.0.as_mut().expect("set above");
        let cgroups = self.runner.cgroups.as_ref();
        let cgroup = cgroups.map(|root| root.create(limits)).transpose()?;
        if let Some(cgroup) = &cgroup {
            cgroup.adopt(child.pid)?;
        }
        let adopted_us = requested.elapsed().as_micros() as u64;
        child.go().await?;
        let mut held = Held::new(cgroup, plan.claim);
        let mut guards: Vec<Box<dyn Send + Sync>> = Vec::new();
        while let Some(listener) = child.next_listener().await? {
            let guard = compat::signals::serve(listener, child.pid)
                .map_err(io("serving a fork's signal guard"))?;
            guards.push(Box::new(guard));
        }
        let child = handshake.0.take().expect("set above");
        let isolated_us = requested.elapsed().as_micros() as u64;
        // Where a fork's time goes: the template's fork, the move into its cgroup, isolation.
        tracing::debug!(forked_us, adopted_us, isolated_us, "fork handshake");
        held.keep_alive.extend(guards);
        let leader = Leader::forked(child.pidfd)?;
        Ok(Started::new(&self.runner, leader, child.pid, streams, held))
    }
}

/// The service's side of one child's isolation.
struct Handshake {
    status: Socket,
    pidfd: OwnedFd,
    pid: i32,
}

impl Handshake {
    /// Waits for the child's pidfd.
    async fn new(status: Socket) -> Result<Self, TemplateError> {
        let message = step(&status).await?;
        let pidfd = match message.fd {
            Some(fd) if message.payload == fdpass::PID => fd,
            _ => return Err(unexpected(&message.payload)),
        };
        let pid = pid_of(&pidfd)?;
        Ok(Self { status, pidfd, pid })
    }

    async fn go(&self) -> Result<(), TemplateError> {
        self.status
            .send(fdpass::GO, &[])
            .await
            .map_err(io("telling a fork to go"))
    }

    /// The signal guard's listener, if the child sends one before it says it is isolated.
    async fn next_listener(&self) -> Result<Option<OwnedFd>, TemplateError> {
        let message = step(&self.status).await?;
        match (message.payload.as_slice(), message.fd) {
            (fdpass::ISOLATED, _) => Ok(None),
            (fdpass::LISTENER, Some(fd)) => Ok(Some(fd)),
            (payload, _) => Err(unexpected(payload)),
        }
    }
}

/// Kills the child if its isolation did not complete (the guard still holds it then).
struct HandshakeGuard(Option<Handshake>);

impl Drop for HandshakeGuard {
    fn drop(&mut self) {
        if let Some(child) = &self.0 {
            kill_through_pidfd(&child.pidfd);
        }
    }
}

async fn step(status: &Socket) -> Result<control::Message, TemplateError> {
    match tokio::time::timeout(STEP_TIMEOUT, status.receive()).await {
        Ok(message) => message.map_err(io("reading a fork's status")),
        Err(_) => Err(TemplateError::ForkTimedOut(STEP_TIMEOUT)),
    }
}

fn unexpected(payload: &[u8]) -> TemplateError {
    if payload.is_empty() {
        return TemplateError::ForkExited;
    }
    TemplateError::ForkSaid(String::from_utf8_lossy(payload).into_owned())
}

/// Makes a fork the OOM killer's first pick, from outside: as root (CAP_SYS_RESOURCE), which
/// also keeps the script from lowering it again. The child raises its own score too where it
/// can (`pyexec_isolate`); an unprivileged service could add nothing here.
fn first_for_oom(pid: i32) {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let _ = std::fs::write(format!("/proc/{pid}/oom_score_adj"), "1000");
    }
}

/// The pid, in the service's PID namespace, of the process a pidfd refers to.
fn pid_of(pidfd: &OwnedFd) -> Result<i32, TemplateError> {
    let path = format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd());
    let info = std::fs::read_to_string(path).map_err(io("reading a fork's pidfd"))?;
    info.lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse().ok())
        .filter(|pid: &i32| *pid > 0)
        .ok_or(TemplateError::ForkExited)
}
