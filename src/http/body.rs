//! Reading a request body within bounds of size and time, and discarding the rest of a body
//! the service will not use without breaking the client's pipe.
//!
//! Why discard rather than just close: a client that writes its whole body before it reads
//! (Python's urllib and requests, most SDKs) would otherwise never see the answer. Closing a
//! socket with unread data makes the kernel send RST instead of FIN, and the client then gets
//! `BrokenPipeError` or "connection reset" and loses the response that was already on its way.
//! So an early answer (413, 408, 401, 415) goes out at once, and the rest of the body is read
//! and thrown away in the background within [`LINGER_BYTES`] and [`LINGER_TIME`], as nginx's
//! lingering close does; past either bound the connection is closed anyway.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use thiserror::Error;
use tokio::time::Instant;

use crate::execute::api::{ApiError, ErrorCode};
use crate::limits::ByteSize;

/// The most of an unwanted body read and discarded before the connection is closed anyway:
/// several times the default body limit, so an honest client that merely sent too much still
/// reads its 413, while a client streaming without end is cut off.
pub const LINGER_BYTES: u64 = 8 * 1024 * 1024;
/// The longest time spent discarding an unwanted body.
pub const LINGER_TIME: Duration = Duration::from_secs(5);

/// Why a body was not received.
#[derive(Debug, Error)]
pub enum BodyError {
    #[error("the request body is over the limit of {limit}")]
    TooLarge { limit: ByteSize },
    #[error("the request body did not arrive within {} s", .timeout.as_secs_f64())]
    TimedOut { timeout: Duration },
    #[error("the request body could not be read: {0}")]
    Read(axum::Error),
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> Self {
        let message = error.to_string();
        match error {
            BodyError::TooLarge { limit } => ApiError::new(ErrorCode::ScriptTooLarge, message)
                .with("limit_bytes", limit.as_bytes()),
            BodyError::TimedOut { timeout } => ApiError::new(
                ErrorCode::RequestTimeout,
                format!("{message}; send the whole request within that time"),
            )
            .with("limit_s", timeout.as_secs_f64()),
            BodyError::Read(_) => ApiError::new(ErrorCode::InvalidRequest, message),
        }
    }
}

/// The whole body, if it is at most `limit` and arrives within `timeout`. On failure the rest
/// of the body is discarded in the background (see the module's comment).
pub async fn read(mut body: Body, limit: ByteSize, timeout: Duration) -> Result<Bytes, BodyError> {
    // A declared length (Content-Length) over the limit is answered before anything is read.
    if body.size_hint().lower() > limit.as_bytes() {
        discard(body);
        return Err(BodyError::TooLarge { limit });
    }
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    loop {
        let data = match tokio::time::timeout_at(deadline, next_data(&mut body)).await {
            Err(_) => {
                discard(body);
                return Err(BodyError::TimedOut { timeout });
            }
            Ok(None) => return Ok(Bytes::from(received)),
            Ok(Some(Err(error))) => return Err(BodyError::Read(error)),
            Ok(Some(Ok(None))) => continue,
            Ok(Some(Ok(Some(data)))) => data,
        };
        if (received.len() + data.len()) as u64 > limit.as_bytes() {
            discard(body);
            return Err(BodyError::TooLarge { limit });
        }
        received.extend_from_slice(&data);
    }
}

/// Reads and drops the rest of `body` in the background, within [`LINGER_BYTES`] and
/// [`LINGER_TIME`]; then the body is dropped, which lets the server close the connection.
/// False when there was nothing left to read.
pub fn discard(body: Body) -> bool {
    if body.is_end_stream() {
        return false;
    }
    tokio::spawn(async move {
        let started = Instant::now();
        let drained = tokio::time::timeout(LINGER_TIME, drain(body, LINGER_BYTES)).await;
        tracing::debug!(
            complete = drained.is_ok_and(|complete| complete),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "discarded the rest of a request body"
        );
    });
    true
}

/// True when the body ended (or failed) before `most` bytes were read.
async fn drain(mut body: Body, most: u64) -> bool {
    let mut seen = 0u64;
    while seen <= most {
        match next_data(&mut body).await {
            Some(Ok(data)) => seen += data.map_or(0, |data| data.len() as u64),
            Some(Err(_)) | None => return true,
        }
    }
    false
}

/// The next frame's data (`Some(Ok(None))` for trailers, which the service ignores), or `None`
/// at the end of the body.
async fn next_data(body: &mut Body) -> Option<Result<Option<Bytes>, axum::Error>> {
    let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
    Some(frame.map(|frame| frame.into_data().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole() {
        let body = Body::from("{\"script\": \"\"}");
        let read = read(body, ByteSize::bytes(64), Duration::from_secs(1)).await;
        assert_eq!(read.expect("read").as_ref(), b"{\"script\": \"\"}");
    }

    #[tokio::test]
    async fn a_declared_or_streamed_body_over_the_limit_is_too_large() {
        let declared = Body::from(vec![b' '; 65]);
        let error = read(declared, ByteSize::bytes(64), Duration::from_secs(1)).await;
        assert!(matches!(error, Err(BodyError::TooLarge { .. })));
        // No declared length: found out while reading.
        let chunk = || Ok::<_, std::io::Error>(vec![b' '; 40]);
        let chunks = futures::stream::iter([chunk(), chunk()]);
        let streamed = Body::from_stream(chunks);
        let error = read(streamed, ByteSize::bytes(64), Duration::from_secs(1)).await;
        assert!(matches!(error, Err(BodyError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_times_out_with_408() {
        let stalled =
            Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let timeout = Duration::from_millis(50);
        let error = read(stalled, ByteSize::kib(1), timeout)
            .await
            .expect_err("stalled");
        assert!(matches!(error, BodyError::TimedOut { .. }));
        let error = ApiError::from(error);
        assert_eq!(error.code, ErrorCode::RequestTimeout);
        assert_eq!(error.code.status().as_u16(), 408);
    }
}
