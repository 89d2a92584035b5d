//! One execution, the same way for every kind of sandbox and however it started: a [`Started`]
//! sandbox waits for its job; [`Started::run`] hands it over, enforces the wall-clock deadline
//! and the watch's limits, kills whatever is left when it is over, and says what happened in an
//! [`Execution`]. Starting and running are separate steps so a template can fork executions ahead
//! of time; limits that count time start at hand-over. An execution is over as soon as the
//! harness's report is complete: the service answers then, and leaves reaping and cgroup removal
//! to a background task ([`super::teardown`]).

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::cgroup::ExecCgroup;
use super::compat::scrub::Unclean;
use super::leader::{kill_group, spawn_leader, Leader, LeaderIo};
use super::pipes::{Captured, OutputChunk, Stream};
use super::settling::Settling;
use super::streams::Streams;
use super::teardown::{end_turn_after_answer, remove_leftovers, teardown, Held, Remains};
use super::watch::{Observed, Tripped, Watch};
use super::{live, Isolation, Job, Runner, SandboxError, SandboxKind};
use crate::limits::Limits;

/// Everything observed of one execution, before it is interpreted.
#[derive(Debug)]
pub struct Execution {
    pub kind: SandboxKind,
    /// The layers that were in force.
    pub isolation: Isolation,
    /// Forked from a template, rather than started cold.
    pub warm_start: bool,
    pub ending: Ending,
    pub stdout: Captured,
    pub stderr: Captured,
    /// The harness's report (fd 3): a header line, the script's frame, the output files.
    pub report: Captured,
    /// The isolation tool's own log (fd 4), for the service's logs only.
    pub tool_log: Captured,
    pub wall: Duration,
    /// CPU time since hand-over, summed over the sandbox's processes (its cgroup's, or the
    /// watch's last sample), where it could be measured.
    pub cpu: Option<Duration>,
    pub peak_memory_bytes: Option<u64>,
    /// The kernel killed a process of the sandbox for memory (its cgroup's OOM counter).
    pub oom_killed: bool,
}

/// How an execution ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The harness's report came in whole.
    Reported,
    /// The sandbox's first process ended first, with its status when the service is its parent.
    Exited(Option<ExitStatus>),
    /// The service killed it at its wall-clock deadline.
    TimedOut,
    /// The service's watch saw a whole-sandbox limit passed and killed it.
    OverLimit(Tripped),
    /// The service is shutting down and its grace period is over.
    Aborted,
    /// The job was never handed over: the places executions take turns on were not clean.
    Refused,
    /// Whoever watched it went away (a streaming client that disconnected).
    Abandoned,
}

/// An execution watched while it runs: its output as the script writes it, and the watcher's
/// going away, which ends the execution (its slot is then free for others).
#[derive(Debug)]
pub struct Watcher {
    pub output: mpsc::UnboundedSender<OutputChunk>,
    /// Resolves (with an error) once the watcher dropped its sender.
    pub gone: oneshot::Receiver<()>,
}

/// A sandbox that is running and waiting for its job on stdin.
#[derive(Debug)]
pub struct Started {
    origin: Origin,
    leader: Leader,
    streams: Streams,
    /// The session (and process group) the sandbox leads.
    session: i32,
    held: Held,
    abort: live::Abort,
    /// Where the end of its turn after the answer is counted.
    settling: Settling,
    /// Kills the sandbox if it is dropped without running (a spare at shutdown).
    unrun: Unrun,
}

