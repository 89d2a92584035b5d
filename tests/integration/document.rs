//! `GET /openapi.json` serves docs/openapi.json byte for byte, needs no API key, and the answers
//! an API key changes (401 on /execute, none on /health) are the ones the document gives.

use serde_json::json;

use crate::support::{Kind, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_as_it_is_in_the_repository() {
    let service =
        Service::start_with(Kind::Nsjail, &[("API_KEY", "s3cret"), ("TEMPLATES", "0")]).await;
    let reply = service.get("/openapi.json").await;
    assert_eq!(reply.status, 200, "no API key is needed: {}", reply.body);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let file = std::fs::read_to_string(path).expect("docs/openapi.json");
    assert!(
        reply.text == file,
        "the served document differs from {path}"
    );
    assert_eq!(reply.body["openapi"], "3.1.0");

    // The reply helper checks each of these against the document as well.
    let refused = service.run("def main():\n    return 1\n").await;
    refused.expect_error(401, "UNAUTHORIZED");
    // `error`, `code` and the request's id, nothing more.
    assert_eq!(
        refused.body.as_object().map(|o| o.len()),
        Some(3),
        "{}",
        refused.body
    );
    assert_eq!(
        refused.body["request_id"].as_str(),
        refused.header("x-request-id")
    );
    let health = service.get("/health").await;
    assert_eq!(health.body["ok"], json!(true));
}
