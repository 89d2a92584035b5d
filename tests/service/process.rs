//! The service binary started the way Cloud Run starts it (or as another uid, as Lambda runs it
//! unprivileged), with a chosen environment, and talking to it over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::binary::{Finished, Launch, Running};
use crate::common::lambda_conditions::Conditions;
use crate::common::ports::{free_addr, loopback_listener};

/// Where the binary runs: on this host as it is, or under AWS Lambda's conditions (the
/// integration suite's Lambda profile: an unprivileged uid, everything read-only but /tmp, no
/// user namespaces, no Landlock; tests/common/lambda_conditions.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    Host,
    Lambda,
}

/// An unprivileged uid for the service under Lambda's conditions; nothing belongs to it.
const LAMBDA_SERVICE_UID: u32 = 29_993;

fn on(platform: Platform, launch: Launch) -> Launch {
    match platform {
        Platform::Host => launch,
        Platform::Lambda => {
            let conditions = Conditions::prepare(LAMBDA_SERVICE_UID);
            // SAFETY: `enter` only makes system calls on data prepared above.
            unsafe { launch.before_exec(move || conditions.enter()) }
        }
    }
}

/// Long enough for the sandbox self-test at startup on a busy machine.
const LISTENING_WITHIN: Duration = Duration::from_secs(30);

/// A running service binary; killed, with its sandboxes, when dropped.
pub struct Binary {
    running: Running,
    addr: SocketAddr,
}

pub use crate::common::repo::layer_dir;

/// The binary with `env` on top of LAYER_DIR, JSON logs and no pool.
fn launch(env: &[(&str, &str)]) -> Launch {
    Launch::service()
        .env("LAYER_DIR", layer_dir())
        .env("LOG_FORMAT", "json")
        .env("TEMPLATES", "0")
        .envs(env.iter().copied())
}

/// Runs the binary with `args` and `env` to its end, as a command rather than a service (with
/// PORT set to a free port all the same, so a binary that served instead would be caught): it
/// must exit within `limit`, or it is killed and the test fails.
pub fn run_once(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Finished {
    run_once_on(Platform::Host, args, env, limit)
}

/// [`run_once`] on `platform`.
pub fn run_once_on(
    platform: Platform,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Finished {
    let port = free_addr().port().to_string();
    on(platform, launch(env).args(args).env("PORT", port)).run(limit)
}

impl Binary {
    /// Starts the binary with `env` (plus PORT and LAYER_DIR), optionally as another user
    /// (`setpriv` drops to that uid first, as Lambda runs the service unprivileged), and waits
    /// until it listens.
    pub fn start(env: &[(&str, &str)], as_uid: Option<u32>) -> Self {
        let addr = free_addr();
        let running = launch(env)
            .run_as(as_uid)
            .env("PORT", addr.port().to_string())
            .start_listening(addr, LISTENING_WITHIN);
        Self { running, addr }
    }

    /// Starts the binary on `platform` (see [`Platform`]).
    pub fn start_on(platform: Platform, env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let launch = launch(env).env("PORT", addr.port().to_string());
        let running = on(platform, launch).start_listening(addr, LISTENING_WITHIN);
        Self { running, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.running.pid()
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
        self.running.signal(libc::SIGTERM);
    }

    /// Waits for the binary to exit, at most `limit`; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        self.running.wait_exit(limit)?.code()
    }

    /// The binary's output so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        self.running.log()
    }
}

/// The launcher never takes another process's listener for the service's: a port taken between
/// its pick and the service's bind fails the start, saying so, rather than letting a test talk to
/// whatever holds it.
#[test]
fn a_port_another_process_holds_is_not_taken_for_the_services() {
    let held = loopback_listener();
    let addr = held.local_addr().expect("a bound listener has an address");
    let start = std::panic::AssertUnwindSafe(|| {
        launch(&[])
            .env("PORT", addr.port().to_string())
            .start_listening(addr, LISTENING_WITHIN)
    });
    let failure = std::panic::catch_unwind(start).expect_err("the start fails");
    let message = failure
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains(&format!("another process listens on {addr}")),
        "{message}"
    );
}
