//! A `run_python` result. Its structured content is the outcome: `/execute`'s envelope, or its
//! error body, with output cut to fit a model's context and file contents left to the content
//! blocks. Its content blocks are a text summary first (for clients without structured
//! content), then every image the code left under `outputs/` as image content, then the other
//! files as embedded resources. A failed execution is a result with `isError`, not a protocol
//! error: the model reads what went wrong and can try again.

use base64::Engine as _;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::Value;

use super::outcome::{FileEntry, Outcome, Truncated, Usage};
use super::summary::{self, cut};
use crate::execute::api::{ApiError, ExecuteResponse, OutputFile};

/// What the reply keeps of each, in characters: about a few thousand tokens each, so one call
/// cannot flood a model's context. Cut text keeps its start and end around a marker.
pub const STDOUT_CHARS: usize = 20_000;
pub const STDERR_CHARS: usize = 10_000;
pub const RESULT_CHARS: usize = 20_000;
pub const TRACEBACK_CHARS: usize = 10_000;
pub const TEXT_FILE_CHARS: usize = 20_000;
/// A binary file that is not an image is embedded up to this size, only listed beyond it.
pub const BLOB_BYTES: usize = 256 * 1024;
/// Image types models take as images; any other image type (SVG) is sent as a resource.
const IMAGE_TYPES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];
/// The URI scheme output files are named with: they live in the sandbox, not on the client.
const FILE_URI_PREFIX: &str = "sandbox:///";

/// The tool result of one execution's answer.
pub fn tool_result(answer: Result<ExecuteResponse, ApiError>) -> CallToolResult {
    let (mut outcome, files) = match answer {
        Ok(response) => success(response),
        Err(error) => (failure(error), Vec::new()),
    };
    let mut blocks = Vec::with_capacity(files.len() + 1);
    for file in &files {
        let (block, entry) = file_block(file);
        blocks.extend(block);
        outcome.files.push(entry);
    }
    blocks.insert(0, ContentBlock::text(summary::render(&outcome)));
    let structured = serde_json::to_value(&outcome).unwrap_or_default();
    let mut result = if outcome.ok {
        CallToolResult::success(blocks)
    } else {
        CallToolResult::error(blocks)
    };
    result.structured_content = Some(structured);
    result
}

fn success(response: ExecuteResponse) -> (Outcome, Vec<OutputFile>) {
    let raw = response.result.get();
    let (result, result_cut) = if raw.chars().count() > RESULT_CHARS {
        (Value::String(cut(raw, RESULT_CHARS)), true)
    } else {
        (serde_json::from_str(raw).unwrap_or(Value::Null), false)
    };
    let outcome = Outcome {
        ok: true,
        result,
        display: response.display,
        stdout: cut(&response.stdout, STDOUT_CHARS),
        stderr: cut(&response.stderr, STDERR_CHARS),
        truncated: Truncated {
            stdout: response.truncated.stdout || response.stdout.chars().count() > STDOUT_CHARS,
            stderr: response.truncated.stderr || response.stderr.chars().count() > STDERR_CHARS,
            result: result_cut,
        },
        usage: Some(Usage {
            wall_ms: response.usage.wall_ms,
            cpu_ms: response.usage.cpu_ms,
            peak_memory_bytes: response.usage.peak_memory_bytes,
        }),
        sandbox: Some(response.sandbox.to_owned()),
        session: response
            .session
            .map(|session| serde_json::to_value(session).unwrap_or_default()),
        ..Outcome::default()
    };
    (outcome, response.files)
}

/// The error body's fields, in their own places; the rest under `details`.
fn failure(error: ApiError) -> Outcome {
    let mut details = error.details;
    let mut text = |key: &str| match details.remove(key) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    };
    let stdout = text("stdout").unwrap_or_default();
    let stderr = text("stderr").unwrap_or_default();
    let mut outcome = Outcome {
        code: Some(error.code.as_str().to_owned()),
        error: Some(error.message),
        exception_type: text("exception_type"),
        traceback: text("traceback").map(|traceback| cut(&traceback, TRACEBACK_CHARS)),
        stage: text("where"),
        sandbox: text("sandbox"),
        retry_after_s: error.retry_after_s,
        ..Outcome::default()
    };
    let streams: Truncated = details
        .remove("truncated")
        .and_then(|value| serde_json::from_value(value).ok())
        .unwrap_or_default();
    outcome.truncated = Truncated {
        stdout: streams.stdout || stdout.chars().count() > STDOUT_CHARS,
        stderr: streams.stderr || stderr.chars().count() > STDERR_CHARS,
        result: false,
    };
    outcome.stdout = cut(&stdout, STDOUT_CHARS);
    outcome.stderr = cut(&stderr, STDERR_CHARS);
    outcome.usage = details
        .remove("usage")
        .and_then(|value| serde_json::from_value(value).ok());
    outcome.session = details.remove("session");
    outcome.line = details.remove("line").and_then(|value| value.as_u64());
    outcome.column = details.remove("column").and_then(|value| value.as_u64());
    details.remove("isolation");
    outcome.details = details;
    outcome
}

