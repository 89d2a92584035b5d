//! The child-process plumbing every sandbox shares: start the harness under a [`LaunchPlan`]
//! inside a fresh cgroup, hand it its job, drain its outputs with caps, enforce the wall-clock
//! deadline, then kill whatever is left and clean up.
//!
//! Starting and running are separate steps so a pool can start sandboxes ahead of time; limits
//! that count time (the deadline) start at hand-over, in [`Started::run`]. An execution is over
//! as soon as the harness's report is complete: the service answers then, after killing the
//! sandbox, and leaves reaping and cgroup removal to a background task.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::unix::AsyncFd;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::cgroup::{CgroupReport, ExecCgroup};
use super::child_setup::ChildSetup;
use super::compat::scrub::{SharedAreas, Turn};
use super::isolation::Isolation;
use super::live;
use super::pipes::{drain, Captured, ChildPipe, Completion};
use super::watch::{Observed, Watch};
use super::{protocol, Job, Runner, SandboxError, SandboxKind};
use crate::limits::Limits;

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

/// Everything observed of one execution, before it is interpreted.
#[derive(Debug)]
pub struct Execution {
    pub kind: SandboxKind,
    /// The layers that were in force.
    pub isolation: Isolation,
    /// How the sandbox's first process (nsjail, or the harness in compat) ended, when the
    /// execution ended with it rather than with a complete report.
    pub exit: Option<ExitStatus>,
    /// The service killed the sandbox at the wall-clock deadline.
    pub timed_out: bool,
    /// The service killed the sandbox because it is shutting down.
    pub aborted: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    /// The harness's report (fd 3).
    pub channel: Captured,
    /// The isolation tool's own log (fd 4), for the service's logs only.
    pub tool_log: Captured,
    pub wall: Duration,
    pub cgroup: Option<CgroupReport>,
    /// What the service's own watch saw, and whether it ended the execution for a limit.
    pub watched: Observed,
    /// The sandbox was started ahead of time by the pool.
    pub warm_start: bool,
}

/// A stream being drained, and the signal that tells it to stop waiting for EOF.
#[derive(Debug)]
struct Drain {
    task: JoinHandle<Captured>,
    finish: oneshot::Sender<()>,
}

impl Drain {
    fn spawn(pipe: ChildPipe, cap: usize, completion: Completion) -> (Self, OwnedFd) {
        let (finish, finishing) = oneshot::channel();
        let task = tokio::spawn(drain(pipe.read, cap, finishing, completion));
        (Self { task, finish }, pipe.write)
    }

    /// What was read, including whatever is still buffered in the pipe right now.
    async fn collect(self) -> Captured {
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

/// A sandbox that is running and waiting for its job on stdin.
#[derive(Debug)]
pub struct Started {
    kind: SandboxKind,
    isolation: Isolation,
    leader: Leader,
    streams: Streams,
    cgroup: Option<ExecCgroup>,
    /// The session (and process group) the sandbox leads.
    session: i32,
    keep_alive: KeepAlive,
    /// Where executions take turns (see `LaunchPlan::turn_taker`).
    turn_taker: Option<Arc<SharedAreas>>,
    abort: live::Abort,
    /// Kills the sandbox if it is dropped without running (a spare at shutdown).
    unrun: Unrun,
}

/// Armed until the job is handed over: a sandbox dropped before that is killed, whole group.
#[derive(Debug)]
struct Unrun {
    session: i32,
    armed: bool,
}

impl Drop for Unrun {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.session);
        }
    }
}

