//! A real MCP client for the tests: the official Python SDK's Streamable HTTP client (pinned in
//! tools/requirements-mcp.txt, installed by `make tools`), driven by tests/mcp/client.py. It
//! connects to a URL, lists the tools and calls `run_python` once per entry of a plan; what it
//! received comes back as JSON, as the SDK parsed it. Fails, never skips, when it is missing.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

/// How the client connects: the initialize handshake most MCP applications still use, or the
/// SDK's default (discovery first, for the 2026 protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handshake {
    Legacy,
    Auto,
}

impl Handshake {
    fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "legacy",
            Self::Auto => "auto",
        }
    }
}

/// The tools venv's Python, which has the pinned `mcp` package.
fn python() -> PathBuf {
    let path = super::repo::repo_root().join(".tools/venv/bin/python");
    let sdk = super::repo::repo_root().join(".tools/stamps");
    let installed = std::fs::read_dir(&sdk).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("requirements-mcp.")
        })
    });
    assert!(
        path.is_file() && installed,
        "the Python MCP SDK is not installed under {}: run `make tools` (tools/install.sh)",
        super::repo::repo_root().join(".tools").display()
    );
    path
}

/// Runs the client against `url` (with `api_key` as a bearer token, if any): the tools it
/// listed and the result of each call of `plan` (a list of `run_python` arguments). Blocking:
/// call it from `spawn_blocking` in an async test.
pub fn run(url: &str, api_key: Option<&str>, handshake: Handshake, plan: &Value) -> Value {
    let mut command = Command::new(python());
    command
        .arg(super::repo::repo_root().join("tests/mcp/client.py"))
        .arg(url)
        .args(["--mode", handshake.as_str()])
        // No bytecode beside the tools (a read-only checkout under Lambda's conditions).
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = api_key {
        command.args(["--api-key", key]);
    }
    let mut child = command.spawn().expect("the MCP client starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(plan.to_string().as_bytes())
        .expect("the plan is written");
    drop(stdin);
    let output = child.wait_with_output().expect("the MCP client ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the MCP client failed ({}):\n{stderr}",
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "the MCP client's report is not JSON ({error}): {}\n{stderr}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Runs [`run`] off the async runtime.
pub async fn run_async(
    url: String,
    api_key: Option<String>,
    handshake: Handshake,
    plan: Value,
) -> Value {
    tokio::task::spawn_blocking(move || run(&url, api_key.as_deref(), handshake, &plan))
        .await
        .expect("the MCP client's task")
}
