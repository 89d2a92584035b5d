//! Runs you can watch: `POST /execute` with `Accept: text/event-stream` answers Server-Sent
//! Events while the script runs. `stdout` and `stderr` events carry the script's output as it
//! writes it (each event's data a JSON string; the caps apply as to the buffered answer, so the
//! events add up to its `stdout` and `stderr`), then one final event carries exactly the body
//! the JSON answer would have: `result` for a success, `error` for a failure (its code says
//! which status the JSON answer would have had). A refusal before anything runs (a bad request,
//! no slot within the queue wait) is an ordinary JSON answer with its status.
//!
//! A client that goes away ends the execution and frees its slot: keep-alive comments every
//! second find a closed connection even while the script is silent.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::{mpsc, oneshot};

use crate::execute::answer::sandbox_failed;
use crate::execute::api::{ApiError, ExecuteRequest, ExecuteResponse};
use crate::execute::Executor;
use crate::sandbox::{OutputChunk, Stream as Output, Watcher};

/// How often a silent stream sends a comment, which also finds a client that went away.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Whether the client asked for Server-Sent Events.
pub fn wants_events(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.split(';').next().map(str::trim) == Some("text/event-stream"))
}

/// The streamed answer to `request`, once it has a slot.
pub async fn execute(executor: &Executor, request: ExecuteRequest) -> Response {
    let admitted = match executor.admit().await {
        Ok(admitted) => admitted,
        Err(error) => return error.into_response(),
    };
    let (output, chunks) = mpsc::unbounded_channel();
    let (watching, gone) = oneshot::channel();
    let answer = tokio::spawn(admitted.execute(request, Some(Watcher { output, gone })));
    let (events, received) = mpsc::unbounded_channel();
    tokio::spawn(forward(chunks, answer, events, watching));
    Sse::new(events_of(received))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Sends each chunk of output as an event, then the answer as the final one. Returns early,
/// dropping `watching` (which ends the execution), once the client's stream is gone.
async fn forward(
    mut chunks: mpsc::UnboundedReceiver<OutputChunk>,
    mut answer: tokio::task::JoinHandle<Result<ExecuteResponse, ApiError>>,
    events: mpsc::UnboundedSender<Event>,
    watching: oneshot::Sender<()>,
) {
    let mut text = Texts::default();
    loop {
        tokio::select! {
            Some(chunk) = chunks.recv() => {
                if text.send(&chunk, &events).is_err() {
                    return;
                }
            }
            answered = &mut answer => {
                // Every chunk was sent before the answer existed: the rest is in the channel.
                while let Ok(chunk) = chunks.try_recv() {
                    let _ = text.send(&chunk, &events);
                }
                let answered = answered.unwrap_or_else(|_| Err(sandbox_failed()));
                let _ = events.send(final_event(answered));
                drop(watching);
                return;
            }
            () = events.closed() => return,
        }
    }
}

/// Each stream's text so far, as events.
#[derive(Default)]
struct Texts {
    stdout: Utf8Chunks,
    stderr: Utf8Chunks,
}

impl Texts {
    /// Sends what `chunk` completes as an event; an error once the client is gone.
    fn send(
        &mut self,
        chunk: &OutputChunk,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<(), ()> {
        let (name, text) = match chunk.stream {
            Output::Stdout => ("stdout", &mut self.stdout),
            Output::Stderr => ("stderr", &mut self.stderr),
        };
        let piece = text.push(&chunk.bytes);
        if piece.is_empty() {
            return Ok(());
        }
        events.send(output_event(name, &piece)).map_err(drop)
    }
}

fn output_event(name: &'static str, text: &str) -> Event {
    let data = serde_json::Value::from(text).to_string();
    Event::default().event(name).data(data)
}

/// The final event: exactly the body the JSON answer would have had.
fn final_event(answered: Result<ExecuteResponse, ApiError>) -> Event {
    let (name, body) = match answered {
        Ok(response) => ("result", serde_json::to_string(&response)),
        Err(error) => ("error", serde_json::to_string(&error.body())),
    };
    // A plain struct of JSON values: serializing it cannot fail.
    Event::default().event(name).data(body.unwrap_or_default())
}

fn events_of(
    received: mpsc::UnboundedReceiver<Event>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(received, |mut received| async move {
        received.recv().await.map(|event| (Ok(event), received))
    })
}

/// Text from a stream of bytes cut anywhere: a character split across two chunks is held back
/// until it is whole, instead of being mangled in each.
#[derive(Default)]
struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let whole = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end: keep it for the next chunk.
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            // Bytes that are not UTF-8 at all: passed on, replaced.
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..whole]).into_owned();
        self.pending.drain(..whole);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_in_two_arrives_whole() {
        let mut text = Utf8Chunks::default();
        let snowman = "☃".as_bytes();
        assert_eq!(text.push(&[b'a', snowman[0]]), "a");
        assert_eq!(text.push(&snowman[1..]), "☃");
        assert_eq!(text.push(b"\xff!"), "\u{fffd}!");
    }

    #[test]
    fn only_event_streams_are_streamed() {
        let accept = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, value.parse().expect("a header value"));
            wants_events(&headers)
        };
        assert!(accept("text/event-stream"));
        assert!(accept("application/json, text/event-stream;q=0.9"));
        assert!(!accept("application/json"));
        assert!(!wants_events(&HeaderMap::new()));
    }
}
