//! Starting the release or debug binary with a chosen environment, and talking to it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running service binary; killed when dropped if it is still running.
pub struct Binary {
    pub child: Child,
    pub port: u16,
}

pub fn layer_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("layer/out");
    assert!(
        dir.join("python/bin/python3").is_file(),
        "the sandbox layer is not built at {}: run `make layer`",
        dir.display()
    );
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// The binary with `env` (plus LAYER_DIR, JSON logs and no pool), optionally as another user
/// (`setpriv` drops to that uid first, as Lambda runs the service unprivileged).
fn command(env: &[(&str, &str)], as_uid: Option<u32>) -> Command {
    let exe = env!("CARGO_BIN_EXE_python-executor");
    let mut command = match as_uid {
        Some(uid) => {
            let mut command = Command::new("setpriv");
            command.args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                exe.into(),
            ]);
            command
        }
        None => Command::new(exe),
    };
    command
        .env("LAYER_DIR", layer_dir())
        .env("LOG_FORMAT", "json")
        .env("POOL_SIZE", "0")
        .envs(env.iter().copied());
    command
}

/// How a one-shot run of the binary ended.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the binary with `args` and `env` to its end, as a command rather than a service (with
/// PORT set to a free port all the same, so a binary that served instead would be caught): it
/// must exit within `limit`, or it is killed and the test fails.
pub fn run_once(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
    let child = command(env, None)
        .args(args)
        .env("PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    // Waits in a thread, reading both pipes, so neither can fill up and stall the binary.
    std::thread::spawn(move || done.send(child.wait_with_output()));
    let Ok(output) = finished.recv_timeout(limit) else {
        // SAFETY: kill(2) on the child we started, which has not been reaped yet.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!(
            "`python-executor {}` still ran after {limit:?}",
            args.join(" ")
        );
    };
    let output = output.expect("the binary's output");
    Finished {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

impl Binary {
    /// Starts the binary with `env` (plus PORT and LAYER_DIR), optionally as another user
    /// (`setpriv` drops to that uid first, as Lambda runs the service unprivileged).
    pub async fn start(env: &[(&str, &str)], as_uid: Option<u32>) -> Self {
        let port = free_port();
        let child = command(env, as_uid)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the service binary starts");
        let binary = Self { child, port };
        binary.wait_until_ready().await;
        binary
    }

    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if reqwest::get(self.url("/health")).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service never answered /health");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// POST /execute; returns the status and the JSON body.
    pub async fn execute(&self, script: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(self.url("/execute"))
            .json(&json!({ "script": script }));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    pub async fn health(&self) -> Value {
        reqwest::get(self.url("/health"))
            .await
            .expect("health answers")
            .json()
            .await
            .expect("a JSON body")
    }

    pub fn terminate(&self) {
        // SAFETY: kill(2) on the child we started.
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
    }

    /// Waits for the binary to exit, at most `limit`; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
