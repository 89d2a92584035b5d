//! The child-process plumbing every sandbox shares: start the harness under a [`LaunchPlan`]
//! inside a fresh cgroup, hand it its job, drain its outputs with caps, enforce the wall-clock
//! deadline, then kill whatever is left and clean up.
//!
//! Starting and running are separate steps so a pool can start sandboxes ahead of time; limits
//! that count time (the deadline) start at hand-over, in [`Started::run`].

use std::os::fd::AsRawFd;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::task::JoinHandle;

use super::cgroup::{CgroupReport, CgroupRoot, ExecCgroup};
use super::pipes::{read_capped, Captured, ChildPipe};
use super::{Hardening, Job, Sandbox, SandboxError, SandboxKind};
use crate::limits::Limits;

/// The harness's report is at most the result plus a header and framing.
const CHANNEL_OVERHEAD: usize = 64 * 1024;
/// nsjail's own log is kept for diagnostics only.
const TOOL_LOG_CAP: usize = 16 * 1024;
/// After the sandbox's first process ends, how long its pipes may take to close.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Everything observed of one execution, before it is interpreted.
#[derive(Debug)]
pub struct Execution {
    pub kind: SandboxKind,
    /// How the sandbox's first process (nsjail, or the harness in compat) ended.
    pub exit: Option<ExitStatus>,
    /// The service killed the sandbox at the wall-clock deadline.
    pub timed_out: bool,
    pub stdout: Captured,
    pub stderr: Captured,
    /// The harness's report (fd 3).
    pub channel: Captured,
    /// The isolation tool's own log (fd 4), for the service's logs only.
    pub tool_log: Captured,
    pub wall: Duration,
    pub cgroup: Option<CgroupReport>,
    /// The sandbox was started ahead of time by the pool.
    pub warm_start: bool,
}

/// A sandbox that is running and waiting for its job on stdin.
#[derive(Debug)]
pub struct Started {
    kind: SandboxKind,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: JoinHandle<Captured>,
    stderr: JoinHandle<Captured>,
    channel: JoinHandle<Captured>,
    tool_log: JoinHandle<Captured>,
    cgroup: Option<ExecCgroup>,
    /// The session (and process group) the sandbox leads.
    session: i32,
    keep_alive: KeepAlive,
}

struct KeepAlive(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl std::fmt::Debug for KeepAlive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeepAlive")
    }
}

/// Starts a sandbox with `limits`; the job follows later with [`Started::run`].
pub fn start(
    sandbox: &dyn Sandbox,
    cgroups: Option<&CgroupRoot>,
    limits: &Limits,
    preload: &[String],
) -> Result<Started, SandboxError> {
    let plan = sandbox.plan(limits, preload)?;
    let cgroup = cgroups.map(|root| root.create(limits)).transpose()?;
    let channel = ChildPipe::new().map_err(SandboxError::Pipe)?;
    let tool_log = ChildPipe::new().map_err(SandboxError::Pipe)?;

    let mut command = Command::new(&plan.program);
    command
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let setup = ChildSetup {
        cgroup_procs: cgroup
            .as_ref()
            .map(ExecCgroup::procs_files)
            .unwrap_or_default(),
        channel_fd: channel.write.as_raw_fd(),
        tool_log_fd: tool_log.write.as_raw_fd(),
        hardening: plan.hardening,
    };
    // SAFETY: ChildSetup::run only makes async-signal-safe calls on pre-built data.
    unsafe { command.pre_exec(setup.into_closure()) };
    let mut child = command.spawn().map_err(|source| SandboxError::Spawn {
        program: plan.program.clone(),
        source,
    })?;
    // The write ends now live in the child; ours must close or EOF would never come.
    drop((channel.write, tool_log.write));

    let no_pipe = || SandboxError::Failed("the child has no output pipe".into());
    let stdout = child.stdout.take().ok_or_else(no_pipe)?;
    let stderr = child.stderr.take().ok_or_else(no_pipe)?;
    Ok(Started {
        kind: sandbox.kind(),
        session: child.id().map_or(0, |pid| pid as i32),
        stdin: child.stdin.take(),
        stdout: tokio::spawn(read_capped(stdout, limits.stdout.as_usize())),
        stderr: tokio::spawn(read_capped(stderr, limits.stderr.as_usize())),
        channel: tokio::spawn(read_capped(
            channel.read,
            limits.result.as_usize() + CHANNEL_OVERHEAD,
        )),
        tool_log: tokio::spawn(read_capped(tool_log.read, TOOL_LOG_CAP)),
        child,
        cgroup,
        keep_alive: KeepAlive(plan.keep_alive),
    })
}

