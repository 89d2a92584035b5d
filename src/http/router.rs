//! The HTTP surface: one axum `Router`, shared by the Cloud Run server and the Lambda runtime.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use serde_json::json;

use crate::execute::answer::sandbox_failed;
use crate::execute::api::{request::check_content_type, ApiError, ErrorCode, ExecuteRequest};
use crate::http::app::{closing, refuse_unread, App};
use crate::http::body;
use crate::http::offload::Offloader;

pub fn router(app: Arc<App>) -> Router {
    let offloader = Arc::new(Offloader::new(&app.config));
    let mcp = crate::http::mcp::Mcp::new(Arc::clone(&app));
    Router::new()
        .route("/execute", post(execute))
        .route(
            crate::http::mcp::PATH,
            any(crate::http::mcp::serve).with_state(mcp),
        )
        .route("/health", get(health))
        .route("/packages", get(packages))
        .route("/openapi.json", get(crate::http::openapi::serve))
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
    crate::http::auth::check(
        app.config.api_key.as_ref(),
        parts.headers.get(header::AUTHORIZATION),
    )?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    check_content_type(content_type)
}

async fn run_execute(
    app: &App,
    body: &[u8],
) -> Result<crate::execute::api::ExecuteResponse, ApiError> {
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
        Ok(executor) => {
            let healthy = executor.healthy();
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = Json(json!({
            "ok": healthy,
            "sandbox": executor.kind().as_str(),
            "isolation": executor.isolation().names(),
            "cgroup": executor.cgroup_version(),
            "version": version,
            "limits": limits,
            "templates": executor.templates_status(),
            "mcp": crate::http::mcp::health(),
            "executions": {
                "running": executor.admission().in_use(),
                "capacity": executor.admission().capacity(),
            },
            }));
            (status, body).into_response()
        }
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

/// What the runtime can import: its Python and every distribution with its version and modules,
/// as read at start. Behind the API key, like running a script: versions are for callers.
async fn packages(State(app): State<Arc<App>>, parts: Parts) -> Response {
    let presented = parts.headers.get(header::AUTHORIZATION);
    match crate::http::auth::check(app.config.api_key.as_ref(), presented) {
        Ok(()) => Json(&app.packages).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn not_found(request: Request<Body>) -> Response {
    let error = ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no route for {} {}; use POST /execute, GET /health, GET /packages or GET /openapi.json",
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
            "{} is not allowed on {}; use POST /execute, GET /health, GET /packages or GET /openapi.json",
            request.method(),
            request.uri().path()
        ),
    );
    refuse_unread(error, request.into_body())
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