/// Which sandbox ran an execution, and how it started.
#[derive(Clone, Copy, Debug)]
struct Origin {
    kind: SandboxKind,
    isolation: Isolation,
    warm_start: bool,
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

/// Starts a cold sandbox with `limits`: a fresh harness under the sandbox, waiting for its job.
pub(super) fn start(runner: &Runner, limits: &Limits) -> Result<Started, SandboxError> {
    let plan = runner.sandbox.plan(limits)?;
    let cgroup = runner
        .cgroups
        .as_ref()
        .map(|root| root.create(limits))
        .transpose()?;
    let (streams, ends) = Streams::open(limits)?;
    let io = LeaderIo {
        stdin: Stdio::from(ends.stdin),
        stdout: Stdio::from(ends.stdout),
        stderr: Stdio::from(ends.stderr),
        channel_fd: std::os::fd::AsRawFd::as_raw_fd(&ends.channel),
        tool_log_fd: std::os::fd::AsRawFd::as_raw_fd(&ends.tool_log),
        cgroup_procs: cgroup
            .as_ref()
            .map(ExecCgroup::procs_files)
            .unwrap_or_default(),
        first_for_oom: true,
    };
    let (child, registration) =
        spawn_leader(&plan.program, &plan.args, &plan.env, plan.hardening, io)?;
    let session = child.id().map_or(0, |pid| pid as i32);
    let mut held = Held::new(cgroup, plan.claim);
    if let Some(after_spawn) = plan.after_spawn {
        match after_spawn(session) {
            Ok(guard) => held.keep_alive.push(guard),
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
    let leader = Leader::Spawned {
        child,
        _registration: registration,
    };
    Ok(Started::new(runner, leader, session, streams, held))
}

impl Started {
    /// A sandbox whose first process is `leader`, leading session `session`; forked from a
    /// template when the service did not spawn that process itself.
    pub(super) fn new(
        runner: &Runner,
        leader: Leader,
        session: i32,
        streams: Streams,
        held: Held,
    ) -> Self {
        Self {
            origin: Origin {
                kind: runner.sandbox.kind(),
                isolation: runner.sandbox.isolation(),
                warm_start: matches!(leader, Leader::Forked(_)),
            },
            leader,
            streams,
            session,
            held,
            abort: runner.abort.clone(),
            settling: runner.settling.clone(),
            unrun: Unrun {
                session,
                armed: true,
            },
        }
    }

    pub fn kind(&self) -> SandboxKind {
        self.origin.kind
    }

    /// Whether the sandbox is still waiting (a spare may have died while it waited).
    pub fn is_alive(&mut self) -> bool {
        self.leader.is_alive()
    }

    /// Keeps `token` for as long as the execution lasts, its teardown included (a lease on
    /// the template it was forked from).
    pub fn hold(&mut self, token: Box<dyn Send + Sync>) {
        self.held.keep_alive.push(token);
    }

    /// Hands over the job and sees the execution through to the end.
    pub async fn run(self, job: &Job) -> Execution {
        self.run_watched(job, None).await
    }

    /// As [`Started::run`], with the script's output sent to `watcher` as it is written.
    pub async fn run_watched(mut self, job: &Job, watcher: Option<Watcher>) -> Execution {
        // From here on, the execution's own teardown ends the sandbox.
        self.unrun.armed = false;
        let running = live::Running::new(self.session);
        // Where executions take turns, the job waits for the previous one's end, and is
        // refused while a scrub could not empty the places (see `compat::scrub`).
        let turn = match &self.held.turns {
            Some(areas) => match areas.take_turn().await {
                Ok(turn) => Some(turn),
                Err(Unclean) => return self.refused(running),
            },
            None => None,
        };
        let gone = watcher.map(|watcher| {
            let [stdout, stderr] = &self.streams.taps;
            stdout.connect(Stream::Stdout, watcher.output.clone());
            stderr.connect(Stream::Stderr, watcher.output);
            watcher.gone
        });
        if let Some(leftovers) = &mut self.held.leftovers {
            leftovers.mark_hand_over();
        }
        let waited = self.wait_for_its_end(job, gone).await;
        // The execution is over: whatever the script left behind dies with it, now.
        self.kill();
        let Started {
            origin,
            leader,
            streams,
            session,
            mut held,
            settling,
            ..
        } = self;
        let execution = observe(origin, streams, &held, waited).await;
        remove_leftovers(&mut held, session, job.limits.cpu).await;
        let mut remains = Remains {
            leader,
            held,
            session,
            running,
        };
        match turn {
            // The execution pays for what it left in the shared places, after its answer: its
            // processes letting go (see `teardown::end_turn`), then the scrub. On Lambda the
            // request for the next event waits for that (see `settling`); the next execution's
            // turn also for the processes to be gone and reaped.
            Some(turn) => {
                let unsettled = settling.begin();
                let budget = job.limits.cpu;
                tokio::spawn(async move {
                    end_turn_after_answer(&mut remains, turn, budget, unsettled).await;
                    teardown(remains).await;
                });
            }
            None => {
                tokio::spawn(teardown(remains));
            }
        }
        execution
    }

    /// Hands the job over and waits for the first of: a whole report, the leader's exit, the
    /// deadline, a whole-sandbox limit, the service's abort.
    async fn wait_for_its_end(&mut self, job: &Job, gone: Option<oneshot::Receiver<()>>) -> Waited {
        // A sandbox forked ahead of time used CPU before its job (its warm-up); the
        // execution's CPU time is what it uses from here on.
        let cpu_before_job = self.held.cgroup.as_ref().and_then(ExecCgroup::cpu);
        let mut watch = Watch::new(self.session, &job.limits, self.held.cgroup.as_ref());
        let started_at = Instant::now();
        let deadline = tokio::time::Instant::from_std(started_at + job.limits.wall);
        let feeder = self.feed(job);
        let cgroup = self.held.cgroup.as_ref();
        let ended = tokio::select! {
            report = &mut self.streams.channel.task => Ended::Reported(report.unwrap_or_default()),
            status = self.leader.wait() => Ended::Other(Ending::Exited(status)),
            () = tokio::time::sleep_until(deadline) => Ended::Other(Ending::TimedOut),
            tripped = watch.tripped(cgroup) => Ended::Other(Ending::OverLimit(tripped)),
            () = self.abort.aborted() => Ended::Other(Ending::Aborted),
            () = watcher_gone(gone) => Ended::Other(Ending::Abandoned),
        };
        feeder.abort();
        Waited {
            ended,
            wall: started_at.elapsed(),
            observed: watch.observed(),
            cpu_before_job,
        }
    }

    /// The execution that never got its job: the sandbox ends unused.
    fn refused(mut self, running: live::Running) -> Execution {
        self.kill();
        let execution = Execution {
            kind: self.origin.kind,
            isolation: self.origin.isolation,
            warm_start: self.origin.warm_start,
            ending: Ending::Refused,
            stdout: Captured::default(),
            stderr: Captured::default(),
            report: Captured::default(),
            tool_log: Captured::default(),
            wall: Duration::ZERO,
            cpu: None,
            peak_memory_bytes: None,
            oom_killed: false,
        };
        tokio::spawn(teardown(Remains {
            leader: self.leader,
            held: self.held,
            session: self.session,
            running,
        }));
        execution
    }

    /// Writes the job to the harness's stdin from a task of its own, so a job larger than the
    /// pipe buffer never holds up the deadline.
    fn feed(&mut self, job: &Job) -> JoinHandle<()> {
        let input = Arc::clone(&job.input);
        let stdin = self.streams.stdin.take();
        tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                super::pipes::fit_pipe_to(&stdin, input.len());
                // A sandbox that dies early closes its stdin; that shows up in its report.
                let _ = stdin.write_all(&input).await;
            }
        })
    }

