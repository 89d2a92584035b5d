//! The AWS Lambda entry point: the same axum router, driven by `lambda_http`, which turns
//! function URL, API Gateway (REST and HTTP API) and ALB events into HTTP requests and the
//! router's responses back into the matching event response.

mod stage;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::response::Response;
use axum::Router;
use lambda_http::lambda_runtime::{layers::TracingLayer, LambdaInvocation, Runtime};
use lambda_http::tower::{BoxError, Layer};
use lambda_http::{service_fn, Adapter, Request, Service, StreamAdapter};

use crate::config::LambdaInvokeMode;

pub use stage::strip_stage;

/// What is asked after each invocation, once its response is posted and before the next event
/// is: whether this environment can run more scripts, answered once the executions have done
/// what they do after their answers (Lambda freezes the environment at the next request).
pub type Settled = Pin<Box<dyn Future<Output = bool> + Send>>;

/// Serves `router` to the Lambda Runtime API until the platform stops the process, or until
/// `healthy` says after an invocation that this environment can run no more scripts: then the
/// process exits once that invocation's response is posted (nothing runs between invocations
/// here that could heal it). Lambda starts the runtime again in the same environment, `/tmp`
/// kept, and the new service empties it of this uid's files before serving
/// (`sandbox::AtStart`).
/// In `RESPONSE_STREAM` mode every response is streamed (Lambda's response streaming, which a
/// function URL with that invoke mode relays as it comes): streamed runs' events arrive as the
/// script writes, and every other answer is one body as before.
pub async fn run(
    router: Router,
    mode: LambdaInvokeMode,
    healthy: impl Fn() -> Settled + Send + Sync + 'static,
) -> Result<(), lambda_http::Error> {
    let exit = ExitWhenUnhealthy {
        healthy: std::sync::Arc::new(healthy),
    };
    match mode {
        LambdaInvokeMode::Buffered => {
            let adapter = Adapter::from(handler(router));
            let runtime = Runtime::new(adapter).layer(TracingLayer::new());
            runtime.layer(exit).run().await
        }
        LambdaInvokeMode::ResponseStream => {
            let adapter = StreamAdapter::from(handler(router));
            let runtime = Runtime::new(adapter).layer(TracingLayer::new());
            runtime.layer(exit).run().await
        }
    }
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

/// The outermost layer of the runtime: its inner service has posted the response when it
/// resolves.
#[derive(Clone)]
struct ExitWhenUnhealthy {
    healthy: std::sync::Arc<dyn Fn() -> Settled + Send + Sync>,
}

impl<S> Layer<S> for ExitWhenUnhealthy {
    type Service = ExitWhenUnhealthyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExitWhenUnhealthyService {
            inner,
            healthy: self.healthy.clone(),
        }
    }
}

struct ExitWhenUnhealthyService<S> {
    inner: S,
    healthy: std::sync::Arc<dyn Fn() -> Settled + Send + Sync>,
}

impl<S> Service<LambdaInvocation> for ExitWhenUnhealthyService<S>
where
    S: Service<LambdaInvocation, Response = (), Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        let posted = self.inner.call(invocation);
        let healthy = self.healthy.clone();
        Box::pin(async move {
            posted.await?;
            if !healthy().await {
                tracing::error!(
                    "this environment can run no more scripts (its shared scratch space could \
                     not be emptied in time): exiting; the runtime started again empties it"
                );
                std::process::exit(1);
            }
            Ok(())
        })
    }
}
