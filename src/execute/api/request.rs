//! The `POST /execute` request: checked by hand so every rejection is a precise JSON error.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};
use super::files::{parse_input_files, InputFile};
use crate::config::InputFileLimits;
use crate::limits::ByteSize;

/// A validated request.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecuteRequest {
    pub script: String,
    /// Passed as `main(**args)`.
    pub args: Map<String, Value>,
    /// The client's wall-clock limit; the server clamps it to its own maximum.
    pub timeout: Option<Duration>,
    /// Written into the script's working directory before `main()` runs.
    pub files: Vec<InputFile>,
    /// How the code runs: a script's `main()` (the default) or a notebook cell.
    pub mode: Mode,
    /// Save the open matplotlib figures under `outputs/` once the code has run. Not a field of
    /// `/execute`: the MCP door asks for it, to return every figure as an image.
    pub save_figures: bool,
    /// A session to start or continue, when the call runs in one.
    pub session: Option<SessionRequest>,
    /// Who asks (the API key's name): a session is its caller's alone. Not a field of the body:
    /// the front door sets it once the caller is authenticated.
    pub caller: String,
}

/// What a request asks of sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionRequest {
    /// Start a new session (the service names it).
    New,
    /// Continue the session with this id.
    Continue(String),
}

/// The caller of a service with no API key: everyone, alike.
pub const ANONYMOUS: &str = "anonymous";

/// How the harness runs the code (layer/harness_cell.py).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Module code, then `main(**args)`, whose return value is the result.
    #[default]
    Script,
    /// A notebook cell: module code whose last expression statement is the result; `args` are
    /// its globals.
    Cell,
    /// A cell unless the code defines a top-level `main()`.
    Auto,
}

impl Mode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Script => "script",
            Self::Cell => "cell",
            Self::Auto => "auto",
        }
    }
}

/// Accepts `application/json` and `application/<anything>+json`, with any parameters.
pub fn check_content_type(content_type: Option<&str>) -> Result<(), ApiError> {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        Some(other) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("expected Content-Type application/json, got {other}"),
        )),
        None => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type application/json; the request has no Content-Type",
        )),
    }
}

impl ExecuteRequest {
    /// Parses and validates a body; `max_script` bounds the script's UTF-8 size, and input
    /// files are held to the default limits.
    pub fn parse(body: &[u8], max_script: ByteSize) -> Result<Self, ApiError> {
        Self::parse_with(body, max_script, &InputFileLimits::default())
    }

    /// As [`Self::parse`], with the service's limits on input files.
    pub fn parse_with(
        body: &[u8],
        max_script: ByteSize,
        file_limits: &InputFileLimits,
    ) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|error| invalid(format!("the body is not valid JSON: {error}")))?;
        let Value::Object(mut fields) = value else {
            return Err(invalid(
                "the body must be a JSON object with a \"script\" field",
            ));
        };
        let script = match fields.remove("script") {
            Some(Value::String(script)) => script,
            Some(_) => return Err(invalid("\"script\" must be a string")),
            None => return Err(invalid("the body has no \"script\" field")),
        };
        if script.len() as u64 > max_script.as_bytes() {
            return Err(ApiError::new(
                ErrorCode::ScriptTooLarge,
                format!(
                    "the script is {} bytes, over the limit of {}",
                    script.len(),
                    max_script
                ),
            )
            .with("limit_bytes", max_script.as_bytes()));
        }
        Ok(Self {
            script,
            args: parse_args(fields.remove("args"))?,
            timeout: parse_timeout(fields.remove("timeout_s"))?,
            files: parse_input_files(fields.remove("files"), file_limits)?,
            mode: parse_mode(fields.remove("mode"))?,
            save_figures: false,
            session: parse_session(fields.remove("session"))?,
            caller: ANONYMOUS.to_owned(),
        })
    }
}

