//! Log lines as Cloud Run's console reads them, from the real binary: a request's error body,
//! its `X-Request-Id` header and every line it logged, the sandbox's own included, share one
//! id; the lines carry Cloud Logging's severity, message, trace and `httpRequest`; the key's
//! name is logged, the key never.

use serde_json::{json, Value};

use crate::process::Binary;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const KEY: &str = "k3y-that-must-never-be-logged";

/// The JSON lines of `log` (others, like a panic's, are left out).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(Value::is_object)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cloud_run_a_requests_lines_share_its_id_and_link_to_its_trace() {
    let keys = format!("alice={KEY}");
    let service = Binary::start(
        &[
            ("SANDBOX", "nsjail"),
            // Cloud Run's own variable: logs take Cloud Logging's shape by themselves.
            ("K_SERVICE", "python-executor"),
            ("LOG_FORMAT", "auto"),
            ("API_KEYS", &keys),
            // Each request forks its own execution, so the fork's lines are the request's.
            ("TEMPLATES", "1"),
            ("SPARE_FORKS", "0"),
            ("RUST_LOG", "debug"),
        ],
        None,
    );
    wait_for_templates(&service).await;
    let response = reqwest::Client::new()
        .post(service.url("/execute"))
        .bearer_auth(KEY)
        .header("x-request-id", "req-from-the-caller-1")
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({"script": "def main():\n    raise ValueError('no')\n"}))
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 422);
    let header = response.headers()["x-request-id"]
        .to_str()
        .expect("text")
        .to_owned();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(header, "req-from-the-caller-1");
    assert_eq!(body["request_id"], header.as_str());
    let log = service.log();
    assert!(!log.contains(KEY), "the key was logged:\n{log}");
    let lines: Vec<Value> = json_lines(&log)
        .into_iter()
        .filter(|line| line["request_id"] == header.as_str())
        .collect();
    let targets: Vec<&str> = lines.iter().filter_map(|l| l["target"].as_str()).collect();
    for line in &lines {
        assert_eq!(line["logging.googleapis.com/trace"], TRACE, "{line}");
        assert_eq!(
            line["logging.googleapis.com/spanId"], "00f067aa0ba902b7",
            "{line}"
        );
        assert!(
            line["severity"].is_string() && line["message"].is_string(),
            "{line}"
        );
        assert!(line.get("level").is_none(), "{line}");
    }
    let access = lines
        .iter()
        .find(|line| line.get("httpRequest").is_some())
        .unwrap_or_else(|| panic!("no access line among {lines:#?}\n{log}"));
    assert_eq!(access["httpRequest"]["status"], 422, "{access}");
    assert_eq!(access["httpRequest"]["requestMethod"], "POST", "{access}");
    assert_eq!(access["code"], "EXCEPTION", "{access}");
    assert_eq!(access["key"], "alice", "{access}");
    // The sandbox's own line (the fork's handshake), not only the front door's.
    let sandbox = lines
        .iter()
        .find(|line| line["message"] == "fork handshake");
    assert!(
        sandbox.is_some(),
        "no sandbox line of the request: {targets:?}\n{log}"
    );
}

async fn wait_for_templates(service: &Binary) {
    let ready = crate::common::wait::until_async(std::time::Duration::from_secs(30), || async {
        let health = service.health().await;
        let templates = &health["templates"];
        (templates["plain"]["ready"] == true && templates["data"]["ready"] == true).then_some(())
    })
    .await;
    assert!(ready.is_some(), "templates never ready:\n{}", service.log());
}
