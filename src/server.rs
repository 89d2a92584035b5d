//! Serving the router over HTTP (Cloud Run, local runs, tests), and shutting down the way Cloud
//! Run expects: on SIGTERM stop accepting, let running executions finish within the grace
//! period, then end whatever remains and return, so the process exits 0 before SIGKILL comes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::sandbox::live;

/// After the grace period, how long the aborted executions get to answer their clients.
const ABORT_GRACE: Duration = Duration::from_secs(3);

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
/// Takes its listener so tests can bind `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// [`serve`], but in-flight executions only get `grace` after `shutdown` resolves: then every
/// sandbox is killed (its client gets a `SANDBOX_ERROR` saying the service is shutting down)
/// and this returns shortly after, whatever a connection still holds.
pub async fn serve_with_grace(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let stopping = Arc::new(Notify::new());
    let notify = stopping.clone();
    let mut server = tokio::spawn(serve(listener, router, async move {
        shutdown.await;
        // notify_one keeps the permit if nobody waits yet.
        notify.notify_one();
    }));
    tokio::select! {
        finished = &mut server => return joined(finished),
        _ = stopping.notified() => {},
    }
    if let Ok(finished) = tokio::time::timeout(grace, &mut server).await {
        return joined(finished);
    }
    tracing::warn!(
        grace_s = grace.as_secs_f64(),
        "grace period over: ending the executions still running"
    );
    live::abort_all();
    match tokio::time::timeout(ABORT_GRACE, &mut server).await {
        Ok(finished) => joined(finished),
        Err(_) => {
            server.abort();
            Ok(())
        }
    }
}

fn joined(finished: Result<std::io::Result<()>, tokio::task::JoinError>) -> std::io::Result<()> {
    finished.map_err(std::io::Error::other)?
}

/// Resolves on SIGTERM (what Cloud Run sends) or Ctrl-C.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("shutting down: no new requests, finishing those in flight");
}
