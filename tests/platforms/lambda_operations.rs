//! Operating the service on Lambda, under the real Runtime Interface Emulator running the real
//! binary: a request's error body, its `X-Request-Id` and every line it logged (the sandbox's
//! own included) share one id, Lambda's own request id, in Lambda's JSON log format and level;
//! and each invocation writes one valid Embedded Metric Format line whose figures add up to
//! the known traffic sent.

use serde_json::{json, Value};

use crate::lambda_support::rie::Rie;
use crate::lambda_support::{common, events};

const KEYS: &str = "alice=alice-key-1,bob=bob-key-1";
const RAISES: &str = "def main():\n    raise ValueError('no')\n";

/// A function URL event for `POST /execute` with `body` and these extra headers.
fn execute_event(body: &Value, headers: &[(&str, &str)]) -> String {
    let mut event: Value =
        serde_json::from_str(&events::with_body("function-url-execute-numpy.json", body))
            .expect("event JSON");
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    event.to_string()
}

/// The JSON lines of the emulator's log (the service's stderr and stdout, which the emulator
/// relays a moment after the invocation's answer).
fn json_lines(rie: &Rie) -> Vec<Value> {
    rie.process()
        .log()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

/// The JSON lines once `enough` says they are all there (or after a few seconds, for the
/// test's own assertion to show what is missing).
fn json_lines_once(rie: &Rie, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let lines = || Some(json_lines(rie)).filter(|lines| enough(lines));
    common::wait::until(std::time::Duration::from_secs(5), lines).unwrap_or_else(|| json_lines(rie))
}

fn header(payload: &Value, name: &str) -> Option<String> {
    payload["headers"][name].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_a_requests_lines_and_error_body_share_lambdas_request_id() {
    let rie = Rie::start(&[
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".into()),
        ("AWS_LAMBDA_LOG_LEVEL", "DEBUG".into()),
        ("API_KEYS", KEYS.into()),
        // Each request forks its own execution, so the fork's lines are the request's.
        ("SPARE_FORKS", "0".into()),
    ]);
    let auth = ("authorization", "Bearer alice-key-1");
    let payload = rie
        .invoke(&execute_event(&json!({ "script": RAISES }), &[auth]))
        .await;
    let (status, body) = events::decode_response(&payload);
    assert_eq!(status, 422, "{body}");
    let id = header(&payload, "x-request-id").expect("an X-Request-Id");
    assert_eq!(body["request_id"], id.as_str());
    let log = rie.process().log();
    assert!(!log.contains("alice-key-1"), "a key was logged:\n{log}");
    let of_the_request = |line: &Value| line["request_id"] == id.as_str();
    // Its log lines, not its EMF line (tested below).
    let is_log = |line: &Value| of_the_request(line) && line.get("_aws").is_none();
    let answered = |lines: &[Value]| lines.iter().any(|l| is_log(l) && l["message"] == "request");
    let lines: Vec<Value> = json_lines_once(&rie, answered)
        .into_iter()
        .filter(is_log)
        .collect();
    assert!(!lines.is_empty(), "no line of {id}:\n{log}");
    for line in &lines {
        // The id is Lambda's own, so the service's lines and Lambda's share it.
        assert_eq!(line["requestId"], id.as_str(), "{line}");
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
        assert!(line["message"].is_string(), "{line}");
        assert!(line["xrayTraceId"].is_string(), "{line}");
    }
    let access = lines.iter().find(|line| line["message"] == "request");
    let access = access.unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert_eq!(
        (&access["status"], &access["code"], &access["key"]),
        (&json!(422), &json!("EXCEPTION"), &json!("alice")),
        "{access}"
    );
    let sandbox = lines.iter().any(|line| line["message"] == "fork handshake");
    assert!(sandbox, "no sandbox line of the request:\n{log}");
}

/// The known traffic: (key, body, code the answer must have).
fn known_traffic() -> Vec<(Option<&'static str>, Value, &'static str)> {
    let script = |script: &str| json!({ "script": script });
    let (alice, bob) = (Some("alice-key-1"), Some("bob-key-1"));
    let mut traffic = Vec::new();
    for _ in 0..7 {
        traffic.push((alice, script("def main():\n    return 1\n"), "OK"));
    }
    for _ in 0..3 {
        traffic.push((bob, script(RAISES), "EXCEPTION"));
        traffic.push((bob, script("def main(:\n"), "SYNTAX_ERROR"));
    }
    for _ in 0..2 {
        traffic.push((alice, json!({}), "INVALID_REQUEST"));
        traffic.push((None, script(RAISES), "UNAUTHORIZED"));
    }
    traffic.push((alice, script("print(1)\n"), "NO_MAIN"));
    let sleeps =
        json!({"script": "import time\ndef main():\n    time.sleep(30)\n", "timeout_s": 1});
    traffic.push((alice, sleeps, "TIMEOUT"));
    traffic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_lambda_each_invocation_writes_one_valid_emf_line() {
    let rie = Rie::start(&[("API_KEYS", KEYS.into())]);
    let traffic = known_traffic();
    for (key, body, code) in &traffic {
        let auth = key.map(|key| format!("Bearer {key}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let payload = rie.invoke(&execute_event(body, &headers)).await;
        let (_, answer) = events::decode_response(&payload);
        assert_eq!(
            answer
                .get("code")
                .map_or("OK", |c| c.as_str().unwrap_or("")),
            *code,
            "{answer}"
        );
    }
    let health = events::read("function-url-health.json");
    let _ = rie.invoke(&health).await;
    assert_eq!(traffic.len() + 1, 20);
    let is_emf = |line: &Value| line.get("_aws").is_some();
    let all_there = |lines: &[Value]| lines.iter().filter(|l| is_emf(l)).count() >= 20;
    let lines: Vec<Value> = json_lines_once(&rie, all_there)
        .into_iter()
        .filter(is_emf)
        .collect();
    assert_eq!(
        lines.len(),
        20,
        "one EMF line per invocation:\n{}",
        rie.process().log()
    );
    let schema = emf_schema();
    for line in &lines {
        let errors: Vec<String> = schema.iter_errors(line).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{errors:?}: {line}");
        assert_members_are_on_the_root(line);
    }
    let total = |metric: &str, member: &str, value: &str| -> f64 {
        let matching = lines
            .iter()
            .filter(|line| value.is_empty() || line[member] == value);
        matching.map(|line| number(&line[metric])).sum()
    };
    assert_eq!(total("Requests", "", ""), 20.0);
    assert_eq!(total("Requests", "Code", "UNAUTHORIZED"), 2.0);
    assert_eq!(total("Requests", "Route", "/health"), 1.0);
    for (code, count) in [
        ("OK", 7.0),
        ("EXCEPTION", 3.0),
        ("SYNTAX_ERROR", 3.0),
        ("NO_MAIN", 1.0),
        ("TIMEOUT", 1.0),
    ] {
        assert_eq!(total("Executions", "ExecutionCode", code), count, "{code}");
    }
    assert_eq!(total("Executions", "", ""), 15.0);
    assert_eq!(
        total("TemplateServes", "", "") + total("ColdStarts", "", ""),
        15.0
    );
    assert_eq!(
        total("FirstInvocation", "", ""),
        1.0,
        "one cold start of the environment"
    );
    assert_eq!(lines.iter().filter(|line| line["Key"] == "bob").count(), 6);
}

/// A metric's value: a number, or the sum of an array of them.
fn number(value: &Value) -> f64 {
    match value {
        Value::Array(values) => values.iter().filter_map(Value::as_f64).sum(),
        other => other.as_f64().unwrap_or(0.0),
    }
}

fn emf_schema() -> jsonschema::Validator {
    let path = common::repo::repo_root().join("tests/metrics/emf.schema.json");
    let text = std::fs::read_to_string(path).expect("the EMF schema");
    let schema: Value = serde_json::from_str(&text).expect("JSON");
    jsonschema::draft202012::new(&schema).expect("a valid schema")
}

/// The specification's rule a schema cannot state: every dimension a directive names is a
/// string member of the root, every metric a number or an array of at most 100 numbers.
fn assert_members_are_on_the_root(line: &Value) {
    for directive in line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let sets = directive["Dimensions"].as_array().into_iter().flatten();
        for name in sets.flat_map(|set| set.as_array().cloned().unwrap_or_default()) {
            let name = name.as_str().unwrap_or_default();
            assert!(line[name].is_string(), "dimension {name}: {line}");
        }
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let value = &line[metric["Name"].as_str().unwrap_or_default()];
            let ok = value.is_number()
                || value
                    .as_array()
                    .is_some_and(|v| v.len() <= 100 && v.iter().all(Value::is_number));
            assert!(ok, "metric {}: {line}", metric["Name"]);
        }
    }
}
