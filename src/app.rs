//! The HTTP surface: one axum `Router`, shared by the Cloud Run server and the Lambda runtime.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::answer::sandbox_failed;
use crate::api::{request::check_content_type, ApiError, ErrorCode, ExecuteRequest};
use crate::body;
use crate::config::Config;
use crate::executor::Executor;
use crate::offload::Offloader;
use crate::unavailable::Unavailable;

/// Shared state of every request.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    /// `Err` holds why scripts cannot run here; the service then still answers, honestly, but
    /// tells clients only the category (the full reason names host paths; it goes to the logs).
    pub executor: Result<Executor, Unavailable>,
}

impl App {
    fn sandbox_name(&self) -> &'static str {
        self.executor
            .as_ref()
            .map_or("none", |executor| executor.kind().as_str())
    }
}

pub fn router(app: Arc<App>) -> Router {
    let offloader = Arc::new(Offloader::new(&app.config));
    let mcp = crate::mcp::Mcp::new(Arc::clone(&app));
    Router::new()
        .route("/execute", post(execute))
        .route(crate::mcp::PATH, any(crate::mcp::serve).with_state(mcp))
        .route("/health", get(health))
        .route("/openapi.json", get(crate::openapi::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(offloader))
        .layer(middleware::from_fn_with_state(app.clone(), log_request))
        .with_state(app)
}

async fn execute(
    State(app): State<Arc<App>>,
    Extension(offloader): Extension<Arc<Offloader>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match receive(&app, &parts, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let delivered = match run_execute(&app, &body).await {
        Ok(response) => offloader.deliver(&response).await,
        Err(error) => Err(error),
    };
    delivered.unwrap_or_else(IntoResponse::into_response)
}

/// The body, once the headers alone have been checked and the body has arrived whole within
/// its size and time bounds. Only then may an execution slot be taken: a slow or oversized
/// upload must never hold one.
async fn receive(app: &App, parts: &Parts, body: Body) -> Result<Bytes, Response> {
    if let Err(error) = check_headers(app, parts) {
        return Err(refuse_unread(error, body));
    }
    let http = &app.config.http;
    body::read(body, app.config.max_body, http.body_read_timeout)
        .await
        .map_err(|error| closing(ApiError::from(error).into_response()))
}

fn check_headers(app: &App, parts: &Parts) -> Result<(), ApiError> {
    // Before anything else: an unauthenticated client learns nothing about the request.
    crate::auth::check(
        app.config.api_key.as_ref(),
        parts.headers.get(header::AUTHORIZATION),
    )?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    check_content_type(content_type)
}

/// A refusal sent before the whole body was read: the connection is not reused, since what is
/// left of the body is being discarded (within bounds), not parsed as the next request.
pub(crate) fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn run_execute(app: &App, body: &[u8]) -> Result<crate::api::ExecuteResponse, ApiError> {
    let config = &app.config;
    let request = ExecuteRequest::parse_with(body, config.max_script, &config.input_files)?;
    match &app.executor {
        Ok(executor) => executor.execute(request).await,
        Err(unavailable) => {
            tracing::warn!(reason = %unavailable, "refusing to run a script without a sandbox");
            Err(sandbox_failed().with_details(unavailable.public_fields()))
        }
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let limits = &app.config.limits;
    let limits = json!({
        "wall_s": limits.wall.as_secs_f64(),
        "cpu_s": limits.cpu.as_secs_f64(),
        "memory_bytes": limits.memory.as_bytes(),
        "processes": limits.processes,
        "script_bytes": app.config.max_script.as_bytes(),
    });
    let version = env!("CARGO_PKG_VERSION");
    match &app.executor {
        Ok(executor) => Json(json!({
            "ok": true,
            "sandbox": executor.kind().as_str(),
            "isolation": executor.isolation().names(),
            "cgroup": executor.cgroup_version(),
            "version": version,
            "limits": limits,
            "templates": executor.templates_status(),
            "mcp": crate::mcp::health(),
            "executions": {
                "running": executor.admission().in_use(),
                "capacity": executor.admission().capacity(),
            },
        }))
        .into_response(),
        Err(unavailable) => {
            let mut body = json!({
                "ok": false,
                "sandbox": null,
                "isolation": [],
                "version": version,
            });
            if let Some(fields) = body.as_object_mut() {
                fields.extend(unavailable.public_fields());
            }
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

async fn not_found(request: Request<Body>) -> Response {
    let error = ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no route for {} {}; use POST /execute, GET /health or GET /openapi.json",
            request.method(),
            request.uri().path()
        ),
    );
    refuse_unread(error, request.into_body())
}

async fn method_not_allowed(request: Request<Body>) -> Response {
    let error = ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; use POST /execute, GET /health or GET /openapi.json",
            request.method(),
            request.uri().path()
        ),
    );
    refuse_unread(error, request.into_body())
}

/// Answers `error` at once, without reading the request's body: what is left of it is
/// discarded in the background, so a client still writing it sees the answer.
pub(crate) fn refuse_unread(error: ApiError, body: Body) -> Response {
    let response = error.into_response();
    if body::discard(body) {
        closing(response)
    } else {
        response
    }
}

/// One line per request with its outcome; never the script or its output.
async fn log_request(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let code = response
        .extensions()
        .get::<ErrorCode>()
        .map_or("OK", |code| code.as_str());
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        code,
        duration_ms = started.elapsed().as_millis() as u64,
        sandbox = app.sandbox_name(),
        "request"
    );
    response
}
