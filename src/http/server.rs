//! Serving the router over HTTP (Cloud Run, local runs, tests), and shutting down the way Cloud
//! Run expects: on SIGTERM stop accepting, let running executions finish within the grace
//! period, then end whatever remains and return, so the process exits 0 before SIGKILL comes.
//!
//! The accept loop is hyper's own rather than `axum::serve`, which offers neither a timer (so
//! hyper's header read timeout never fires) nor a cap on connections. Clients are bounded three
//! ways: their headers must arrive within `HEADER_READ_TIMEOUT_S` (which also closes idle
//! keep-alive connections), their body within `BODY_READ_TIMEOUT_S` (src/http/body.rs), and at most
//! `MAX_CONNECTIONS` are served at once.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::{HttpConfig, ShutdownConfig};
use crate::sandbox::Abort;

/// One client's connection, served by the router.
type Connection = http1::Connection<TokioIo<TcpStream>, TowerToHyperService<Router>>;

/// After an accept error other than a vanished client (out of file descriptors, most likely),
/// how long to wait for some to be closed before trying again, rather than spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish.
/// Takes its listener so tests can bind `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    http: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // u32: the unit of `acquire_many`, used below to wait for every connection to end.
    let capacity = u32::try_from(http.max_connections).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(capacity as usize));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout);
    let (closing, _) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, slot) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        // Answers are written whole; Nagle's algorithm would only delay their last segment.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(drive(connection, closing.subscribe(), slot));
    }
    // Refuse new connections from now on; finish those open, then return.
    drop(listener);
    let _ = closing.send(true);
    // Each connection holds its slot until it ends: when all are free, all have ended.
    let _ = slots.acquire_many(capacity).await;
    Ok(())
}

/// The next connection, once a slot is free. Until then new connections wait in the kernel's
/// accept queue (the listen backlog): neither accepted nor refused, so a client sees a slow
/// connect rather than an error, and is served as soon as another connection ends.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> (TcpStream, OwnedSemaphorePermit) {
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return (stream, slot),
            Err(error) => accept_failed(error).await,
        }
    }
}

async fn accept_failed(error: io::Error) {
    // A client that gave up between connecting and being accepted is nobody's problem.
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::error!(%error, "could not accept a connection");
    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
}

/// Serves one connection to its end, finishing gracefully (the request in flight is answered,
/// an idle connection closed) once `closing` turns true. Holds its slot until then.
async fn drive(
    connection: Connection,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let mut connection = pin!(connection);
    // A dropped sender (the server itself dropped) means the same as true.
    let closing = async move {
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        () = closing => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    // Header timeouts and clients that vanish end here; neither is the service's failure.
    if let Err(error) = ended {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// [`serve`], but in-flight executions only get `shutdown.grace` after `signal` resolves: then
/// every sandbox is killed through `abort`, the service's handle (its client gets a
/// `SANDBOX_ERROR` saying the service is shutting down, a request still queued an `OVERLOADED`),
/// and this returns at most `shutdown.abort_grace` later, whatever a connection still holds.
/// With the defaults (7 s and 2 s) all of it fits in Cloud Run's 10 s between SIGTERM and
/// SIGKILL.
pub async fn serve_with_grace(
    listener: TcpListener,
    router: Router,
    http: HttpConfig,
    signal: impl Future<Output = ()> + Send + 'static,
    shutdown: ShutdownConfig,
    abort: Option<Abort>,
) -> io::Result<()> {
    let stopping = Arc::new(Notify::new());
    let notify = stopping.clone();
    let mut server = tokio::spawn(async move {
        serve(listener, router, &http, async move {
            signal.await;
            // notify_one keeps the permit if nobody waits yet.
            notify.notify_one();
        })
        .await
    });
    tokio::select! {
        finished = &mut server => return joined(finished),
        _ = stopping.notified() => {},
    }
    if let Ok(finished) = tokio::time::timeout(shutdown.grace, &mut server).await {
        return joined(finished);
    }
    tracing::warn!(
        grace_s = shutdown.grace.as_secs_f64(),
        "grace period over: ending the executions still running"
    );
    if let Some(abort) = &abort {
        abort.abort_all();
    }
    match tokio::time::timeout(shutdown.abort_grace, &mut server).await {
        Ok(finished) => joined(finished),
        Err(_) => {
            server.abort();
            Ok(())
        }
    }
}

fn joined(finished: Result<io::Result<()>, tokio::task::JoinError>) -> io::Result<()> {
    finished.map_err(io::Error::other)?
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
