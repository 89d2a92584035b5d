//! The MCP front door: `/mcp` speaks the Model Context Protocol's Streamable HTTP transport
//! (through `rmcp`, the official Rust SDK) and offers one tool, `run_python`, which runs code
//! through the same executor, admission, limits and sandbox as `POST /execute`.
//!
//! The transport runs stateless: every POST carries one JSON-RPC message and is answered on its
//! own, as a JSON body, by whichever instance receives it. Nothing is kept between requests, so
//! it works behind a Lambda function URL (which buffers each response) and on Cloud Run without
//! session affinity. Without sessions there is no server-sent event stream to open (GET) and no
//! session to end (DELETE): both answer 405, as the transport allows.
//!
//! Before `rmcp` sees a request, it passes the service's own checks, in the service's own JSON
//! errors: the API key and its quota (the route's layer, src/http/auth.rs), then the body's
//! size and read deadline.

mod content;
mod outcome;
mod summary;
mod tool;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;

use crate::execute::api::{ApiError, ErrorCode};
use crate::http::App;

pub use outcome::Outcome;
pub use tool::{PythonTools, RUN_PYTHON};

/// The path the MCP endpoint is served on.
pub const PATH: &str = "/mcp";
/// The transport's refusals are one line of text; more is not a message worth relaying.
const TRANSPORT_MESSAGE_LIMIT: usize = 64 * 1024;

/// The Streamable HTTP service over [`PythonTools`], for one app.
type McpService = StreamableHttpService<PythonTools, NeverSessionManager>;

/// The MCP endpoint's state: the app and the transport built for it once.
#[derive(Clone)]
pub struct Mcp {
    app: Arc<App>,
    service: McpService,
}

impl std::fmt::Debug for Mcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcp").finish_non_exhaustive()
    }
}

impl Mcp {
    pub fn new(app: Arc<App>) -> Self {
        let tools = PythonTools::new(Arc::clone(&app));
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_max_request_body_bytes(app.config.max_body.as_usize())
            // The Host check guards servers on a developer's loopback against DNS rebinding;
            // this one is reached by its platform's host names (a function URL, a run.app
            // domain, a custom domain), and the API key is what guards it.
            .disable_allowed_hosts();
        let service = StreamableHttpService::new(
            move || Ok(tools.clone()),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        Self { app, service }
    }
}

/// Every method on `/mcp`: POST goes to the transport once the request passed the service's
/// checks; anything else is refused here.
pub async fn serve(State(mcp): State<Mcp>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let config = &mcp.app.config;
    if parts.method != Method::POST {
        let mut response = crate::http::app::refuse_unread(method_not_allowed(&parts.method), body);
        let allow = HeaderValue::from_static("POST");
        response.headers_mut().insert(header::ALLOW, allow);
        return response;
    }
    let body =
        match crate::http::body::read(body, config.max_body, config.http.body_read_timeout).await {
            Ok(body) => body,
            Err(error) => return crate::http::app::closing(ApiError::from(error).into_response()),
        };
    let request = Request::from_parts(parts, Body::from(body));
    json_errors(mcp.service.handle(request).await.map(Body::new)).await
}

/// What `/health` says of this door.
pub fn health() -> serde_json::Value {
    json!({
        "path": PATH,
        "transport": "streamable-http",
        "stateless": true,
        "tools": [RUN_PYTHON],
    })
}

fn method_not_allowed(method: &Method) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{method} is not allowed on {PATH}: this MCP endpoint is stateless, with no event \
             stream to open and no session to end; send each JSON-RPC message with POST"
        ),
    )
}

/// The transport's own refusals (a missing `Accept`, a body that is not JSON-RPC...) come as
/// plain text; they are given the service's JSON error body, keeping their status.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The transport's messages are a line of text; a failed read leaves only the status.
    let text = axum::body::to_bytes(body, TRANSPORT_MESSAGE_LIMIT)
        .await
        .unwrap_or_else(|_| Bytes::new());
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    let code = transport_code(status);
    let body = json!({ "error": message, "code": code.as_str() }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.extensions.insert(code);
    Response::from_parts(parts, Body::from(body))
}

/// The error code of a refusal of the transport, by its status.
fn transport_code(status: StatusCode) -> ErrorCode {
    match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::ScriptTooLarge,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        status if status.is_server_error() => ErrorCode::SandboxError,
        // 400 (not JSON-RPC, a bad protocol version header), 406 (Accept lacks a type the
        // transport needs), 403 (a refused Origin).
        _ => ErrorCode::InvalidRequest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_refusals_get_the_closest_code() {
        assert_eq!(
            transport_code(StatusCode::NOT_ACCEPTABLE),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            transport_code(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ErrorCode::UnsupportedMediaType
        );
        assert_eq!(
            transport_code(StatusCode::INTERNAL_SERVER_ERROR),
            ErrorCode::SandboxError
        );
    }
}
