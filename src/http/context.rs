//! What every request carries through every front door (`/execute`, `/mcp`, the rest, over
//! HTTP and through Lambda's events), as layers around the router rather than code in each
//! handler:
//!
//! - an id: the caller's `X-Request-Id` when it is a sane one, else Lambda's request id, else
//!   a new UUID ([`MakeId`], with tower-http's `SetRequestIdLayer`), sent back as
//!   `X-Request-Id` (`PropagateRequestIdLayer`) and in every error body ([`track`]);
//! - a span ([`track`]) holding that id and the request's trace ([`TraceContext`]), so every
//!   line logged while it is served, in whichever module or task, says which request it
//!   belongs to; the key's name joins it once [`crate::http::auth`] knows it;
//! - one access line and the request's figures when it is answered.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Extensions, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::field::Empty;
use tracing::{Instrument, Level, Span};

use crate::execute::api::request::ANONYMOUS;
use crate::execute::api::ErrorCode;
use crate::http::App;
use crate::observe::logs::{ACCESS, SPAN_ID, TRACE_ID, TRACE_SAMPLED};
use crate::observe::metrics::RequestFigures;
use crate::observe::trace::TraceContext;

/// Longest request id taken from a caller; longer ones are replaced.
const MAX_ID_CHARS: usize = 128;
/// The route label of a request that matched none.
const UNMATCHED: &str = "unmatched";

/// A request's identity, in its extensions for whatever serves it (the MCP tool runs in a task
/// of its own and enters `span` itself).
#[derive(Clone, Debug)]
pub struct RequestContext {
    pub id: String,
    pub span: Span,
    /// The name of the key the request showed, once the API key check knows it.
    key: Arc<OnceLock<String>>,
}

impl RequestContext {
    /// Remembers the caller's key name, for the access line, the metrics and later log lines.
    pub fn set_key(&self, name: &str) {
        if self.key.set(name.to_owned()).is_ok() {
            self.span.record("key", name);
        }
    }

    pub fn key(&self) -> &str {
        self.key.get().map_or("", String::as_str)
    }
}

/// Who asks, for what is a caller's alone (its sessions): the name of the key the request
/// showed, or everyone alike where no key is configured.
pub fn caller_of(extensions: &Extensions) -> String {
    match extensions.get::<RequestContext>().map(RequestContext::key) {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => ANONYMOUS.to_owned(),
    }
}

/// Whether a caller's id may be used as it is: it goes into headers, JSON and every log line.
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=".contains(&b))
}

/// Before the id is set: a caller's `X-Request-Id` that is not a valid id is dropped, so one
/// is made instead (`SetRequestIdLayer` keeps any the request has).
pub async fn drop_invalid_id(mut request: Request) -> Request {
    let valid = request
        .headers()
        .get_all("x-request-id")
        .iter()
        .map(|value| value.to_str().map(is_valid_id).unwrap_or(false))
        .collect::<Vec<_>>();
    if valid != [true] {
        request.headers_mut().remove("x-request-id");
    }
    request
}

/// Makes the id of a request that brought none: Lambda's own request id (so the service's
/// lines and Lambda's share it), or a new UUID.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, request: &axum::http::Request<B>) -> Option<RequestId> {
        let lambda = request
            .extensions()
            .get::<lambda_http::Context>()
            .map(|context| context.request_id.clone())
            .filter(|id| is_valid_id(id));
        let id = lambda.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// The middleware around each route: the request's span, its access line and figures, and its
/// id in an error body.
pub async fn track(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let span = request_span(&id, &request);
    let context = RequestContext {
        id: id.clone(),
        span: span.clone(),
        key: Arc::default(),
    };
    request.extensions_mut().insert(context.clone());
    let seen = Seen::of(&request);
    let response = next.run(request).instrument(span.clone()).await;
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map_or("OK", |code| code.as_str());
    let response = with_id_in_error_body(response, &id).await;
    let duration = started.elapsed();
    span.in_scope(|| seen.log(&response, code, duration, app.sandbox_name()));
    app.metrics.request(RequestFigures {
        route: seen.route,
        code,
        key: context.key().to_owned(),
        duration,
        request_id: id,
    });
    if let Some(emf) = &app.emf {
        // Standard output, where Lambda's log capture reads EMF as well as stderr.
        emf.write(&mut std::io::stdout().lock());
    }
    response
}

