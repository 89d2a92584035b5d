//! Property-based fuzzing of the running binary against its own OpenAPI document: schemathesis
//! (pinned in tools/requirements-fuzz.txt) generates valid and invalid requests from
//! docs/openapi.json, weird scripts included, and fails on any 5xx, any response the document
//! does not describe, and any invalid request the service accepts. Afterwards the service must
//! still be healthy and still run a script correctly.
//!
//! The run is bounded in time (`FUZZ_TIME_S`, default 60 s: schemathesis repeats its phases until
//! the budget is spent) and in examples per round; each run draws a new seed, printed in the
//! output for `--seed` to replay a failure.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::json;

use crate::process::Binary;

/// Seconds of fuzzing, unless `FUZZ_TIME_S` says otherwise.
const DEFAULT_FUZZ_TIME_S: u64 = 60;
/// Test cases per operation in each round.
const MAX_EXAMPLES: &str = "50";
/// Well above the service's own deadline (MAX_TIMEOUT_S below), so a hang is the service's.
const REQUEST_TIMEOUT_S: &str = "20";

/// The pinned schemathesis; fails loudly, never skips, when it is missing.
fn schemathesis() -> PathBuf {
    let path = crate::common::repo::repo_root().join(".tools/venv/bin/schemathesis");
    assert!(
        path.is_file(),
        "{} is missing: run `make tools` (tools/install.sh installs it)",
        path.display()
    );
    path
}

fn fuzz_time_s() -> u64 {
    std::env::var("FUZZ_TIME_S")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_FUZZ_TIME_S)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_response_outside_the_document() {
    let tool = schemathesis();
    // nsjail, no pool, a short deadline: generated scripts (mostly syntax errors, some that
    // loop or allocate) each cost one fresh sandbox and at most two seconds. CORS on, so the
    // documented preflights (OPTIONS) are answered rather than refused.
    let service = Binary::start(
        &[
            ("SANDBOX", "nsjail"),
            ("MAX_TIMEOUT_S", "2"),
            ("CPU_LIMIT_S", "2"),
            ("MEMORY_LIMIT_MIB", "256"),
            ("CORS_ALLOW_ORIGINS", "https://app.example.com"),
        ],
        None,
    );
    let scratch = tempfile::tempdir().expect("a scratch directory");
    // The document as the service serves it, which is docs/openapi.json (tests/integration).
    let location = service.url("/openapi.json");
    let base_url = service.url("");
    let budget = fuzz_time_s().to_string();
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(tool)
            .current_dir(scratch.path())
            .env("NO_COLOR", "1")
            .env(
                "SCHEMATHESIS_HOOKS",
                crate::common::repo::repo_root().join("tests/service/fuzz_hooks.py"),
            )
            .arg("--config-file")
            .arg(crate::common::repo::repo_root().join("tests/service/schemathesis.toml"))
            .args(["run", &location, "--url", &base_url])
            .args(["--workers", "1", "--max-time", &budget])
            .args(["--max-examples", MAX_EXAMPLES])
            // MCP's JSON-RPC is not in the document (tests/integration/mcp.rs drives /mcp with
            // a real MCP client instead).
            .args(["--exclude-path", "/mcp"])
            .args(["--request-timeout", REQUEST_TIMEOUT_S])
            .args(["--generation-database", "none", "--no-color"])
            // The stateful checks need links between operations (there are none), and there is
            // no per-object authorization to probe.
            .args(["--checks", "all", "--exclude-checks"])
            .arg("use_after_free,ensure_resource_availability,object_level_authorization")
            .output()
            .expect("schemathesis runs")
    })
    .await
    .expect("the schemathesis task");
    let report = report(&output);
    println!("schemathesis ran {:?}\n{report}", started.elapsed());
    assert!(
        output.status.success(),
        "schemathesis failed:\n{report}\nthe service's log, last lines:\n{}",
        last_lines(&service.log(), 40)
    );
    assert_still_serving(&service).await;
}

/// schemathesis's summary, or its whole output when it failed.
fn report(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        let summary = stdout
            .find("SUMMARY")
            .map_or(&stdout[..], |at| &stdout[at..]);
        return summary.to_owned();
    }
    format!("{stdout}\n{stderr}")
}

fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// After the fuzzing: healthy, and a plain script still gets its exact answer.
async fn assert_still_serving(service: &Binary) {
    let health = service.health().await;
    assert_eq!(health["ok"], true, "{health}");
    let executions = &health["executions"];
    assert_eq!(
        executions["running"], 0,
        "no execution is left running: {health}"
    );
    let (status, body) = service
        .execute(
            "def main():\n    print('still here')\n    return {'sum': 40 + 2}\n",
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"sum": 42}), "{body}");
    assert_eq!(body["stdout"], "still here\n", "{body}");
}
