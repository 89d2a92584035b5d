//! The error codes of the API contract and the one place they become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// Every failure a client can see (docs/design.md section 1), plus the two routing failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    UnsupportedMediaType,
    ScriptTooLarge,
    /// The request body did not arrive within `BODY_READ_TIMEOUT_S`.
    RequestTimeout,
    SyntaxError,
    NoMain,
    Exception,
    NonJsonReturn,
    EmptyOutput,
    Timeout,
    MemoryLimit,
    ResultTooLarge,
    Overloaded,
    Unauthorized,
    /// The caller's key is over its concurrency or rate quota.
    QuotaExceeded,
    SandboxError,
    /// A response too large to return inline could not be written to S3.
    OffloadFailed,
    /// An input file's path is absolute, leaves the working directory, or clashes with another.
    InvalidFilePath,
    /// More input files than `MAX_INPUT_FILES`.
    TooManyInputFiles,
    /// An input file over `FILE_SIZE_LIMIT_KIB`.
    InputFileTooLarge,
    /// Input files together over `MAX_INPUT_FILES_KIB`.
    InputFilesTooLarge,
    /// The script left more files under `outputs/` than `MAX_OUTPUT_FILES`.
    TooManyOutputFiles,
    /// The script's files under `outputs/` add up to more than `MAX_OUTPUT_FILES_KIB`.
    OutputFilesTooLarge,
    NotFound,
    MethodNotAllowed,
    /// No such session for the caller: never existed, expired, or another key's.
    SessionNotFound,
    /// Another call of the session is running.
    SessionBusy,
    /// Another call of the session saved its state first (several instances).
    SessionConflict,
    /// The call would have saved a state over `SESSION_STATE_MAX_MIB`.
    SessionTooLarge,
    /// The session's stored state failed authentication.
    SessionStateRejected,
    /// The caller holds `SESSIONS_PER_KEY` sessions already.
    TooManySessions,
}

