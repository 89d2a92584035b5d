//! An emulation of Lambda's Runtime API for response streaming, which the Runtime Interface
//! Emulator does not relay as it comes (it buffers a streamed response whole): one invocation
//! handed out on `/next`, and its response read from the runtime's chunked POST as it arrives,
//! each piece stamped with when it came. The function's side is the real binary and its real
//! lambda_runtime client; only the platform is emulated.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

/// The separator between a streamed response's metadata prelude and its body.
const PRELUDE_END: [u8; 8] = [0; 8];
const REQUEST_ID: &str = "8f507cfc-example-request-id";

/// What the function streamed back: its pieces as they arrived, and the response mode it said.
#[derive(Debug, Default)]
pub struct Streamed {
    pub mode: Option<String>,
    pub pieces: Vec<(Duration, Vec<u8>)>,
}

impl Streamed {
    /// The whole response's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.pieces
            .iter()
            .flat_map(|(_, piece)| piece.clone())
            .collect()
    }

    /// The metadata prelude (status and headers) and the body after it.
    pub fn prelude_and_body(&self) -> (serde_json::Value, Vec<u8>) {
        let bytes = self.bytes();
        let end = bytes
            .windows(PRELUDE_END.len())
            .position(|window| window == PRELUDE_END)
            .expect("a metadata prelude");
        let prelude = serde_json::from_slice(&bytes[..end]).expect("a JSON prelude");
        (prelude, bytes[end + PRELUDE_END.len()..].to_vec())
    }

    /// When the first piece holding `needle` arrived.
    pub fn arrival_of(&self, needle: &str) -> Option<Duration> {
        let mut seen = Vec::new();
        for (after, piece) in &self.pieces {
            seen.extend_from_slice(piece);
            if String::from_utf8_lossy(&seen).contains(needle) {
                return Some(*after);
            }
        }
        None
    }
}

struct Shared {
    event: Mutex<Option<String>>,
    started: Instant,
    done: Mutex<Option<oneshot::Sender<Streamed>>>,
    never: Notify,
}

/// The emulated Runtime API on a free loopback port, handing out one event.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    received: oneshot::Receiver<Streamed>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    pub async fn serve(event: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let (done, received) = oneshot::channel();
        let shared = Arc::new(Shared {
            event: Mutex::new(Some(event)),
            started: Instant::now(),
            done: Mutex::new(Some(done)),
            never: Notify::new(),
        });
        let router = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(failed))
            .route("/2018-06-01/runtime/init/error", post(failed))
            .with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("the API serves");
        });
        Self {
            addr,
            received,
            server,
        }
    }

    /// The response, once the function has finished streaming it.
    pub async fn response(self, within: Duration) -> Streamed {
        let streamed = tokio::time::timeout(within, self.received).await;
        self.server.abort();
        streamed
            .expect("the function answered in time")
            .expect("a response")
    }
}

/// The one event, then nothing: a runtime asking again waits, as between invocations.
async fn next(State(shared): State<Arc<Shared>>) -> Response {
    let event = shared.event.lock().expect("lock").take();
    let Some(event) = event else {
        shared.never.notified().await;
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now() + Duration::from_secs(60);
    let deadline_ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis()
        .to_string();
    let headers = [
        ("lambda-runtime-aws-request-id", REQUEST_ID.to_owned()),
        ("lambda-runtime-deadline-ms", deadline_ms),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:python-executor".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000".to_owned(),
        ),
    ];
    let mut response = Response::new(Body::from(event));
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("a header value"));
    }
    response
}

async fn response(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> StatusCode {
    let mode = headers
        .get("lambda-runtime-function-response-mode")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut streamed = Streamed {
        mode,
        pieces: Vec::new(),
    };
    let mut stream = body.into_data_stream();
    while let Some(piece) = stream.next().await {
        let Ok(piece) = piece else { break };
        streamed
            .pieces
            .push((shared.started.elapsed(), piece.to_vec()));
    }
    if let Some(done) = shared.done.lock().expect("lock").take() {
        let _ = done.send(streamed);
    }
    StatusCode::ACCEPTED
}

/// An error the function reported instead of a response: recorded as the response, under the
/// mode `error`, for the test to see.
async fn failed(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    let streamed = Streamed {
        mode: Some("error".into()),
        pieces: vec![(shared.started.elapsed(), body.into_bytes())],
    };
    if let Some(done) = shared.done.lock().expect("lock").take() {
        let _ = done.send(streamed);
    }
    StatusCode::ACCEPTED
}
