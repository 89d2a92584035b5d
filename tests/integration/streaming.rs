//! Runs you can watch: `POST /execute` with `Accept: text/event-stream`, read by a streaming
//! HTTP client (reqwest's byte stream, parsed by `eventsource-stream`) as the script runs.

use std::time::Duration;

use serde_json::json;

use crate::common::sse;
use crate::support::{Kind, Service};

/// Output arrives as it is written: "a" well before the final event, two seconds later.
async fn output_arrives_as_the_script_writes_it(kind: Kind) {
    let service = Service::start(kind).await;
    // As a model writes it: no flush, no main().
    let cell = "import time\nprint(\"a\"); time.sleep(2); print(\"b\")\n";
    let body = json!({"script": cell, "mode": "cell"});
    let streamed = sse::post(&service.url("/execute"), &body).await;
    assert_eq!(streamed.status, 200);
    assert!(
        streamed.content_type.starts_with("text/event-stream"),
        "{streamed:?}"
    );
    let first = streamed
        .events
        .iter()
        .find(|received| received.event == "stdout")
        .expect("a stdout event");
    assert_eq!(first.json(), json!("a\n"), "{streamed:?}");
    let last = streamed.last();
    assert_eq!(last.event, "result", "{streamed:?}");
    assert!(
        last.after >= first.after + Duration::from_millis(1500),
        "'a' came at {:?}, the answer at {:?}: the output was held back",
        first.after,
        last.after
    );
    // The final event is the envelope the JSON answer carries, and the events add up to it.
    let envelope = last.json();
    assert_eq!(envelope["result"], json!(null));
    assert_eq!(envelope["stdout"], "a\nb\n");
    assert_eq!(streamed.text_of("stdout"), "a\nb\n");
    assert_eq!(envelope["sandbox"], kind.sandbox());
}

/// A failure's final event is `error`, carrying the error body the JSON answer would; the
/// output before it streamed as usual.
async fn a_failure_ends_the_stream_with_its_error(kind: Kind) {
    let service = Service::start(kind).await;
    let cell =
        "import sys\nprint('before')\nsys.stderr.write('warned\\n')\nraise ValueError('no')\n";
    let streamed = sse::post(
        &service.url("/execute"),
        &json!({"script": cell, "mode": "cell"}),
    )
    .await;
    let last = streamed.last();
    assert_eq!(last.event, "error", "{streamed:?}");
    let body = last.json();
    assert_eq!(body["code"], "EXCEPTION", "{body}");
    assert_eq!(body["where"], "cell", "{body}");
    assert_eq!(streamed.text_of("stdout"), "before\n");
    assert_eq!(
        streamed.text_of("stderr"),
        body["stderr"].as_str().unwrap_or("?")
    );
    assert!(
        body["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("warned")),
        "{body}"
    );
}

/// The output cap holds for the stream as for the buffered answer.
async fn the_output_cap_holds_in_the_stream(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_STDOUT_KIB", "4")]).await;
    let script = "def main():\n    for _ in range(1000):\n        print('x' * 99)\n";
    let streamed = sse::post(&service.url("/execute"), &json!({"script": script})).await;
    let envelope = streamed.last().json();
    assert_eq!(envelope["truncated"]["stdout"], true, "{envelope}");
    let streamed_text = streamed.text_of("stdout");
    assert_eq!(streamed_text.len(), 4096);
    assert_eq!(envelope["stdout"].as_str(), Some(streamed_text.as_str()));
}

/// A client that goes away ends its execution and frees its slot: with one slot, the next
/// request is served at once instead of waiting out a 30 s script.
async fn a_client_that_goes_away_frees_its_slot(kind: Kind) {
    let settings = [("MAX_CONCURRENCY", "1"), ("QUEUE_WAIT_MS", "8000")];
    let service = Service::start_with(kind, &settings).await;
    let script = "import time\ndef main():\n    print('started', flush=True)\n    time.sleep(30)\n";
    let mut response = sse::start(&service.url("/execute"), &json!({"script": script})).await;
    let first = response
        .chunk()
        .await
        .expect("a chunk")
        .expect("the stream starts");
    assert!(
        String::from_utf8_lossy(&first).contains("stdout"),
        "{first:?}"
    );
    drop(response);
    let next = service.run("def main():\n    return 'served'\n").await;
    assert_eq!(next.expect_result(), &json!("served"), "{}", next.body);
}

/// A request refused before anything runs is an ordinary JSON answer with its status.
async fn a_refusal_is_plain_json(kind: Kind) {
    let service = Service::start(kind).await;
    let response = sse::start(&service.url("/execute"), &json!({"script": 42})).await;
    assert_eq!(response.status().as_u16(), 400);
    let body: serde_json::Value = response.json().await.expect("a JSON body");
    assert_eq!(body["code"], "INVALID_REQUEST");
}

for_each_sandbox!(
    output_arrives_as_the_script_writes_it,
    a_failure_ends_the_stream_with_its_error,
    the_output_cap_holds_in_the_stream,
    a_client_that_goes_away_frees_its_slot,
    a_refusal_is_plain_json,
);
