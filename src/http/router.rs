//! The HTTP surface: one axum `Router`, shared by the Cloud Run server and the Lambda runtime,
//! with what every request goes through as layers around it (outermost first): its id
//! (tower-http's request-id layers, [`context`]), its span, access line and figures
//! ([`context::track`]), CORS when configured ([`cors`]), and on the routes that need one the
//! API key and its quota ([`auth`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::{Extension, Json, Router};
use serde_json::json;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};

use crate::execute::answer::sandbox_failed;
use crate::execute::api::{request::check_content_type, ApiError, ErrorCode, ExecuteRequest};
use crate::execute::Executor;
use crate::http::app::{closing, refuse_unread, App};
use crate::http::auth::{self, Gate};
use crate::http::context::{self, MakeId};
use crate::http::offload::Offloader;
use crate::http::quota::Quotas;
use crate::http::{body, cors, mcp, stream};
use crate::observe::metrics;

/// The routes, for the answers to a request that matched none.
const ROUTES: &str =
    "POST /execute, POST /mcp, GET /health, GET /packages, GET /metrics or GET /openapi.json";

pub fn router(app: Arc<App>) -> Router {
    let offloader = Arc::new(Offloader::new(&app.config, Arc::clone(&app.metrics)));
    let (keyed, quota) = gates(&app);
    let guard = |gate: &Gate| middleware::from_fn_with_state(gate.clone(), auth::guard);
    let metrics_route: MethodRouter<Arc<App>> = match app.config.metrics.public {
        true => get(serve_metrics),
        false => get(serve_metrics).route_layer(guard(&keyed)),
    };
    // Every method on /mcp asks for the key first (`any` has no method routes to route-layer).
    let mcp = any(mcp::serve).with_state(mcp::Mcp::new(Arc::clone(&app)));
    let routes = Router::new()
        .route("/execute", post(execute).route_layer(guard(&quota)))
        .route(mcp::PATH, mcp.layer(guard(&quota)))
        .route("/health", get(health))
        .route("/metrics", metrics_route)
        .route("/packages", get(packages).route_layer(guard(&keyed)))
        .route("/openapi.json", get(crate::http::openapi::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(offloader));
    let routes = match cors::layer(&app.config.cors) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(middleware::from_fn_with_state(app.clone(), context::track))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeId))
        .layer(middleware::map_request(context::drop_invalid_id))
        .with_state(app)
}

/// The key check alone (for `/metrics`), and with each key's quota (for the script doors,
/// which share one quota per key name).
fn gates(app: &App) -> (Gate, Gate) {
    let keys = Arc::new(app.config.keys.clone());
    let quotas = Quotas::new(&keys.names(), app.config.key_quota).map(Arc::new);
    let keyed = Gate {
        keys,
        quotas: None,
        metrics: Arc::clone(&app.metrics),
    };
    let quota = Gate {
        quotas,
        ..keyed.clone()
    };
    (keyed, quota)
}

/// `GET /metrics`: every family in the Prometheus text format.
async fn serve_metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render();
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
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
    let (executor, mut request) = match parse_execute(&app, &body) {
        Ok(ready) => ready,
        Err(error) => return error.into_response(),
    };
    request.caller = context::caller_of(&parts.extensions);
    if stream::wants_events(&parts.headers) {
        return stream::execute(executor, request).await;
    }
    let delivered = match executor.execute(request).await {
        Ok(response) => offloader.deliver(&response).await,
        Err(error) => Err(error),
    };
    delivered.unwrap_or_else(IntoResponse::into_response)
}

/// The body, once the headers alone have been checked and the body has arrived whole within
/// its size and time bounds. Only then may an execution slot be taken: a slow or oversized
/// upload must never hold one.
async fn receive(app: &App, parts: &Parts, body: Body) -> Result<Bytes, Response> {
    if let Err(error) = check_headers(parts) {
        return Err(refuse_unread(error, body));
    }
    let http = &app.config.http;
    body::read(body, app.config.max_body, http.body_read_timeout)
        .await
        .map_err(|error| closing(ApiError::from(error).into_response()))
}

/// The key was checked by the route's layer, before anything else: an unauthenticated client
/// learns nothing about the request.
fn check_headers(parts: &Parts) -> Result<(), ApiError> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    check_content_type(content_type)
}

/// The validated request, and the executor to run it, or why it cannot run.
fn parse_execute<'a>(
    app: &'a App,
    body: &[u8],
) -> Result<(&'a Executor, ExecuteRequest), ApiError> {
    let config = &app.config;
    let request = ExecuteRequest::parse_with(body, config.max_script, &config.input_files)?;
    match &app.executor {
        Ok(executor) => Ok((executor, request)),
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
async fn packages(State(app): State<Arc<App>>) -> Response {
    Json(&app.packages).into_response()
}

async fn not_found(request: Request<Body>) -> Response {
    let error = ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no route for {} {}; use {ROUTES}",
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
            "{} is not allowed on {}; use {ROUTES}",
            request.method(),
            request.uri().path()
        ),
    );
    refuse_unread(error, request.into_body())
}