fn parse_args(args: Option<Value>) -> Result<Map<String, Value>, ApiError> {
    match args {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(args)) => {
            // Python keyword arguments must be identifiers; anything else could never bind.
            match args.keys().find(|key| !is_identifier(key)) {
                Some(bad) => Err(invalid(format!(
                    "\"args\" key {bad:?} is not a valid Python identifier"
                ))),
                None => Ok(args),
            }
        }
        Some(_) => Err(invalid(
            "\"args\" must be a JSON object of keyword arguments",
        )),
    }
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c == '_' || c.is_alphabetic());
    first_ok && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn parse_timeout(timeout: Option<Value>) -> Result<Option<Duration>, ApiError> {
    let seconds = match timeout {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s > 0.0 && s.is_finite() => Ok(Some(Duration::from_secs_f64(s.min(86_400.0)))),
        _ => Err(invalid(
            "\"timeout_s\" must be a positive number of seconds",
        )),
    }
}

fn parse_mode(mode: Option<Value>) -> Result<Mode, ApiError> {
    match mode.as_ref().map(|mode| (mode, mode.as_str())) {
        None | Some((Value::Null, _)) | Some((_, Some("script"))) => Ok(Mode::Script),
        Some((_, Some("cell"))) => Ok(Mode::Cell),
        Some((_, Some("auto"))) => Ok(Mode::Auto),
        Some(_) => Err(invalid("\"mode\" must be \"script\", \"cell\" or \"auto\"")),
    }
}

/// `"new"`, a session's id (32 hexadecimal digits, as the service names them), or nothing.
pub fn parse_session(session: Option<Value>) -> Result<Option<SessionRequest>, ApiError> {
    match session {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text == "new" => Ok(Some(SessionRequest::New)),
        Some(Value::String(id)) if is_session_id(&id) => Ok(Some(SessionRequest::Continue(id))),
        Some(_) => Err(invalid(
            "\"session\" must be \"new\" or the id of a session (32 hexadecimal digits)",
        )),
    }
}

fn is_session_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ExecuteRequest, ApiError> {
        ExecuteRequest::parse(body.as_bytes(), ByteSize::kib(50))
    }

    fn code(body: &str) -> ErrorCode {
        parse(body).expect_err("should be rejected").code
    }

    #[test]
    fn accepts_script_args_and_timeout() {
        let request = parse(r#"{"script":"def main(x): return x","args":{"x":1},"timeout_s":2.5}"#)
            .expect("valid");
        assert_eq!(request.args["x"], 1);
        assert_eq!(request.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(request.mode, Mode::Script);
    }

    #[test]
    fn mode_is_script_cell_or_auto() {
        let mode = |body: &str| parse(body).map(|request| request.mode);
        assert_eq!(
            mode(r#"{"script":"1","mode":"cell"}"#).ok(),
            Some(Mode::Cell)
        );
        assert_eq!(
            mode(r#"{"script":"1","mode":"auto"}"#).ok(),
            Some(Mode::Auto)
        );
        assert_eq!(
            mode(r#"{"script":"1","mode":null}"#).ok(),
            Some(Mode::Script)
        );
        assert_eq!(
            code(r#"{"script":"1","mode":"notebook"}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(r#"{"script":"1","mode":1}"#),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn rejects_every_malformed_shape() {
        assert_eq!(code("not json"), ErrorCode::InvalidRequest);
        assert_eq!(code("[1]"), ErrorCode::InvalidRequest);
        assert_eq!(code("{}"), ErrorCode::InvalidRequest);
        assert_eq!(code(r#"{"script":5}"#), ErrorCode::InvalidRequest);
        assert_eq!(
            code(r#"{"script":"","args":[1]}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(r#"{"script":"","args":{"a b":1}}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(r#"{"script":"","timeout_s":-1}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(r#"{"script":"","timeout_s":"5"}"#),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn script_size_counts_utf8_bytes() {
        let script = "é".repeat(30 * 1024); // 60 KiB of UTF-8 in 30 Ki characters
        let body = serde_json::json!({ "script": script }).to_string();
        assert_eq!(code(&body), ErrorCode::ScriptTooLarge);
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(Some("application/json; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/vnd.api+json")).is_ok());
        assert!(check_content_type(Some("text/plain")).is_err());
        assert!(check_content_type(None).is_err());
    }
}
