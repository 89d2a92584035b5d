//! S3 offload against a local S3 (moto's server, started here): an envelope too large to return
//! inline has its large fields written to the bucket and replaced by presigned URLs that fetch
//! them; small results stay inline; without a bucket the answer is RESULT_TOO_LARGE.

use crate::lambda_support::http::HttpService;
use crate::lambda_support::moto::Moto;
use crate::lambda_support::rie::Rie;
use serde_json::{json, Value};

const BUCKET: &str = "results";

/// Fetches a presigned URL; the status and body text.
async fn fetch(url: &Value) -> (u16, String, String) {
    let url = url.as_str().unwrap_or_else(|| panic!("not a URL: {url}"));
    let response = reqwest::get(url).await.expect("the presigned URL answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, response.text().await.expect("text"))
}

/// The service over HTTP with a small inline limit, so the test moves little data.
async fn service_with_bucket(moto: &Moto) -> HttpService {
    moto.create_bucket(BUCKET).await;
    let mut env = moto.service_env(BUCKET);
    env.push(("MAX_INLINE_RESPONSE_KIB", "64".to_owned()));
    env.push(("TEMPLATES", "0".to_owned()));
    HttpService::start(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_result_becomes_an_object_and_a_small_one_stays_inline() {
    let moto = Moto::start();
    let service = service_with_bucket(&moto).await;

    let (status, body) = service
        .execute("def main():\n    print('small')\n    return 'x' * 200000\n")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], Value::Null, "{body}");
    assert_eq!(
        body["result_bytes"], 200_002,
        "the JSON string with its quotes: {body}"
    );
    assert_eq!(
        body["stdout"], "small\n",
        "small output stays inline: {body}"
    );
    assert!(body.get("stdout_url").is_none(), "{body}");
    assert_eq!(body["url_expires_in_s"], 900);
    assert_eq!(body["sandbox"], "nsjail");
    let (status, content_type, text) = fetch(&body["result_url"]).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(content_type, "application/json");
    assert_eq!(text, format!("\"{}\"", "x".repeat(200_000)));

    let (status, body) = service
        .execute("def main():\n    return {'sum': 3}\n")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"sum": 3}));
    assert!(body.get("result_url").is_none(), "{body}");
    // One response offloaded, the other inline: counted as such.
    let metrics = service.metrics().await;
    let offloads = |outcome| metrics.sum("python_executor_offloads_total", &[("outcome", outcome)]);
    assert_eq!((offloads("stored"), offloads("failed")), (1.0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_is_offloaded_as_text() {
    let moto = Moto::start();
    let service = service_with_bucket(&moto).await;
    let (status, body) = service
        .execute("def main():\n    print('é' * 100000)\n    return 1\n")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], 1, "{body}");
    assert_eq!(body["stdout"], Value::Null, "{body}");
    assert_eq!(
        body["stdout_bytes"], 200_001,
        "UTF-8 bytes and the newline: {body}"
    );
    let (status, content_type, text) = fetch(&body["stdout_url"]).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(text, format!("{}\n", "é".repeat(100_000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_bucket_an_oversized_result_is_result_too_large() {
    let env = [
        ("MAX_INLINE_RESPONSE_KIB", "64".to_owned()),
        ("TEMPLATES", "0".to_owned()),
    ];
    let service = HttpService::start(&env);
    let (status, body) = service
        .execute("def main():\n    return 'x' * 200000\n")
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "RESULT_TOO_LARGE");
    assert_eq!(body["result_bytes"], 200_002);
    assert_eq!(body["limit_bytes"], 64 * 1024);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("RESULT_BUCKET")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_emulator_a_result_over_the_lambda_cap_is_offloaded() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let rie = Rie::start(&moto.service_env(BUCKET));
    // Under the 5 MiB result cap, but over 6 MB once Lambda escapes the envelope's quotes.
    let script = "def main():\n    return '\"' * (2400 * 1024)\n";
    let (status, body) = rie.execute(&json!({ "script": script })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], Value::Null, "{body}");
    let (status, _, text) = fetch(&body["result_url"]).await;
    assert_eq!(status, 200);
    let result: String = serde_json::from_str(&text).expect("the result's JSON");
    assert_eq!(result.len(), 2400 * 1024);
    assert!(result.bytes().all(|b| b == b'"'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_file_too_large_inline_becomes_a_presigned_url() {
    let moto = Moto::start();
    let service = service_with_bucket(&moto).await;
    let script =
        "def main():\n    open('outputs/noise.bin', 'wb').write(bytes(range(256)) * 400)\n    \
                  open('outputs/small.txt', 'w').write('hi')\n    return 'written'\n";
    let (status, body) = service.execute(script).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"], "written",
        "a small result stays inline: {body}"
    );
    let noise = &body["files"][0];
    assert_eq!(noise["path"], "outputs/noise.bin", "{body}");
    assert_eq!(noise["bytes"], 102_400);
    assert_eq!(noise["content_base64"], Value::Null, "{body}");
    assert_eq!(noise["content_type"], "application/octet-stream");
    let small = &body["files"][1];
    assert_eq!(
        small["content_base64"], "aGk=",
        "a small file stays inline: {body}"
    );
    assert!(small.get("content_url").is_none(), "{body}");
    let url = noise["content_url"].as_str().expect("a URL");
    let response = reqwest::get(url).await.expect("the presigned URL answers");
    assert_eq!(response.status().as_u16(), 200);
    let bytes = response.bytes().await.expect("bytes");
    let expected: Vec<u8> = (0..400).flat_map(|_| 0..=255u8).collect();
    assert_eq!(bytes.as_ref(), expected.as_slice());
}
