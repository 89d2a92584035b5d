//! The sample events in `events/` and what each must answer (`events/expected.json`).

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

pub fn dir() -> PathBuf {
    super::repo_root().join("events")
}

/// Every event file (all `*.json` but `expected.json`), sorted by name.
pub fn files() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir())
        .expect("events/ exists")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && name != "expected.json")
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no sample events in {}", dir().display());
    names
}

pub fn read(name: &str) -> String {
    let path = dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

pub fn expected() -> Value {
    serde_json::from_str(&read("expected.json")).expect("events/expected.json is JSON")
}

/// An event of the same kind as `template` carrying `body` as its (plain) request body.
pub fn with_body(template: &str, body: &Value) -> String {
    let mut event: Value = serde_json::from_str(&read(template)).expect("event JSON");
    event["body"] = Value::from(body.to_string());
    event["isBase64Encoded"] = Value::from(false);
    event.to_string()
}

/// Checks an answer (status and JSON body) against the event's entry in expected.json.
pub fn check(name: &str, status: u16, body: &Value) {
    let expected = expected();
    let want = expected
        .get(name)
        .unwrap_or_else(|| panic!("events/expected.json has no entry for {name}"));
    assert_eq!(
        u64::from(status),
        want["status"],
        "{name}: status; body {body}"
    );
    match &want["code"] {
        Value::Null if status == 200 => {
            assert!(
                body.get("code").is_none(),
                "{name}: a success has no code: {body}"
            )
        }
        Value::Null => {}
        code => assert_eq!(&body["code"], code, "{name}: code; body {body}"),
    }
    for field in ["result", "stdout"] {
        if !want[field].is_null() {
            assert_eq!(body[field], want[field], "{name}: {field}; body {body}");
        }
    }
    if status == 200 && body.get("ok").is_some() {
        assert_eq!(body["ok"], true, "{name}: health; body {body}");
    }
}

/// The status and JSON body of a Lambda response payload, whatever event kind it answers
/// (base64 bodies included).
pub fn decode_response(payload: &Value) -> (u16, Value) {
    let status = payload["statusCode"]
        .as_u64()
        .unwrap_or_else(|| panic!("no statusCode in {payload}"));
    let text = payload["body"].as_str().unwrap_or("");
    let bytes = if payload["isBase64Encoded"] == true {
        base64_decode(text)
    } else {
        text.as_bytes().to_vec()
    };
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {payload}"));
    (u16::try_from(status).expect("status fits"), body)
}

/// Standard base64, enough for the tests (no external crate for one decode).
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET
            .iter()
            .position(|c| *c == byte)
            .unwrap_or_else(|| panic!("not base64: {text}"));
        acc = (acc << 6) | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
