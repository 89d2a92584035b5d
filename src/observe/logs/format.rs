//! One log line in each platform's own shape. Every style carries the fields of the spans
//! around the event (outermost first: a request's id and trace, the Lambda runtime's
//! `requestId`), then the event's own, on one line:
//!
//! - [`LogStyle::CloudLogging`]: Cloud Logging's special fields, so the console shows the
//!   severity, the message, the request (`httpRequest`, from access lines) and links the line
//!   to its trace (`logging.googleapis.com/trace`, `.../spanId`, `.../trace_sampled`);
//! - [`LogStyle::Json`]: `timestamp`, `level`, `message`, the fields, `target`; on Lambda
//!   (`lambda`), the level names Lambda's log-level filter reads and the trace as `xrayTraceId`;
//! - [`LogStyle::Text`]: `timestamp LEVEL message key=value ...` for people.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use tracing::Level;

use super::{LogStyle, SPAN_ID, TRACE_ID, TRACE_SAMPLED};

/// What one line says, gathered from the event and its spans.
#[derive(Debug)]
pub struct Line<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    pub level: Level,
    pub target: &'a str,
    /// Whether the event is an access line (one per request), whose fields form `httpRequest`.
    pub access: bool,
    /// The spans' fields, outermost first, then the event's (the message among them).
    pub fields: Map<String, Value>,
}

/// The line, without its newline.
pub fn render(style: LogStyle, line: Line) -> String {
    match style {
        LogStyle::Text => text(line),
        LogStyle::Json { lambda } => json(line, lambda),
        LogStyle::CloudLogging => cloud_logging(line),
    }
}

fn json(line: Line, lambda: bool) -> String {
    let Line {
        time,
        level,
        target,
        mut fields,
        ..
    } = line;
    let mut out = Map::new();
    out.insert("timestamp".into(), time.into());
    // Lambda's filter reads TRACE, DEBUG, INFO, WARN, ERROR, which is tracing's spelling too.
    out.insert("level".into(), level.as_str().into());
    out.insert("message".into(), take_message(&mut fields));
    if lambda && !fields.contains_key("xrayTraceId") {
        if let Some(trace) = fields.get(TRACE_ID).and_then(Value::as_str) {
            let (time, random) = trace.split_at(trace.len().min(8));
            out.insert("xrayTraceId".into(), format!("1-{time}-{random}").into());
        }
    }
    out.extend(fields);
    out.insert("target".into(), target.into());
    Value::Object(out).to_string()
}

fn cloud_logging(line: Line) -> String {
    let Line {
        time,
        level,
        access,
        mut fields,
        ..
    } = line;
    let mut out = Map::new();
    out.insert("severity".into(), severity(level).into());
    out.insert("time".into(), time.into());
    out.insert("message".into(), take_message(&mut fields));
    if let Some(trace) = fields.remove(TRACE_ID) {
        // The preferred form is the bare id; the console resolves the project itself.
        out.insert("logging.googleapis.com/trace".into(), trace);
    }
    if let Some(span) = fields.remove(SPAN_ID) {
        out.insert("logging.googleapis.com/spanId".into(), span);
    }
    if let Some(sampled) = fields.remove(TRACE_SAMPLED) {
        out.insert("logging.googleapis.com/trace_sampled".into(), sampled);
    }
    if access {
        out.insert("httpRequest".into(), http_request(&mut fields));
    }
    out.extend(fields);
    Value::Object(out).to_string()
}

/// Cloud Logging's `HttpRequest`, from an access line's fields (which it takes out).
fn http_request(fields: &mut Map<String, Value>) -> Value {
    let mut request = Map::new();
    let mut moved = |from: &str, to: &str| {
        if let Some(value) = fields.remove(from) {
            request.insert(to.to_owned(), value);
        }
    };
    moved("method", "requestMethod");
    moved("path", "requestUrl");
    moved("status", "status");
    moved("user_agent", "userAgent");
    moved("protocol", "protocol");
    // int64 fields are strings in the LogEntry's JSON, durations are "1.5s".
    if let Some(bytes) = fields.remove("response_bytes").and_then(|v| v.as_u64()) {
        request.insert("responseSize".into(), bytes.to_string().into());
    }
    if let Some(ms) = fields.get("duration_ms").and_then(Value::as_f64) {
        request.insert("latency".into(), format!("{:.3}s", ms / 1000.0).into());
    }
    Value::Object(request)
}

