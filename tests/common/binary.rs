//! Starting the programs the tests talk to: the service binary itself (directly, or as another
//! uid, as Lambda runs it) and the tools around it (the Lambda Runtime Interface Emulator, a
//! local S3). One builder for all of them says which program, its environment (the test's own or
//! a cleared one, plus what the caller gives) and where its output goes; the running program can
//! be waited on until it listens, within a deadline, and is ended, with every process below it,
//! when dropped.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::NamedTempFile;

use super::ports::listener_inodes;
use super::procs::descendants;
use super::wait;

/// The PATH a cleared environment keeps, as bare as a platform's: enough for a program that
/// looks up a system tool.
const BARE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The service binary cargo built for this test or benchmark (the release one under `cargo
/// bench`).
pub fn service_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_python-executor"))
}

/// Where a started program's output goes.
#[derive(Clone, Copy, Debug)]
pub enum Output {
    /// Both streams into a log file, shown when the program fails to come up and on request.
    Logged,
    /// Standard error to this process's, standard output discarded: the benchmark shows the
    /// service's warnings as they happen.
    StderrShown,
}

/// What to start, and how; [`Launch::start`] starts it.
#[derive(Debug)]
pub struct Launch {
    /// The program's name in messages.
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    /// Set on top of the inherited (or cleared) environment, in order: a later pair wins.
    env: Vec<(OsString, OsString)>,
    /// Starts from an empty environment (but [`BARE_PATH`]) instead of the test's.
    clear_env: bool,
    /// Runs as this uid and its group, dropped by `setpriv` before the program starts.
    uid: Option<u32>,
    current_dir: Option<PathBuf>,
    output: Output,
    /// Run in the child between fork and exec (entering Lambda's conditions, say).
    before_exec: Option<BeforeExec>,
}

/// Code for the child between fork and exec: only async-signal-safe calls.
pub struct BeforeExec(Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>);

impl std::fmt::Debug for BeforeExec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeExec")
    }
}