/// The content block of one output file (none when it is only listed), and its entry.
fn file_block(file: &OutputFile) -> (Option<ContentBlock>, FileEntry) {
    let content_type = file.content_type;
    let uri = file_uri(&file.path);
    let (block, returned_as) = if IMAGE_TYPES.contains(&content_type) {
        let block = ContentBlock::image(file.content_base64.clone(), content_type);
        (Some(block), "image")
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&file.content_base64)
            .unwrap_or_default();
        match String::from_utf8(bytes) {
            Ok(text) if is_text(content_type) || is_plain_text(content_type, &text) => {
                let text = cut(&text, TEXT_FILE_CHARS);
                let resource = ResourceContents::text(text, uri).with_mime_type(content_type);
                (Some(ContentBlock::resource(resource)), "text")
            }
            _ if file.bytes as usize <= BLOB_BYTES => {
                let resource = ResourceContents::blob(file.content_base64.clone(), uri)
                    .with_mime_type(content_type);
                (Some(ContentBlock::resource(resource)), "blob")
            }
            _ => (None, "listed"),
        }
    };
    let entry = FileEntry {
        path: file.path.clone(),
        bytes: file.bytes,
        content_type: content_type.to_owned(),
        returned_as: returned_as.to_owned(),
    };
    (block, entry)
}

fn is_text(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.ends_with("+xml")
        || content_type.ends_with("/json")
        || content_type.ends_with("/xml")
        || content_type.ends_with("/javascript")
}

/// A file of no known type whose bytes read as text (a `.py`, a `.yaml`) is sent as text.
fn is_plain_text(content_type: &str, text: &str) -> bool {
    content_type == "application/octet-stream" && !text.contains('\0')
}

/// `sandbox:///outputs/...`, every byte but unreserved characters and `/` percent-encoded.
fn file_uri(path: &str) -> String {
    let mut uri = String::from(FILE_URI_PREFIX);
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(result: &str, stdout: &str) -> ExecuteResponse {
        ExecuteResponse {
            result: serde_json::value::RawValue::from_string(result.to_owned()).expect("JSON"),
            display: None,
            stdout: stdout.to_owned(),
            stderr: String::new(),
            truncated: crate::execute::api::Truncated::default(),
            usage: crate::execute::api::Usage::default(),
            sandbox: "nsjail",
            isolation: Vec::new(),
            files: Vec::new(),
            skipped_files: Vec::new(),
            session: None,
            saved_state: None,
        }
    }

    #[test]
    fn a_success_is_structured_and_summarized() {
        let result = tool_result(Ok(response(r#"{"mean":3.0}"#, "hi\n")));
        assert_eq!(result.is_error, Some(false));
        let outcome = result.structured_content.expect("structured content");
        assert_eq!(outcome["result"], serde_json::json!({"mean": 3.0}));
        assert_eq!(outcome["ok"], true);
        let text = result.content[0].as_text().expect("a summary").text.clone();
        assert!(
            text.starts_with("Result: {\"mean\":3.0}\nstdout:\nhi\n"),
            "{text}"
        );
    }

    #[test]
    fn large_results_and_output_are_cut_with_a_marker() {
        let big = format!("\"{}\"", "x".repeat(RESULT_CHARS + 10));
        let result = tool_result(Ok(response(&big, &"y".repeat(STDOUT_CHARS * 2))));
        let outcome = result.structured_content.expect("structured content");
        assert_eq!(outcome["truncated"]["result"], true);
        assert_eq!(outcome["truncated"]["stdout"], true);
        assert!(outcome["result"]
            .as_str()
            .is_some_and(|r| r.contains("characters cut here")));
        let stdout = outcome["stdout"].as_str().expect("stdout");
        assert!(
            stdout.chars().count() < STDOUT_CHARS + 200,
            "{}",
            stdout.len()
        );
    }

    #[test]
    fn a_failure_is_an_error_result_with_its_code() {
        let error = ApiError::new(crate::execute::api::ErrorCode::Timeout, "too slow")
            .with("stdout", "so far")
            .with("isolation", serde_json::json!(["seccomp"]))
            .with("limit_bytes", 5);
        let result = tool_result(Err(error));
        assert_eq!(result.is_error, Some(true));
        let outcome = result.structured_content.expect("structured content");
        assert_eq!(outcome["code"], "TIMEOUT");
        assert_eq!(outcome["stdout"], "so far");
        assert_eq!(outcome["details"], serde_json::json!({"limit_bytes": 5}));
    }

    #[test]
    fn file_uris_are_percent_encoded() {
        assert_eq!(
            file_uri("outputs/a b/é.csv"),
            "sandbox:///outputs/a%20b/%C3%A9.csv"
        );
    }

    #[test]
    fn text_types() {
        assert!(is_text("text/csv"));
        assert!(is_text("application/json"));
        assert!(is_text("image/svg+xml"));
        assert!(!is_text("application/octet-stream"));
        assert!(!is_text("image/png"));
    }
}