fn severity(level: Level) -> &'static str {
    match level {
        Level::TRACE | Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

fn take_message(fields: &mut Map<String, Value>) -> Value {
    fields.remove("message").unwrap_or_else(|| "".into())
}

fn text(line: Line) -> String {
    let Line {
        time,
        level,
        mut fields,
        ..
    } = line;
    let message = take_message(&mut fields);
    let mut out = format!("{time} {:>5} {}", level.as_str(), plain(&message));
    for (key, value) in fields {
        let _ = write!(out, " {key}={}", plain(&value));
    }
    out
}

/// A value as text: strings without their quotes, unless they hold a space, a quote or a
/// control character (a caller's header can hold any), which JSON's quoting escapes.
fn plain(value: &Value) -> String {
    let bare = |text: &str| {
        !text.is_empty()
            && !text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"')
    };
    match value {
        Value::String(text) if bare(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(access: bool, fields: Value) -> Line<'static> {
        Line {
            time: "2026-01-02T03:04:05.000006Z".into(),
            level: Level::WARN,
            target: "python_executor::http",
            access,
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).expect("one JSON object")
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn cloud_logging_gets_its_special_fields() {
        let fields = json!({"request_id": "r-1", "trace_id": TRACE, "span_id": "000000000000004a",
            "trace_sampled": true, "message": "request", "method": "POST", "path": "/execute",
            "status": 422, "duration_ms": 1234.5, "response_bytes": 77, "code": "EXCEPTION"});
        let out = parsed(&render(LogStyle::CloudLogging, line(true, fields)));
        assert_eq!(out["severity"], "WARNING");
        assert_eq!(out["message"], "request");
        assert_eq!(out["logging.googleapis.com/trace"], TRACE);
        assert_eq!(out["logging.googleapis.com/spanId"], "000000000000004a");
        assert_eq!(out["logging.googleapis.com/trace_sampled"], true);
        let request = &out["httpRequest"];
        assert_eq!(request["requestMethod"], "POST");
        assert_eq!(request["requestUrl"], "/execute");
        assert_eq!(request["status"], 422);
        assert_eq!(request["latency"], "1.234s");
        assert_eq!(request["responseSize"], "77");
        assert_eq!(out["request_id"], "r-1");
        assert_eq!(out["code"], "EXCEPTION");
        assert!(out.get("level").is_none() && out.get("trace_id").is_none());
    }

    #[test]
    fn lambda_json_has_levels_its_filter_reads_and_an_xray_trace() {
        let fields = json!({"requestId": "aws-1", "request_id": "r-1", "trace_id": TRACE,
            "message": "the sandbox failed"});
        let out = parsed(&render(
            LogStyle::Json { lambda: true },
            line(false, fields),
        ));
        assert_eq!(out["level"], "WARN");
        assert_eq!(out["timestamp"], "2026-01-02T03:04:05.000006Z");
        assert_eq!(out["message"], "the sandbox failed");
        assert_eq!(out["requestId"], "aws-1");
        assert_eq!(out["request_id"], "r-1");
        assert_eq!(out["xrayTraceId"], "1-4bf92f35-77b34da6a3ce929d0e0e4736");
        let plain = parsed(&render(
            LogStyle::Json { lambda: false },
            line(false, json!({})),
        ));
        assert!(plain.get("xrayTraceId").is_none());
        assert_eq!(plain["target"], "python_executor::http");
    }

    #[test]
    fn text_is_one_readable_line() {
        let fields = json!({"message": "request", "path": "/a b"});
        let out = render(LogStyle::Text, line(false, fields));
        assert_eq!(
            out,
            "2026-01-02T03:04:05.000006Z  WARN request path=\"/a b\""
        );
        let forged = json!({"message": "m", "user_agent": "x\r\u{1b}[2J"});
        let out = render(LogStyle::Text, line(false, forged));
        assert!(out.ends_with("user_agent=\"x\\r\\u001b[2J\""), "{out}");
    }
}
