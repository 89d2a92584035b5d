//! Lambda's response streaming (`LAMBDA_INVOKE_MODE=RESPONSE_STREAM`, a function URL whose
//! invoke mode is RESPONSE_STREAM): the real binary and its lambda_runtime client against an
//! emulation of the streaming Runtime API (`lambda_support::runtime_api`), since the Runtime
//! Interface Emulator buffers a streamed response before it answers.

use std::time::Duration;

use serde_json::{json, Value};

use crate::lambda_support::common::binary::{service_exe, Launch};
use crate::lambda_support::runtime_api::{RuntimeApi, Streamed};
use crate::lambda_support::{events, repo_root, require_layer};

/// A function URL event asking `/execute` for `body`, with `accept` as its Accept header.
fn event(body: &Value, accept: &str) -> String {
    let mut event: Value = serde_json::from_str(&events::read("function-url-execute-numpy.json"))
        .expect("a sample event");
    let body = body.to_string();
    event["headers"]["accept"] = json!(accept);
    event["headers"]["content-length"] = json!(body.len().to_string());
    event["body"] = json!(body);
    event.to_string()
}

/// The binary in streaming mode, invoked once with `event` through the emulated Runtime API.
async fn invoke_streaming(event: String) -> Streamed {
    require_layer();
    let api = RuntimeApi::serve(event).await;
    let _function = Launch::new("python-executor", service_exe())
        .current_dir(repo_root())
        .clear_env()
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "python-executor")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "2048")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("LAMBDA_INVOKE_MODE", "RESPONSE_STREAM")
        .env("MAX_CONCURRENCY", "1")
        .start();
    let streamed = api.response(Duration::from_secs(90)).await;
    assert_eq!(streamed.mode.as_deref(), Some("streaming"), "{streamed:?}");
    streamed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_run_arrives_as_written_through_lambda_response_streaming() {
    let cell = "import time\nprint(\"a\"); time.sleep(2); print(\"b\")\n";
    let body = json!({"script": cell, "mode": "cell"});
    let streamed = invoke_streaming(event(&body, "text/event-stream")).await;
    let (prelude, _) = streamed.prelude_and_body();
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(
        prelude["headers"]["content-type"], "text/event-stream",
        "{prelude}"
    );
    let first = streamed
        .arrival_of("data: \"a\\n\"")
        .expect("the first line");
    let last = streamed
        .arrival_of("event: result")
        .expect("the final event");
    assert!(
        last >= first + Duration::from_millis(1500),
        "'a' came at {first:?}, the answer at {last:?}: the output was held back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_answers_whole_in_streaming_mode() {
    let body = json!({"script": "def main():\n    return {'sum': 1 + 2}\n"});
    let streamed = invoke_streaming(event(&body, "application/json")).await;
    let (prelude, body) = streamed.prelude_and_body();
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    let envelope: Value = serde_json::from_slice(&body).expect("a JSON envelope");
    assert_eq!(envelope["result"], json!({"sum": 3}), "{envelope}");
}