impl ErrorCode {
    /// Every code, so the OpenAPI document can be checked against them (src/http/openapi.rs, whose
    /// tests also fail when a variant is missing here).
    pub const ALL: [Self; 31] = [
        Self::InvalidRequest,
        Self::UnsupportedMediaType,
        Self::ScriptTooLarge,
        Self::RequestTimeout,
        Self::SyntaxError,
        Self::NoMain,
        Self::Exception,
        Self::NonJsonReturn,
        Self::EmptyOutput,
        Self::Timeout,
        Self::MemoryLimit,
        Self::ResultTooLarge,
        Self::Overloaded,
        Self::Unauthorized,
        Self::QuotaExceeded,
        Self::SandboxError,
        Self::OffloadFailed,
        Self::InvalidFilePath,
        Self::TooManyInputFiles,
        Self::InputFileTooLarge,
        Self::InputFilesTooLarge,
        Self::TooManyOutputFiles,
        Self::OutputFilesTooLarge,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::SessionNotFound,
        Self::SessionBusy,
        Self::SessionConflict,
        Self::SessionTooLarge,
        Self::SessionStateRejected,
        Self::TooManySessions,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::ScriptTooLarge => "SCRIPT_TOO_LARGE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::SyntaxError => "SYNTAX_ERROR",
            Self::NoMain => "NO_MAIN",
            Self::Exception => "EXCEPTION",
            Self::NonJsonReturn => "NON_JSON_RETURN",
            Self::EmptyOutput => "EMPTY_OUTPUT",
            Self::Timeout => "TIMEOUT",
            Self::MemoryLimit => "MEMORY_LIMIT",
            Self::ResultTooLarge => "RESULT_TOO_LARGE",
            Self::Overloaded => "OVERLOADED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::QuotaExceeded => "QUOTA_EXCEEDED",
            Self::SandboxError => "SANDBOX_ERROR",
            Self::OffloadFailed => "OFFLOAD_FAILED",
            Self::InvalidFilePath => "INVALID_FILE_PATH",
            Self::TooManyInputFiles => "TOO_MANY_INPUT_FILES",
            Self::InputFileTooLarge => "INPUT_FILE_TOO_LARGE",
            Self::InputFilesTooLarge => "INPUT_FILES_TOO_LARGE",
            Self::TooManyOutputFiles => "TOO_MANY_OUTPUT_FILES",
            Self::OutputFilesTooLarge => "OUTPUT_FILES_TOO_LARGE",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::SessionBusy => "SESSION_BUSY",
            Self::SessionConflict => "SESSION_CONFLICT",
            Self::SessionTooLarge => "SESSION_TOO_LARGE",
            Self::SessionStateRejected => "SESSION_STATE_REJECTED",
            Self::TooManySessions => "TOO_MANY_SESSIONS",
        }
    }

    pub const fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest | Self::InvalidFilePath => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::ScriptTooLarge
            | Self::TooManyInputFiles
            | Self::InputFileTooLarge
            | Self::InputFilesTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::SyntaxError
            | Self::NoMain
            | Self::Exception
            | Self::NonJsonReturn
            | Self::EmptyOutput
            | Self::Timeout
            | Self::MemoryLimit
            | Self::ResultTooLarge
            | Self::TooManyOutputFiles
            | Self::OutputFilesTooLarge
            | Self::SessionTooLarge
            | Self::SessionStateRejected => StatusCode::UNPROCESSABLE_ENTITY,
            Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::SessionBusy | Self::SessionConflict => StatusCode::CONFLICT,
            Self::TooManySessions => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::SandboxError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::OffloadFailed => StatusCode::BAD_GATEWAY,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The codes a script's own harness frame may carry; anything else in a frame is a forgery.
    pub fn from_script_frame(code: &str) -> Option<Self> {
        Some(match code {
            "SYNTAX_ERROR" => Self::SyntaxError,
            "NO_MAIN" => Self::NoMain,
            "EXCEPTION" => Self::Exception,
            "NON_JSON_RETURN" => Self::NonJsonReturn,
            "MEMORY_LIMIT" => Self::MemoryLimit,
            "RESULT_TOO_LARGE" => Self::ResultTooLarge,
            _ => return None,
        })
    }
}

/// A failed request: its code, one readable sentence, and whatever else helps the client
/// (stdout and stderr so far, traceback, line and column...), flattened into the JSON body.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Map<String, Value>,
    /// Seconds, sent as `Retry-After` (`OVERLOADED`, `QUOTA_EXCEEDED` and `SESSION_BUSY` set it).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Map::new(),
            retry_after_s: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn with_details(mut self, details: Map<String, Value>) -> Self {
        for (key, value) in details {
            self.details.entry(key).or_insert(value);
        }
        self
    }

    /// The JSON body: `error` and `code` first, then the details (which can never replace them,
    /// nor give the `request_id` the front door adds: src/http/context.rs).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), Value::from(self.message.clone()));
        body.insert("code".into(), Value::from(self.code.as_str()));
        for (key, value) in &self.details {
            if key != "request_id" {
                body.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.code.status(), axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after_s {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        // The request log reads the outcome from here.
        response.extensions_mut().insert(self.code);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_never_replace_error_or_code() {
        let error = ApiError::new(ErrorCode::NoMain, "no main")
            .with("code", "FORGED")
            .with("request_id", "FORGED")
            .with("stdout", "x");
        let body = error.body();
        assert_eq!(body["code"], "NO_MAIN");
        assert_eq!(body["error"], "no main");
        assert_eq!(body["stdout"], "x");
        assert!(body.get("request_id").is_none());
    }

    #[test]
    fn frames_cannot_claim_service_codes() {
        assert_eq!(ErrorCode::from_script_frame("TIMEOUT"), None);
        assert_eq!(ErrorCode::from_script_frame("SANDBOX_ERROR"), None);
        assert_eq!(
            ErrorCode::from_script_frame("NO_MAIN"),
            Some(ErrorCode::NoMain)
        );
    }
}