    fn kill(&mut self) {
        if let Some(cgroup) = &self.held.cgroup {
            cgroup.kill_all();
        }
        kill_group(self.session);
        self.leader.start_kill();
    }
}

/// What happened, once the sandbox is killed: its streams, and what its cgroup measured (or,
/// without one, what the watch saw).
async fn observe(origin: Origin, streams: Streams, held: &Held, waited: Waited) -> Execution {
    let measured = held.cgroup.as_ref().map(ExecCgroup::report);
    let (ending, report) = match waited.ended {
        Ended::Reported(report) => (Ending::Reported, report),
        Ended::Other(ending) => (ending, streams.channel.collect().await),
    };
    let since_job =
        |total: Duration| total.saturating_sub(waited.cpu_before_job.unwrap_or_default());
    Execution {
        kind: origin.kind,
        isolation: origin.isolation,
        warm_start: origin.warm_start,
        ending,
        stdout: streams.stdout.collect().await,
        stderr: streams.stderr.collect().await,
        report,
        tool_log: streams.tool_log.collect().await,
        wall: waited.wall,
        cpu: measured
            .and_then(|measured| measured.cpu)
            .map(since_job)
            .or(waited.observed.cpu),
        peak_memory_bytes: measured
            .and_then(|measured| measured.peak_memory_bytes)
            .or(waited.observed.peak_memory_bytes),
        oom_killed: measured.is_some_and(|measured| measured.oom_killed),
    }
}

/// Resolves once the watcher has gone away; never without one.
async fn watcher_gone(gone: Option<oneshot::Receiver<()>>) {
    match gone {
        Some(gone) => {
            let _ = gone.await;
        }
        None => std::future::pending().await,
    }
}

/// How the wait for an execution ended, with the report when it came whole.
enum Ended {
    Reported(Captured),
    Other(Ending),
}

/// What the wait saw, for [`Started::observe`].
struct Waited {
    ended: Ended,
    wall: Duration,
    observed: Observed,
    cpu_before_job: Option<Duration>,
}