impl Started {
    pub fn kind(&self) -> SandboxKind {
        self.kind
    }

    /// Whether the sandbox is still waiting (a pooled one may have died while idle).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Ends a sandbox that will not be used (an expired or surplus pooled one).
    pub async fn discard(mut self) {
        self.kill();
        let _ = self.child.wait().await;
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.destroy().await;
        }
    }

    /// Hands over the job and sees the execution through to the end.
    pub async fn run(mut self, job: &Job) -> Execution {
        let started_at = Instant::now();
        let deadline = tokio::time::Instant::from_std(started_at + job.limits.wall);
        let payload = json!({
            "script": job.script,
            "args": job.args,
            "max_result_bytes": job.limits.result.as_bytes(),
        })
        .to_string();
        let stdin = self.stdin.take();
        // A separate task: a job larger than the pipe buffer must not hold up the deadline.
        let feeder = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                // A sandbox that dies early closes its stdin; that shows up in its report.
                let _ = stdin.write_all(payload.as_bytes()).await;
            }
        });
        let (exit, timed_out) = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => (status.ok(), false),
            Err(_) => {
                self.kill();
                (self.child.wait().await.ok(), true)
            }
        };
        let wall = started_at.elapsed();
        feeder.abort();
        // Whatever the script left behind dies with its execution.
        self.kill();
        self.finish(exit, timed_out, wall).await
    }

    fn kill(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill_all();
        }
        if self.session > 0 {
            // SAFETY: kill(2) on the process group this sandbox leads.
            unsafe { libc::kill(-self.session, libc::SIGKILL) };
        }
        let _ = self.child.start_kill();
    }

    async fn finish(self, exit: Option<ExitStatus>, timed_out: bool, wall: Duration) -> Execution {
        let stdout = drained(self.stdout).await;
        let stderr = drained(self.stderr).await;
        let channel = drained(self.channel).await;
        let tool_log = drained(self.tool_log).await;
        let cgroup = self.cgroup.map(|cgroup| {
            let report = cgroup.report();
            // Everything in it was killed already; removing the directories need not hold up
            // the response.
            tokio::spawn(cgroup.destroy());
            report
        });
        drop(self.keep_alive);
        Execution {
            kind: self.kind,
            exit,
            timed_out,
            stdout,
            stderr,
            channel,
            tool_log,
            wall,
            cgroup,
            warm_start: false,
        }
    }
}

/// The capture of a drain task, or what it has when the pipe is held open past the grace
/// period by a process that escaped every kill (then the stream is marked truncated).
async fn drained(task: JoinHandle<Captured>) -> Captured {
    let abort = task.abort_handle();
    match tokio::time::timeout(DRAIN_GRACE, task).await {
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

/// What the child does between fork and exec, before the sandbox's own hardening.
struct ChildSetup {
    cgroup_procs: Vec<std::ffi::CString>,
    channel_fd: i32,
    tool_log_fd: i32,
    hardening: Option<Hardening>,
}

/// The fds the harness and the isolation tool find their channels on.
const CHANNEL_FD: i32 = 3;
const TOOL_LOG_FD: i32 = 4;

impl ChildSetup {
    fn into_closure(mut self) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        move || self.run()
    }

    fn run(&mut self) -> std::io::Result<()> {
        // SAFETY: only async-signal-safe libc calls on data prepared before fork.
        unsafe {
            // A session of its own: one signal reaches the whole sandbox, and it has no terminal.
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for procs in &self.cgroup_procs {
                join_cgroup(procs)?;
            }
            // Park both ends above the targets first: either may already sit on fd 3 or 4.
            let channel = check(libc::fcntl(self.channel_fd, libc::F_DUPFD_CLOEXEC, 10))?;
            let tool_log = check(libc::fcntl(self.tool_log_fd, libc::F_DUPFD_CLOEXEC, 10))?;
            // dup2 clears close-on-exec on the target, so exactly fds 3 and 4 are inherited.
            check(libc::dup2(channel, CHANNEL_FD))?;
            check(libc::dup2(tool_log, TOOL_LOG_FD))?;
            libc::close(channel);
            libc::close(tool_log);
        }
        match &mut self.hardening {
            Some(harden) => harden(),
            None => Ok(()),
        }
    }
}

/// Moves the calling process into a cgroup by writing "0" to its `cgroup.procs`.
unsafe fn join_cgroup(procs: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: a valid NUL-terminated path and a static buffer.
    unsafe {
        let fd = check(libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC))?;
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        libc::close(fd);
        if written != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn check(result: i32) -> std::io::Result<i32> {
    if result < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(result)
    }
}
