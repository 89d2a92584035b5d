//! The AWS Lambda entry point: the same axum router, driven by `lambda_http`, which turns
//! function URL, API Gateway (REST and HTTP API) and ALB events into HTTP requests and the
//! router's responses back into the matching event response.

mod stage;

use std::convert::Infallible;

use axum::response::Response;
use axum::Router;
use lambda_http::{service_fn, Request, Service};

pub use stage::strip_stage;

/// Serves `router` to the Lambda Runtime API until the platform stops the process.
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(handler(router)).await
}

/// What `lambda_http` calls for each event, already converted to an HTTP request: the router,
/// after the API Gateway stage is taken out of the path. Public so tests can drive it with the
/// sample events.
pub fn handler(
    router: Router,
) -> impl Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone {
    service_fn(move |request: Request| {
        let mut router = router.clone();
        async move { router.call(strip_stage(request)).await }
    })
}
