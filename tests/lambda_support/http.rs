//! The service binary serving HTTP on a free loopback port (the Cloud Run entry point), with
//! only the environment a test gives it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::procs::{free_addr, Guard};

pub struct HttpService {
    base: String,
    guard: Guard,
    client: reqwest::Client,
    _logs: tempfile::TempDir,
}

impl HttpService {
    pub fn start(env: &[(&str, String)]) -> Self {
        super::require_layer();
        let addr = free_addr();
        let mut command = Command::new(env!("CARGO_BIN_EXE_python-executor"));
        command
            .current_dir(super::repo_root())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("PORT", addr.port().to_string())
            .envs(env.iter().map(|(k, v)| (k, v.as_str())));
        let logs = tempfile::tempdir().expect("log dir");
        let mut guard = Guard::spawn("python-executor", command, logs.path());
        guard.wait_listening(addr, Duration::from_secs(30));
        Self {
            base: format!("http://{addr}"),
            guard,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            _logs: logs,
        }
    }

    /// Runs `script`; status and JSON body.
    pub async fn execute(&self, script: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/execute", self.base))
            .json(&serde_json::json!({ "script": script }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.guard.log()));
        let status = response.status().as_u16();
        let body = response.json().await.expect("JSON body");
        (status, body)
    }
}
