//! CORS, off unless `CORS_ALLOW_ORIGINS` lists the origins browsers may call from: then
//! tower-http's `CorsLayer` answers their preflight requests (`OPTIONS`, before a browser
//! sends a JSON POST or an `Authorization` header) and marks every answer to a listed origin
//! as readable by it, errors included. Other origins get no CORS header, so their browsers
//! keep the answer from the page. No credentials mode: the API key travels in
//! `Authorization`, which a page sends explicitly, never as a cookie.

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::CorsConfig;

/// The request headers a page may send: the API's own, the trace's, and MCP's.
const ALLOWED_HEADERS: [&str; 7] = [
    "authorization",
    "content-type",
    "accept",
    "x-request-id",
    "traceparent",
    "mcp-protocol-version",
    "last-event-id",
];
/// The response headers a page may read, beyond the ones every page may.
const EXPOSED_HEADERS: [&str; 2] = ["x-request-id", "retry-after"];

/// The layer for `config`, or `None` when no origin is listed.
pub fn layer(config: &CorsConfig) -> Option<CorsLayer> {
    if config.origins.is_empty() {
        return None;
    }
    // Each origin was checked when the setting was read: only visible ASCII gets this far.
    let origins = config
        .origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok());
    let names = |names: &[&'static str]| -> Vec<HeaderName> {
        names
            .iter()
            .map(|name| HeaderName::from_static(name))
            .collect()
    };
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers(names(&ALLOWED_HEADERS))
            .expose_headers(names(&EXPOSED_HEADERS))
            .max_age(config.max_age),
    )
}