/// How a program run to its end ([`Launch::run`]) ended.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Launch {
    pub fn new(name: &str, program: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            uid: None,
            current_dir: None,
            output: Output::Logged,
            before_exec: None,
        }
    }

    /// The service binary (it serves on the port in `PORT`, which the caller sets).
    pub fn service() -> Self {
        Self::new("python-executor", service_exe())
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn envs<K, V>(mut self, pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let pairs = pairs.into_iter().map(|(k, v)| (k.into(), v.into()));
        self.env.extend(pairs);
        self
    }

    /// Starts from an empty environment but PATH, as a platform starts the service.
    pub fn clear_env(mut self) -> Self {
        self.clear_env = true;
        self
    }

    /// Runs as `uid` (when given) rather than as the test's user.
    pub fn run_as(mut self, uid: Option<u32>) -> Self {
        self.uid = uid;
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    pub fn output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Runs `hook` in the child between fork and exec.
    ///
    /// # Safety
    /// `hook` may only make async-signal-safe calls on data prepared before the fork.
    pub unsafe fn before_exec(
        mut self,
        hook: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.before_exec = Some(BeforeExec(Box::new(hook)));
        self
    }

    /// [`Self::command`] with the before-exec hook, which only one command can take.
    fn prepared_command(&mut self) -> Command {
        let mut command = self.command();
        if let Some(BeforeExec(hook)) = self.before_exec.take() {
            use std::os::unix::process::CommandExt;
            // SAFETY: the caller of `before_exec` promised an async-signal-safe hook.
            unsafe { command.pre_exec(hook) };
        }
        command
    }

    /// The command as configured, its standard streams left to the caller.
    fn command(&self) -> Command {
        let mut command = match self.uid {
            Some(uid) => {
                let mut command = Command::new("setpriv");
                let ids = [format!("--reuid={uid}"), format!("--regid={uid}")];
                command.args(ids).arg("--clear-groups").arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        command.args(&self.args);
        if self.clear_env {
            command.env_clear().env("PATH", BARE_PATH);
        }
        command.envs(self.env.iter().map(|(key, value)| (key, value)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
    }

    /// Starts the program.
    pub fn start(mut self) -> Running {
        let mut command = self.prepared_command();
        command.stdin(Stdio::null());
        let log = match self.output {
            Output::Logged => {
                let log = NamedTempFile::new().expect("a log file");
                let file = log.as_file();
                command
                    .stdout(file.try_clone().expect("the log file"))
                    .stderr(file.try_clone().expect("the log file"));
                Some(log)
            }
            Output::StderrShown => {
                command.stdout(Stdio::null());
                None
            }
        };
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        Running {
            child,
            name: self.name,
            log,
        }
    }

    /// Starts the program and waits until `addr` accepts connections (see
    /// [`Running::wait_listening`]).
    pub fn start_listening(self, addr: SocketAddr, within: Duration) -> Running {
        let mut running = self.start();
        running.wait_listening(addr, within);
        running
    }

    /// Runs the program to its end, its output captured: it must exit within `limit`, or it is
    /// killed and the test fails.
    pub fn run(mut self, limit: Duration) -> Finished {
        let child = self
            .prepared_command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        let pid = child.id();
        let (done, finished) = std::sync::mpsc::channel();
        // Waits in a thread, reading both pipes, so neither can fill up and stall the program.
        std::thread::spawn(move || done.send(child.wait_with_output()));
        let Ok(output) = finished.recv_timeout(limit) else {
            kill(pid, libc::SIGKILL);
            panic!("{} {:?} still ran after {limit:?}", self.name, self.args);
        };
        let output = output.expect("the program's output");
        Finished {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Why a started program will not be the one listening on its address.
enum NotListening {
    Exited(ExitStatus),
    /// Another process listens there.
    TakenByAnother,
}

/// A started program; on drop, the end of it and of every process below it.
#[derive(Debug)]
pub struct Running {
    child: Child,
    name: String,
    /// The program's output, when it is logged (deleted on drop).
    log: Option<NamedTempFile>,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program's output so far (empty when it is not logged).
    pub fn log(&self) -> String {
        let read = |log: &NamedTempFile| std::fs::read_to_string(log.path()).ok();
        self.log.as_ref().and_then(read).unwrap_or_default()
    }

    /// Every process below this one, at this moment.
    pub fn descendants(&self) -> Vec<u32> {
        descendants(self.pid())
    }

    /// Waits until the program (or a process it started) listens on `addr`; panics, with the
    /// program's log, if it exits first, if another process holds the port (it was taken
    /// between [`free_addr`](super::ports::free_addr) and the program's bind), or if `within`
    /// passes.
    pub fn wait_listening(&mut self, addr: SocketAddr, within: Duration) {
        let outcome = wait::until(within, || {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                match self.holds_listener(addr) {
                    Some(true) => return Some(Ok(())),
                    Some(false) => return Some(Err(NotListening::TakenByAnother)),
                    // Closed since the connection: look again.
                    None => {}
                }
            }
            self.child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| Err(NotListening::Exited(status)))
        });
        match outcome {
            Some(Ok(())) => {}
            Some(Err(NotListening::Exited(status))) => panic!(
                "{} exited ({status}) before listening:\n{}",
                self.name,
                self.log()
            ),
            Some(Err(NotListening::TakenByAnother)) => panic!(
                "another process listens on {addr}, not {} (the port was taken after it was \
                 picked):\n{}",
                self.name,
                self.log()
            ),
            None => panic!(
                "{} did not listen on {addr} within {within:?}:\n{}",
                self.name,
                self.log()
            ),
        }
    }

    /// Whether a socket listening on `addr`'s port is open in this program or a process below
    /// it; `None` when nothing listens there.
    fn holds_listener(&self, addr: SocketAddr) -> Option<bool> {
        let sockets: Vec<String> = listener_inodes(addr.port())
            .iter()
            .map(|inode| format!("socket:[{inode}]"))
            .collect();
        if sockets.is_empty() {
            return None;
        }
        let holds = |pid: u32| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|link| {
                    sockets
                        .iter()
                        .any(|socket| link.as_os_str() == socket.as_str())
                })
            })
        };
        Some(
            std::iter::once(self.pid())
                .chain(self.descendants())
                .any(holds),
        )
    }

    /// Sends `signal` to the program (not to what it started).
    pub fn signal(&self, signal: libc::c_int) {
        kill(self.pid(), signal);
    }

    /// Waits, at most `limit`, for the program to exit; how it ended.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait::until(limit, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Descendants first (the RIE's runtime, the service's sandboxes): killing the parent
        // first would orphan them to init, out of reach.
        for pid in descendants(self.child.id()) {
            kill(pid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kill(2), ignoring failure: the process may have ended already.
fn kill(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on a pid this test started or just read from /proc; at worst ESRCH.
        unsafe { libc::kill(pid, signal) };
    }
}
