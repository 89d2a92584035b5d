//! What every front door shares: the service value ([`App`]) each request reaches, and the
//! answers sent before a request's body was read.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::execute::api::ApiError;
use crate::execute::{Executor, Unavailable};
use crate::http::body;
use crate::observe::metrics::emf::Emf;
use crate::observe::metrics::Metrics;
use crate::packages::Packages;

/// Shared state of every request.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    /// `Err` holds why scripts cannot run here; the service then still answers, honestly, but
    /// tells clients only the category (the full reason names host paths; it goes to the logs).
    pub executor: Result<Executor, Unavailable>,
    pub metrics: Arc<Metrics>,
    /// Where each request's figures are also written as an EMF line (Lambda).
    pub emf: Option<Emf>,
    /// What the runtime can import (`GET /packages`), read once at start.
    pub packages: Packages,
}

impl App {
    /// The service without a sandbox: every execution is refused for `reason` (tests, and a
    /// platform that allows none).
    pub fn unavailable(config: Config, reason: Unavailable) -> Self {
        let metrics = Arc::new(Metrics::new(false));
        Self {
            config,
            executor: Err(reason),
            metrics,
            emf: None,
            packages: Default::default(),
        }
    }

    pub(crate) fn sandbox_name(&self) -> &'static str {
        self.executor
            .as_ref()
            .map_or("none", |executor| executor.kind().as_str())
    }
}

/// A refusal sent before the whole body was read: the connection is not reused, since what is
/// left of the body is being discarded (within bounds), not parsed as the next request.
pub(crate) fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
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