/// The service's ends of a sandbox's stdio, report channel and tool log.
#[derive(Debug)]
pub(super) struct Streams {
    stdin: Option<pipe::Sender>,
    stdout: Drain,
    stderr: Drain,
    channel: Drain,
    tool_log: Drain,
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
    pub(super) fn open(limits: &Limits) -> Result<(Self, SandboxEnds), SandboxError> {
        let pipe = || ChildPipe::new().map_err(SandboxError::Pipe);
        let (stdout, stdout_end) = Drain::spawn(pipe()?, limits.stdout.as_usize(), Completion::Eof);
        let (stderr, stderr_end) = Drain::spawn(pipe()?, limits.stderr.as_usize(), Completion::Eof);
        let channel_cap = channel_cap(limits);
        let (channel, channel_end) = Drain::spawn(pipe()?, channel_cap, Completion::Report);
        let (tool_log, tool_log_end) = Drain::spawn(pipe()?, TOOL_LOG_CAP, Completion::Eof);
        let (stdin, stdin_end) = super::pipes::job_pipe().map_err(SandboxError::Pipe)?;
        let streams = Self {
            stdin: Some(stdin),
            stdout,
            stderr,
            channel,
            tool_log,
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

/// The sandbox's first process, which the service watches and kills.
#[derive(Debug)]
enum Leader {
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
    /// Resolves when the leader has exited: with its status when the service is its parent.
    async fn wait(&mut self) -> Option<ExitStatus> {
        match self {
            Self::Spawned { child, .. } => child.wait().await.ok(),
            Self::Forked(pidfd) => {
                // A pidfd turns readable when its process exits, and stays so.
                let _ = pidfd.readable().await;
                None
            }
        }
    }

    fn start_kill(&mut self) {
        match self {
            Self::Spawned { child, .. } => {
                let _ = child.start_kill();
            }
            Self::Forked(pidfd) => kill_through_pidfd(pidfd.get_ref()),
        }
    }
}

/// What lives exactly as long as the sandbox (scratch space, a held uid, the signal guard).
struct KeepAlive(#[allow(dead_code)] Vec<Box<dyn Send + Sync>>);

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive")
    }
}

/// Starts a sandbox with `limits`; the job follows later with [`Started::run`].
pub fn start(
    runner: &Runner,
    limits: &Limits,
    preload: &[String],
) -> Result<Started, SandboxError> {
    let sandbox = &*runner.sandbox;
    let plan = sandbox.plan(limits, preload)?;
    let cgroup = runner
        .cgroups
        .as_ref()
        .map(|root| root.create(limits))
        .transpose()?;
    let (streams, ends) = Streams::open(limits)?;
    let cgroup_procs = cgroup
        .as_ref()
        .map(ExecCgroup::procs_files)
        .unwrap_or_default();
    let io = LeaderIo {
        stdin: Stdio::from(ends.stdin),
        stdout: Stdio::from(ends.stdout),
        stderr: Stdio::from(ends.stderr),
        channel_fd: ends.channel.as_raw_fd(),
        tool_log_fd: ends.tool_log.as_raw_fd(),
        cgroup_procs,
    };
    let (child, registration) =
        spawn_leader(&plan.program, &plan.args, &plan.env, plan.hardening, io)?;
    let session = child.id().map_or(0, |pid| pid as i32);
    let mut keep_alive: Vec<Box<dyn Send + Sync>> = plan.keep_alive.into_iter().collect();
    if let Some(after_spawn) = plan.after_spawn {
        match after_spawn(session) {
            Ok(guard) => keep_alive.push(guard),
            Err(error) => {
                kill_group(session);
                return Err(SandboxError::Failed(format!(
                    "the sandbox started but its setup failed: {error}"
                )));
            }
        }
    }
    // The write ends now live in the child (the Command, gone with spawn_leader, held the stdio
    // ones); ours must close or EOF would never come.
    drop((ends.channel, ends.tool_log));
    Ok(Started {
        kind: sandbox.kind(),
        isolation: sandbox.isolation(),
        session,
        leader: Leader::Spawned {
            child,
            _registration: registration,
        },
        streams,
        cgroup,
        keep_alive: KeepAlive(keep_alive),
        turn_taker: plan.turn_taker,
        abort: runner.abort.clone(),
        unrun: Unrun {
            session,
            armed: true,
        },
    })
}

/// What a sandbox's first process starts with besides its program: its stdio, the channels that
/// go on fds 3 and 4, and the cgroup it joins.
pub(super) struct LeaderIo {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    pub channel_fd: std::os::fd::RawFd,
    pub tool_log_fd: std::os::fd::RawFd,
    pub cgroup_procs: Vec<std::ffi::CString>,
}

/// Spawns a sandbox's first process (a cold sandbox's, or a template): a cleared environment,
/// a session of its own, its cgroup, the channels on fds 3 and 4, then `hardening`; recorded
/// as live so the orphan reaper leaves it to tokio.
pub(super) fn spawn_leader(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    hardening: Option<super::Hardening>,
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

/// What a template's fork hands over once its child is isolated (`sandbox::template`).
pub(super) struct ForkedSandbox {
    pub kind: SandboxKind,
    pub isolation: Isolation,
    pub pidfd: OwnedFd,
    /// The child's pid here, which is its session and process group.
    pub pid: i32,
    pub streams: Streams,
    pub cgroup: Option<ExecCgroup>,
    pub keep_alive: Vec<Box<dyn Send + Sync>>,
    pub turn_taker: Option<Arc<SharedAreas>>,
    pub abort: live::Abort,
}

impl Started {
    pub(super) fn forked(forked: ForkedSandbox) -> Result<Self, SandboxError> {
        // SAFETY: the AsyncFd owns the pidfd, which stays open and the same until dropped.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(forked.pidfd, tokio::io::Interest::READABLE) }
                .map_err(|error| SandboxError::Failed(format!("watching the fork: {error}")))?;
        Ok(Self {
            kind: forked.kind,
            isolation: forked.isolation,
            leader: Leader::Forked(pidfd),
            streams: forked.streams,
            cgroup: forked.cgroup,
            session: forked.pid,
            keep_alive: KeepAlive(forked.keep_alive),
            turn_taker: forked.turn_taker,
            abort: forked.abort,
            unrun: Unrun {
                session: forked.pid,
                armed: true,
            },
        })
    }
}

/// How the wait for an execution ended.
enum Ended {
    Reported(Captured),
    Exited(Option<ExitStatus>),
    TimedOut,
    /// The watch saw a whole-sandbox limit passed (see `Execution::watched`).
    OverLimit,
    /// The service is shutting down and its grace period is over.
    Aborted,
}

impl Started {
    pub fn kind(&self) -> SandboxKind {
        self.kind
    }

    /// Whether the sandbox is still waiting (a spare may have died while it waited).
    pub fn is_alive(&mut self) -> bool {
        match &mut self.leader {
            Leader::Spawned { child, .. } => matches!(child.try_wait(), Ok(None)),
            Leader::Forked(pidfd) => {
                let mut poll = libc::pollfd {
                    fd: pidfd.get_ref().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: poll on one valid pollfd, without waiting; readable means exited.
                unsafe { libc::poll(&mut poll, 1, 0) == 0 }
            }
        }
    }

    /// Keeps `token` for as long as the execution lasts, its teardown included (a lease on
    /// the template it was forked from).
    pub fn hold(&mut self, token: Box<dyn Send + Sync>) {
        self.keep_alive.0.push(token);
    }

    /// Hands over the job and sees the execution through to the end.
    pub async fn run(mut self, job: &Job) -> Execution {
        // From here on, the execution's own teardown ends the sandbox.
        self.unrun.armed = false;
        let running = live::Running::new(self.session);
        // Where executions take turns, the job waits for the previous one's cleanup.
        let turn = match &self.turn_taker {
            Some(areas) => Some(areas.take_turn().await),
            None => None,
        };
        // A pooled sandbox used CPU before its job (starting Python, preloading pandas); the
        // execution's CPU time is what it uses from here on.
        let cpu_before_job = self.cgroup.as_ref().and_then(ExecCgroup::cpu);
        let mut watch = Watch::new(self.session, &job.limits, self.cgroup.as_ref());
        let started_at = Instant::now();
        let deadline = tokio::time::Instant::from_std(started_at + job.limits.wall);
        let feeder = self.feed(job);
        let ended = tokio::select! {
            report = &mut self.streams.channel.task => Ended::Reported(report.unwrap_or_default()),
            status = self.leader.wait() => Ended::Exited(status),
            () = tokio::time::sleep_until(deadline) => Ended::TimedOut,
            _ = watch.tripped(self.cgroup.as_ref()) => Ended::OverLimit,
            () = self.abort.aborted() => Ended::Aborted,
        };
        let wall = started_at.elapsed();
        feeder.abort();
        // The execution is over: whatever the script left behind dies with it, now.
        self.kill();
        let cgroup = self.cgroup.as_ref().map(|cgroup| {
            let mut report = cgroup.report();
            report.cpu = report
                .cpu
                .map(|total| total.saturating_sub(cpu_before_job.unwrap_or_default()));
            report
        });
        let aborted = matches!(ended, Ended::Aborted);
        let (exit, timed_out, channel) = match ended {
            Ended::Reported(report) => (None, false, report),
            Ended::Exited(status) => (status, false, self.streams.channel.collect().await),
            Ended::TimedOut => (None, true, self.streams.channel.collect().await),
            Ended::OverLimit | Ended::Aborted => {
                (None, false, self.streams.channel.collect().await)
            }
        };
        let execution = Execution {
            kind: self.kind,
            isolation: self.isolation,
            exit,
            timed_out,
            aborted,
            stdout: self.streams.stdout.collect().await,
            stderr: self.streams.stderr.collect().await,
            channel,
            tool_log: self.streams.tool_log.collect().await,
            wall,
            cgroup,
            watched: watch.observed(),
            warm_start: false,
        };
        tokio::spawn(teardown(Remains {
            leader: self.leader,
            cgroup: self.cgroup,
            session: self.session,
            keep_alive: self.keep_alive,
            turn,
            running,
        }));
        execution
    }

    /// Writes the job to the harness's stdin from a task of its own, so a job larger than the
    /// pipe buffer never holds up the deadline.
    fn feed(&mut self, job: &Job) -> JoinHandle<()> {
        let payload = json!({
            "script": job.script,
            "args": job.args,
            "files": job.files,
            "mode": job.mode.as_str(),
            "figures": job.save_figures,
        })
        .to_string();
        let stdin = self.streams.stdin.take();
        tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                // A sandbox that dies early closes its stdin; that shows up in its report.
                let _ = stdin.write_all(payload.as_bytes()).await;
            }
        })
    }

    fn kill(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        kill_group(self.session);
        self.leader.start_kill();
    }
}

/// What is left of a sandbox once its execution is over.
struct Remains {
    /// Dropped last, once waited for (its registration with it).
    leader: Leader,
    cgroup: Option<ExecCgroup>,
    session: i32,
    keep_alive: KeepAlive,
    turn: Option<Turn>,
    running: live::Running,
}

/// After the answer: reap the killed sandbox, see its process group empty, then remove its
/// cgroup, scratch space and hold on its uid, and end its turn (which empties the shared
/// places), and forget its pid, now that tokio has waited for it.
async fn teardown(mut remains: Remains) {
    let _ = remains.leader.wait().await;
    if let Some(cgroup) = remains.cgroup.take() {
        cgroup.destroy().await;
    }
    let _ = tokio::task::spawn_blocking(move || {
        wait_until_group_is_gone(remains.session);
        // In this order: scratch space and uid go first, then the turn (whose end empties the
        // shared places for the next execution), and the pid last.
        drop(remains.keep_alive);
        drop(remains.turn);
        drop(remains.running);
        drop(remains.leader);
    })
    .await;
}

/// How long killed processes get to disappear before teardown goes on regardless.
const GROUP_EXIT_WAIT: Duration = Duration::from_secs(5);

/// Waits until no live process is left in the sandbox's process group (killing again, in case
/// one was being forked when the first kill came), so that nothing of it outlives teardown.
fn wait_until_group_is_gone(group: i32) {
    if group <= 0 {
        return;
    }
    let deadline = Instant::now() + GROUP_EXIT_WAIT;
    while crate::procfs::group_has_live_members(group) {
        if Instant::now() > deadline {
            tracing::warn!(
                group,
                "processes of a sandbox survived their execution's kill"
            );
            return;
        }
        kill_group(group);
        std::thread::sleep(Duration::from_millis(2));
    }
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

fn kill_group(group: i32) {
    if group > 0 {
        // SAFETY: kill(2) on the process group a sandbox leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// The most the harness's report can be: the result, the output files in base64, and their
/// framing. A larger channel is cut, and its report then never completes.
fn channel_cap(limits: &Limits) -> usize {
    let files = limits.output_bytes.as_usize().div_ceil(3) * 4;
    let entries = limits.output_files as usize + SKIPPED_LISTED;
    limits.result.as_usize() + files + entries * PER_FILE_OVERHEAD + CHANNEL_OVERHEAD
}

/// Whether a report channel holds a complete report (header line plus the frame it announces).
pub(super) fn report_complete(bytes: &[u8]) -> bool {
    protocol::report_len(bytes).is_some_and(|total| bytes.len() >= total)
}
