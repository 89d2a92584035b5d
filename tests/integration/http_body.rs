//! An oversized body gets its 413 even when the client writes the whole body before reading
//! (Python's urllib and requests, most SDKs): the service answers early and reads away the rest
//! within bounds, instead of closing on unread data, which resets the client's connection.

use std::io::Write;

use serde_json::json;

use crate::raw_http::{self, chunked, execute_head, send_then_read, RawResponse};
use crate::support::{Kind, Service};

/// A small body limit, so the bodies below are many times over it yet quick to send.
const LIMIT_KIB: usize = 64;
/// Several times the limit, and more than loopback's socket buffers take in without a reader.
const BODY_BYTES: usize = 6 * 1024 * 1024;

async fn service() -> Service {
    let limit = LIMIT_KIB.to_string();
    Service::start_with(
        Kind::Nsjail,
        &[("MAX_BODY_KIB", &limit), ("TEMPLATES", "0")],
    )
    .await
}

/// A JSON object far over the limit: a script padded with a comment.
fn oversized_body() -> Vec<u8> {
    let padding = "#".repeat(BODY_BYTES);
    json!({ "script": format!("def main():\n    return 1\n{padding}\n") })
        .to_string()
        .into_bytes()
}

fn assert_too_large(response: &RawResponse) {
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.body["code"], "SCRIPT_TOO_LARGE", "{response:?}");
    assert_eq!(response.body["limit_bytes"], LIMIT_KIB * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_content_length_body_over_the_limit_still_reads_its_413() {
    let service = service().await;
    let addr = service.addr;
    let response = tokio::task::spawn_blocking(move || {
        let body = oversized_body();
        let head = execute_head(&format!("Content-Length: {}", body.len()));
        send_then_read(addr, &head, &body)
    })
    .await
    .expect("joined")
    .expect("no reset: the client reads its answer");
    assert_too_large(&response);
    assert!(response.head.contains("connection: close"), "{response:?}");
    service.assert_still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_chunked_body_over_the_limit_still_reads_its_413() {
    let service = service().await;
    let addr = service.addr;
    let response = tokio::task::spawn_blocking(move || {
        let body = chunked(&oversized_body(), 16 * 1024);
        send_then_read(addr, &execute_head("Transfer-Encoding: chunked"), &body)
    })
    .await
    .expect("joined")
    .expect("no reset: the client reads its answer");
    assert_too_large(&response);
    service.assert_still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_answered_before_the_body_is_sent() {
    let service = service().await;
    let addr = service.addr;
    tokio::task::spawn_blocking(move || {
        let mut stream = raw_http::connect(addr);
        let head = execute_head(&format!("Content-Length: {BODY_BYTES}"));
        stream.write_all(head.as_bytes()).expect("head");
        // Not a byte of the body yet: the answer comes from the header alone.
        let response = raw_http::read_response(&mut stream).expect("an early answer");
        assert_too_large(&response);
        // The rest is still read away: the client can send it all without a reset.
        stream
            .write_all(&vec![b' '; BODY_BYTES])
            .expect("the body is drained");
        raw_http::wait_for_close(&mut stream);
    })
    .await
    .expect("joined");
    service.assert_still_healthy().await;
}

/// What a Python client posts: 2 MiB, once with a length and once chunked (an iterable body),
/// printing the status and the error code it read.
const URLLIB_CLIENT: &str = r#"
import json, sys, urllib.error, urllib.request
url = sys.argv[1]
body = json.dumps({"script": "def main():\n    return 1\n#" + "x" * (2 * 1024 * 1024)}).encode()
for data in (body, iter([body[i:i + 65536] for i in range(0, len(body), 65536)])):
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=30)
        print("200 unexpected")
    except urllib.error.HTTPError as error:
        print(error.code, json.load(error)["code"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_urllib_posting_two_mib_reads_the_413() {
    // The default body limit (1 MiB): this is what a user's script meets.
    let service = Service::start_with(Kind::Nsjail, &[("TEMPLATES", "0")]).await;
    let output = tokio::process::Command::new("/usr/bin/python3")
        .args(["-c", URLLIB_CLIENT, &service.url("/execute")])
        .output()
        .await
        .expect("/usr/bin/python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "urllib failed: {stderr}");
    assert_eq!(
        stdout, "413 SCRIPT_TOO_LARGE\n413 SCRIPT_TOO_LARGE\n",
        "{stderr}"
    );
    service.assert_still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_answer_reaches_a_client_writing_a_whole_body() {
    let service =
        Service::start_with(Kind::Nsjail, &[("API_KEY", "s3cret"), ("TEMPLATES", "0")]).await;
    let addr = service.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let body = oversized_body();
        let length = format!("Content-Length: {}", body.len());
        let unauthorized = execute_head(&length);
        let not_found = format!("POST /nope HTTP/1.1\r\nHost: test\r\n{length}\r\n\r\n");
        [unauthorized, not_found].map(|head| {
            send_then_read(addr, &head, &body).expect("no reset: the client reads its answer")
        })
    })
    .await
    .expect("joined");
    assert_eq!(answers[0].status, 401, "{:?}", answers[0]);
    assert_eq!(answers[0].body["code"], "UNAUTHORIZED");
    assert_eq!(answers[1].status, 404, "{:?}", answers[1]);
    assert_eq!(answers[1].body["code"], "NOT_FOUND");
}
