//! Running for many callers, through the real service and real executions: request ids on
//! every answer and error body, `/metrics` counting known traffic exactly (read with the
//! Prometheus project's own parser), and CORS answering a browser's preflight.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::prometheus::Exposition;
use crate::support::{Kind, Reply, Service};

const RAISES: &str = "def main():\n    raise ValueError('no')\n";

async fn a_request_id_is_on_every_answer_and_error_body(kind: Kind) {
    let service = Service::start(kind).await;
    let post = |id: Option<&str>, script: &str| {
        let mut request = service
            .request(Method::POST, "/execute")
            .json(&json!({ "script": script }));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        service.send("POST", request)
    };
    // The caller's own id, when it is a sane one, in the header and the error body.
    let reply = post(Some("client-id:42"), RAISES).await;
    reply.expect_error(422, "EXCEPTION");
    assert_eq!(reply.header("x-request-id"), Some("client-id:42"));
    assert_eq!(reply.body["request_id"], "client-id:42");
    // Anything else is replaced by a new id, the same in both places.
    let reply = post(Some("two words"), RAISES).await;
    let id = reply.header("x-request-id").expect("an id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(reply.body["request_id"], id.as_str());
    // A success and every other route get one too, each its own.
    let first = post(None, "def main():\n    return 1\n").await;
    assert_eq!(first.expect_result(), &json!(1));
    let health = service.get("/health").await;
    let ids = [&first, &health].map(|reply| reply.header("x-request-id").map(str::to_owned));
    assert!(
        ids.iter().all(Option::is_some) && ids[0] != ids[1],
        "{ids:?}"
    );
    let missing = service.get("/nope").await;
    let id = missing.header("x-request-id").expect("an id");
    assert_eq!(missing.body["request_id"], id);
    // Without CORS_ALLOW_ORIGINS there is no preflight to answer.
    let options = service.request(Method::OPTIONS, "/execute");
    let refused = service.send("OPTIONS", options).await;
    refused.expect_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(refused.header("access-control-allow-origin"), None);
}

/// One request of the known traffic: who sends what, and what it must be answered.
struct Known {
    key: Option<&'static str>,
    body: Value,
    status: u16,
    code: &'static str,
}

/// Twenty requests of mixed outcomes from two keys, one wrong key and no key at all.
fn known_traffic() -> Vec<Known> {
    let run = |key, script: &str, status, code| Known {
        key,
        body: json!({ "script": script }),
        status,
        code,
    };
    let (alice, bob) = (Some("alice-key-1"), Some("bob-key-1"));
    let mut traffic = Vec::new();
    for _ in 0..4 {
        traffic.push(run(alice, "def main():\n    return 1\n", 200, "OK"));
    }
    for _ in 0..2 {
        let numpy = "import numpy as np\ndef main():\n    return int(np.arange(4).sum())\n";
        traffic.push(run(alice, numpy, 200, "OK"));
        traffic.push(run(bob, "def main():\n    return 2\n", 200, "OK"));
        traffic.push(run(alice, "def main(:\n", 422, "SYNTAX_ERROR"));
        traffic.push(Known {
            key: alice,
            body: json!({}),
            status: 400,
            code: "INVALID_REQUEST",
        });
        traffic.push(run(Some("not-a-key"), RAISES, 401, "UNAUTHORIZED"));
    }
    for _ in 0..3 {
        traffic.push(run(bob, RAISES, 422, "EXCEPTION"));
    }
    traffic.push(run(alice, "print(1)\n", 422, "NO_MAIN"));
    traffic.push(Known {
        key: alice,
        body: json!({"script": "import time\ndef main():\n    time.sleep(30)\n", "timeout_s": 1}),
        status: 422,
        code: "TIMEOUT",
    });
    traffic
}

async fn metrics_count_twenty_known_requests_exactly(kind: Kind) {
    let keys = ("API_KEYS", "alice=alice-key-1,bob=bob-key-1");
    let service = Service::start_with(kind, &[keys]).await;
    service.wait_for_templates().await;
    let traffic = known_traffic();
    for known in &traffic {
        let mut request = service.request(Method::POST, "/execute").json(&known.body);
        if let Some(key) = known.key {
            request = request.bearer_auth(key);
        }
        let reply = service.send("POST", request).await;
        reply.expect_error_or_ok(known.status, known.code);
    }
    let reply = service.get("/nope").await;
    reply.expect_error(404, "NOT_FOUND");
    assert_eq!(traffic.len() + 1, 20);
    service
        .metrics(None)
        .await
        .expect_error(401, "UNAUTHORIZED");
    let reply = service.metrics(Some("bob-key-1")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let parsed = Exposition::parse(reply.body.as_str().expect("text"));
    // The refused scrape just above is the 21st request, counted like any other; the health
    // checks of the wait for the templates come on top.
    let requests = |labels: &[(&str, &str)]| parsed.sum("python_executor_requests_total", labels);
    let health = requests(&[("route", "/health")]);
    assert!(health >= 1.0);
    assert_eq!(requests(&[]) - health, 21.0);
    assert_eq!(requests(&[("route", "/execute")]), 19.0);
    let execute = ("route", "/execute");
    assert_eq!(requests(&[execute, ("code", "OK"), ("key", "alice")]), 6.0);
    assert_eq!(requests(&[execute, ("code", "OK"), ("key", "bob")]), 2.0);
    assert_eq!(
        requests(&[execute, ("code", "EXCEPTION"), ("key", "bob")]),
        3.0
    );
    assert_eq!(
        requests(&[execute, ("code", "INVALID_REQUEST"), ("key", "alice")]),
        2.0
    );
    assert_eq!(
        requests(&[execute, ("code", "UNAUTHORIZED"), ("key", "")]),
        2.0
    );
    assert_eq!(
        requests(&[("route", "/metrics"), ("code", "UNAUTHORIZED")]),
        1.0
    );
    assert_eq!(
        requests(&[("route", "unmatched"), ("code", "NOT_FOUND")]),
        1.0
    );
    let latency = parsed.sum("python_executor_request_duration_seconds_count", &[]);
    assert_eq!(latency - health, 21.0);
    check_executions(&parsed, kind);
}

/// Fifteen requests reached a sandbox, every one forked from a warm template.
fn check_executions(parsed: &Exposition, kind: Kind) {
    let sandbox = ("sandbox", kind.sandbox());
    let executions = |code| {
        parsed.sum(
            "python_executor_executions_total",
            &[("code", code), sandbox],
        )
    };
    for (code, count) in [("OK", 8.0), ("EXCEPTION", 3.0), ("SYNTAX_ERROR", 2.0)] {
        assert_eq!(executions(code), count, "{code}");
    }
    assert_eq!(executions("NO_MAIN") + executions("TIMEOUT"), 2.0);
    assert_eq!(parsed.sum("python_executor_executions_total", &[]), 15.0);
    for histogram in ["queue_wait_seconds", "execution_duration_seconds"] {
        let count = parsed.sum(&format!("python_executor_{histogram}_count"), &[]);
        assert_eq!(count, 15.0, "{histogram}");
    }
    let serves = |template| {
        parsed.sum(
            "python_executor_template_serves_total",
            &[("template", template)],
        )
    };
    assert_eq!((serves("plain"), serves("data")), (13.0, 2.0));
    assert_eq!(parsed.sum("python_executor_cold_starts_total", &[]), 0.0);
    assert_eq!(parsed.sum("python_executor_overloaded_total", &[]), 0.0);
    assert_eq!(parsed.sum("python_executor_executions_in_flight", &[]), 0.0);
    assert!(parsed.sum("python_executor_execution_capacity", &[]) >= 1.0);
    // CPU and memory where the platform measures them: never more samples than executions.
    for histogram in ["script_cpu_seconds", "script_peak_memory_bytes"] {
        assert_eq!(
            parsed
                .kind(&format!("python_executor_{histogram}"))
                .as_deref(),
            Some("histogram")
        );
        let count = parsed.sum(&format!("python_executor_{histogram}_count"), &[]);
        assert!(count <= 15.0, "{histogram}: {count}");
    }
}

const ORIGIN: &str = "https://app.example.com";

async fn cors_answers_a_browsers_preflight_for_listed_origins_only(kind: Kind) {
    let origins = (
        "CORS_ALLOW_ORIGINS",
        "https://app.example.com, http://localhost:3000",
    );
    let service = Service::start_with(kind, &[origins, ("API_KEY", "k3y")]).await;
    // What a browser sends before a cross-origin JSON POST with an Authorization header.
    let preflight = |origin: &str| {
        let request = service
            .request(Method::OPTIONS, "/execute")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,x-request-id",
            );
        service.send("OPTIONS", request)
    };
    let reply = preflight(ORIGIN).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.text, "");
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    let listed = |name: &str, wanted: &[&str]| {
        let value = reply.header(name).unwrap_or_default().to_ascii_lowercase();
        for item in wanted {
            assert!(
                value.split(',').any(|v| v.trim() == *item),
                "{name}: {value}"
            );
        }
    };
    listed("access-control-allow-methods", &["post"]);
    listed(
        "access-control-allow-headers",
        &["authorization", "content-type", "x-request-id"],
    );
    listed("vary", &["origin"]);
    assert_eq!(reply.header("access-control-max-age"), Some("600"));
    assert!(reply.header("x-request-id").is_some());
    // An origin not listed gets an answer its browser will not let through.
    let other = preflight("https://evil.example").await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    // The request itself, answered or refused, is readable by the listed origin.
    let post = |key: &str| {
        let request = service
            .request(Method::POST, "/execute")
            .header("origin", ORIGIN)
            .bearer_auth(key)
            .json(&json!({"script": "def main():\n    return 3\n"}));
        service.send("POST", request)
    };
    let answered = post("k3y").await;
    assert_eq!(answered.expect_result(), &json!(3));
    assert_readable_by_origin(&answered);
    let refused = post("wrong").await;
    refused.expect_error(401, "UNAUTHORIZED");
    assert_readable_by_origin(&refused);
}

fn assert_readable_by_origin(reply: &Reply) {
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    let exposed = reply
        .header("access-control-expose-headers")
        .unwrap_or_default();
    assert!(
        exposed.to_ascii_lowercase().contains("x-request-id"),
        "{exposed}"
    );
}

for_each_sandbox!(
    a_request_id_is_on_every_answer_and_error_body,
    metrics_count_twenty_known_requests_exactly,
    cors_answers_a_browsers_preflight_for_listed_origins_only,
);
