//! The AWS Lambda Runtime Interface Emulator running the service binary.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::procs::{free_addr, Guard};

const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

pub struct Rie {
    url: String,
    guard: Guard,
    client: reqwest::Client,
    _logs: tempfile::TempDir,
}

impl Rie {
    /// The emulator on free loopback ports, running the service binary with only `env`.
    pub fn start(env: &[(&str, String)]) -> Self {
        let rie = super::require_tool("bin/aws-lambda-rie");
        super::require_layer();
        let (addr, api) = (free_addr(), free_addr());
        let mut command = Command::new(rie);
        command
            .current_dir(super::repo_root())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .arg("--runtime-interface-emulator-address")
            .arg(addr.to_string())
            .arg("--runtime-api-address")
            .arg(api.to_string())
            .arg(env!("CARGO_BIN_EXE_python-executor"));
        let logs = tempfile::tempdir().expect("log dir");
        let mut guard = Guard::spawn("aws-lambda-rie", command, logs.path());
        guard.wait_listening(addr, Duration::from_secs(15));
        Self {
            url: format!("http://{addr}{INVOKE_PATH}"),
            guard,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("client"),
            _logs: logs,
        }
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Invokes the function with one event; the Lambda response payload.
    pub async fn invoke(&self, event: &str) -> Value {
        let response = self
            .client
            .post(&self.url)
            .body(event.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke failed: {e}\n{}", self.guard.log()));
        let text = response.text().await.expect("payload");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {text}\n{}", self.guard.log()))
    }
}
