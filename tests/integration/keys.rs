//! Several named keys and their quotas, through the real service: any configured key opens
//! the door (a rotation, one key per caller), a wrong one gets 401, and a key over its quota
//! gets 429 QUOTA_EXCEEDED with Retry-After while another key is served.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::common::wait;
use crate::support::{Kind, Reply, Service};

const KEYS: (&str, &str) = (
    "API_KEYS",
    "alice=alice-key-1\nbob=bob-key-1\nalice=alice-key-2",
);
/// Long enough for the test to send its other requests while it runs.
const SLEEPER: &str = "import time\ndef main():\n    time.sleep(3)\n    return 'slept'\n";
const QUICK: &str = "def main():\n    return 'quick'\n";

async fn execute(service: &Service, key: &str, script: &str) -> Reply {
    let request = service
        .request(Method::POST, "/execute")
        .bearer_auth(key)
        .json(&json!({ "script": script }));
    service.send("POST", request).await
}

async fn every_key_opens_the_door_and_a_wrong_one_does_not(kind: Kind) {
    let public = ("METRICS_PUBLIC", "1");
    let service = Service::start_with(kind, &[KEYS, ("API_KEY", "single-key"), public]).await;
    for key in ["alice-key-1", "alice-key-2", "bob-key-1", "single-key"] {
        let reply = execute(&service, key, QUICK).await;
        assert_eq!(reply.expect_result(), &json!("quick"), "{key}");
    }
    for key in ["carol-key-1", "alice-key-"] {
        execute(&service, key, QUICK)
            .await
            .expect_error(401, "UNAUTHORIZED");
    }
    let unsigned = service
        .request(Method::POST, "/execute")
        .json(&json!({"script": QUICK}));
    service
        .send("POST", unsigned)
        .await
        .expect_error(401, "UNAUTHORIZED");
    // The MCP door asks for the same keys.
    let mcp = service.request(Method::GET, "/mcp").bearer_auth("wrong");
    service
        .send("GET", mcp)
        .await
        .expect_error(401, "UNAUTHORIZED");
    assert_eq!(
        service.get("/health").await.status,
        200,
        "health needs no key"
    );
}

async fn a_key_at_its_concurrency_gets_429_while_another_is_served(kind: Kind) {
    let limit = ("KEY_MAX_CONCURRENCY", "1");
    let service = Service::start_with(kind, &[KEYS, limit]).await;
    service.wait_for_templates().await;
    let running = tokio::spawn({
        let request = service
            .request(Method::POST, "/execute")
            .bearer_auth("alice-key-1")
            .json(&json!({ "script": SLEEPER }));
        async move {
            request
                .send()
                .await
                .expect("answered")
                .json::<serde_json::Value>()
                .await
        }
    });
    // Alice's first request holds her slot once its execution runs.
    let started = wait::until_async(Duration::from_secs(20), || async {
        let health = service.get("/health").await;
        (health.body["executions"]["running"] == 1).then_some(())
    })
    .await;
    assert!(started.is_some(), "the first request never ran");
    // Her second, with her other key (the quota is the name's), is refused at once.
    let refused = execute(&service, "alice-key-2", QUICK).await;
    let body = refused.expect_error(429, "QUOTA_EXCEEDED");
    assert_eq!(
        (&body["key"], &body["quota"], &body["limit"]),
        (&json!("alice"), &json!("concurrency"), &json!(1))
    );
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    // Bob is served meanwhile (after her execution, where executions run one at a time).
    let served = execute(&service, "bob-key-1", QUICK).await;
    assert_eq!(served.expect_result(), &json!("quick"));
    let first = running.await.expect("joined").expect("JSON");
    assert_eq!(first["result"], "slept", "{first}");
    // Her slot is free again.
    assert_eq!(
        execute(&service, "alice-key-1", QUICK)
            .await
            .expect_result(),
        &json!("quick")
    );
    let metrics = service.metrics(Some("bob-key-1")).await;
    let text = metrics.body.as_str().expect("text");
    let refusals = crate::common::prometheus::Exposition::parse(text);
    let labels = [("key", "alice"), ("quota", "concurrency")];
    assert_eq!(
        refusals.sum("python_executor_quota_refusals_total", &labels),
        1.0
    );
}

async fn a_key_over_its_rate_is_told_when_to_retry(kind: Kind) {
    let service = Service::start_with(kind, &[KEYS, ("KEY_RATE_PER_MIN", "1")]).await;
    assert_eq!(
        execute(&service, "alice-key-1", QUICK)
            .await
            .expect_result(),
        &json!("quick")
    );
    let refused = execute(&service, "alice-key-1", QUICK).await;
    let body = refused.expect_error(429, "QUOTA_EXCEEDED");
    assert_eq!(body["quota"], "rate");
    let retry: u64 = refused
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        execute(&service, "bob-key-1", QUICK).await.expect_result(),
        &json!("quick")
    );
}

for_each_sandbox!(
    every_key_opens_the_door_and_a_wrong_one_does_not,
    a_key_at_its_concurrency_gets_429_while_another_is_served,
    a_key_over_its_rate_is_told_when_to_retry,
);