/// What the access line says of the request, taken before it is served.
struct Seen {
    route: String,
    method: Method,
    path: String,
    user_agent: Option<String>,
}

impl Seen {
    fn of(request: &Request) -> Self {
        let route = request.extensions().get::<MatchedPath>();
        Self {
            route: route.map_or(UNMATCHED, MatchedPath::as_str).to_owned(),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            user_agent: header_text(request, header::USER_AGENT),
        }
    }

    /// The access line: never the script or its output. A failure of the service is an error,
    /// a refusal to retry (503, 429) a warning, the rest (scripts' own failures included) info.
    fn log(&self, response: &Response, code: &str, duration: Duration, sandbox: &str) {
        let status = response.status().as_u16();
        let bytes = response.body().size_hint().exact();
        // Milliseconds to the microsecond: the rest is noise.
        let duration_ms = (duration.as_secs_f64() * 1e6).round() / 1e3;
        macro_rules! access {
            ($level:expr) => {
                tracing::event!(
                    target: ACCESS,
                    $level,
                    method = %self.method,
                    path = self.path,
                    status,
                    code,
                    duration_ms,
                    user_agent = self.user_agent,
                    response_bytes = bytes,
                    sandbox,
                    "request"
                )
            };
        }
        match status {
            503 | 429 => access!(Level::WARN),
            500.. => access!(Level::ERROR),
            _ => access!(Level::INFO),
        }
    }
}

/// The span every line of the request is logged in (the names are `observe::logs`' fields).
fn request_span(id: &str, request: &Request) -> Span {
    let span = tracing::info_span!(
        "request",
        request_id = id,
        trace_id = Empty,
        span_id = Empty,
        trace_sampled = Empty,
        key = Empty,
    );
    let lambda_trace = || {
        let context = request.extensions().get::<lambda_http::Context>()?;
        TraceContext::from_xray(context.xray_trace_id.as_deref()?)
    };
    if let Some(trace) = TraceContext::from_headers(request.headers()).or_else(lambda_trace) {
        span.record(TRACE_ID, trace.trace_id.as_str());
        if let Some(span_id) = &trace.span_id {
            span.record(SPAN_ID, span_id.as_str());
        }
        if let Some(sampled) = trace.sampled {
            span.record(TRACE_SAMPLED, sampled);
        }
    }
    span
}

fn header_text(request: &Request, name: header::HeaderName) -> Option<String> {
    let value = request.headers().get(name)?.to_str().ok()?;
    Some(value.to_owned())
}

/// An error body (a JSON object the service wrote, marked by its [`ErrorCode`]) with
/// `"request_id"` added as its last member; any other response as it is.
async fn with_id_in_error_body(response: Response, id: &str) -> Response {
    if response.extensions().get::<ErrorCode>().is_none() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Error bodies are whole in memory already: this only takes them out of their wrapper.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Some(closing) = bytes.iter().rposition(|&b| b == b'}') else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let empty = bytes[..closing]
        .iter()
        .all(|b| b.is_ascii_whitespace() || *b == b'{');
    let mut body = Vec::with_capacity(bytes.len() + id.len() + 16);
    body.extend_from_slice(&bytes[..closing]);
    body.extend_from_slice(if empty {
        b"\"request_id\":"
    } else {
        b",\"request_id\":"
    });
    body.extend_from_slice(serde_json::Value::from(id).to_string().as_bytes());
    body.extend_from_slice(&bytes[closing..]);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    #[test]
    fn only_sane_ids_are_taken_from_callers() {
        assert!(is_valid_id("2f1c-abc_1.2:x@y/z+w="));
        assert!(is_valid_id(&"a".repeat(128)));
        for bad in ["", "a b", "quote\"", "new\nline", &"a".repeat(129), "é"] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn an_error_body_gets_the_id_as_its_last_member() {
        let error = crate::execute::api::ApiError::new(ErrorCode::NotFound, "no route");
        let response = with_id_in_error_body(error.into_response(), "r-1").await;
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["request_id"], "r-1");
        assert_eq!(body["code"], "NOT_FOUND");
        assert!(bytes.ends_with(b",\"request_id\":\"r-1\"}"));
    }

    #[tokio::test]
    async fn other_responses_are_left_alone() {
        let response = axum::Json(serde_json::json!({"ok": true})).into_response();
        let response = with_id_in_error_body(response, "r-1").await;
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert_eq!(&bytes[..], b"{\"ok\":true}");
    }
}
