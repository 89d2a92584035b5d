//! Unit tests of `api::files`: every path trick and every limit has its own code.

use serde_json::json;

use super::*;
use crate::limits::ByteSize;

fn limits() -> InputFileLimits {
    InputFileLimits {
        max_files: 3,
        max_file: ByteSize::bytes(10),
        max_total: ByteSize::bytes(15),
    }
}

fn code(files: Value) -> ErrorCode {
    parse_input_files(Some(files), &limits())
        .expect_err("should be refused")
        .code
}

#[test]
fn text_and_base64_files_pass_as_sent() {
    let files = parse_input_files(
        Some(json!([
            {"path": "data/in.csv", "content": "a,b\n"},
            {"path": "raw.bin", "content_base64": "AAEC"},
        ])),
        &limits(),
    )
    .expect("valid");
    assert_eq!(files[0].content, InputContent::Text("a,b\n".into()));
    assert_eq!(files[1].content, InputContent::Base64("AAEC".into()));
    assert_eq!(
        serde_json::to_value(&files).expect("json"),
        json!([
            {"path": "data/in.csv", "content": "a,b\n"},
            {"path": "raw.bin", "content_base64": "AAEC"},
        ])
    );
    assert!(parse_input_files(None, &limits()).expect("none").is_empty());
}

#[test]
fn path_tricks_are_refused() {
    for path in [
        "",
        "/etc/passwd",
        "../escape",
        "data/../../escape",
        "a/./b",
        "a//b",
        "dir/",
        ".",
        "nul\u{0}byte",
        "line\nbreak",
    ] {
        let files = json!([{ "path": path, "content": "x" }]);
        assert_eq!(code(files), ErrorCode::InvalidFilePath, "{path:?}");
    }
    let deep = vec!["d"; 17].join("/");
    assert_eq!(
        code(json!([{ "path": deep, "content": "" }])),
        ErrorCode::InvalidFilePath
    );
    assert_eq!(
        code(json!([{ "path": "x".repeat(256), "content": "" }])),
        ErrorCode::InvalidFilePath
    );
    // Names that look odd but stay inside are fine.
    for path in ["..data", "a..b/c", ".hidden", "outputs/seed.txt", "é/ü.txt"] {
        let files = json!([{ "path": path, "content": "x" }]);
        assert!(
            parse_input_files(Some(files), &limits()).is_ok(),
            "{path:?}"
        );
    }
}

#[test]
fn clashing_paths_are_refused() {
    let twice = json!([{"path": "a", "content": ""}, {"path": "a", "content": ""}]);
    assert_eq!(code(twice), ErrorCode::InvalidFilePath);
    let file_and_dir = json!([{"path": "a/b/c", "content": ""}, {"path": "a/b", "content": ""}]);
    assert_eq!(code(file_and_dir), ErrorCode::InvalidFilePath);
}

#[test]
fn each_limit_has_its_code() {
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"path": format!("f{i}"), "content": ""}))
        .collect();
    assert_eq!(code(Value::Array(four)), ErrorCode::TooManyInputFiles);
    assert_eq!(
        code(json!([{"path": "big", "content": "x".repeat(11)}])),
        ErrorCode::InputFileTooLarge
    );
    // 12 bytes decoded from 16 of base64: the decoded size counts.
    assert_eq!(
        code(json!([{"path": "big", "content_base64": "AAAAAAAAAAAAAAAA"}])),
        ErrorCode::InputFileTooLarge
    );
    let total = json!([
        {"path": "a", "content": "x".repeat(8)},
        {"path": "b", "content": "x".repeat(8)},
    ]);
    assert_eq!(code(total), ErrorCode::InputFilesTooLarge);
}

#[test]
fn malformed_entries_are_invalid_requests() {
    for files in [
        json!("a.txt"),
        json!([5]),
        json!([{"content": "x"}]),
        json!([{"path": "a"}]),
        json!([{"path": "a", "content": 5}]),
        json!([{"path": "a", "content": "x", "content_base64": "eA=="}]),
        json!([{"path": "a", "content_base64": "not base64!"}]),
    ] {
        assert_eq!(code(files.clone()), ErrorCode::InvalidRequest, "{files}");
    }
}

#[test]
fn content_types_follow_the_extension() {
    assert_eq!(content_type("outputs/plot.png"), "image/png");
    assert_eq!(content_type("outputs/PLOT.JPG"), "image/jpeg");
    assert_eq!(content_type("outputs/table.csv"), "text/csv");
    assert_eq!(content_type("outputs/blob"), "application/octet-stream");
    assert_eq!(
        content_type("outputs/dir.d/blob"),
        "application/octet-stream"
    );
}
