//! Child processes of the tests: started on free loopback ports, killed with everything they
//! started when the test ends, pass or fail.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::host_procs::descendants;

/// A loopback address nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

/// A started process and, on drop, the end of it and of every process below it.
#[derive(Debug)]
pub struct Guard {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Guard {
    /// Starts `command` with its output in a log file (shown when it fails to come up).
    pub fn spawn(name: &'static str, mut command: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, name, log }
    }

    /// Every process below this one, at this moment.
    pub fn descendants(&self) -> Vec<u32> {
        descendants(self.child.id())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for the process to exit: its status, or `None` while it runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                _ if Instant::now() >= deadline => return None,
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Waits until `addr` accepts connections; panics with the process's log otherwise.
    pub fn wait_listening(&mut self, addr: SocketAddr, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not listen on {addr} within {within:?}:\n{}",
            self.name,
            self.log()
        );
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Descendants first (the RIE's runtime, the service's sandboxes): killing the parent
        // first would orphan them to init, out of reach.
        for pid in descendants(self.child.id()) {
            // SAFETY: kill(2) with a pid read from /proc just now; at worst ESRCH.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
