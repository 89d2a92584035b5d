//! Delivering a successful execution's envelope: inline when it fits the response cap (Lambda
//! allows 6 MB), otherwise with its largest fields written to S3 and replaced by presigned URLs,
//! or, without a bucket, a `RESULT_TOO_LARGE` error. Never a silently shortened result.
//!
//! The envelope shape of an offloaded field (documented in docs/deploying.md):
//! `"result": null, "result_url": "<presigned GET>", "result_bytes": N`, the same for `stdout`
//! and `stderr`, and `"url_expires_in_s"` once at the end. An offloaded output file keeps its
//! entry in `files`, with `"content_base64": null, "content_url": "<presigned GET>"`.

mod envelope;
mod store;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::execute::api::{ApiError, ErrorCode, ExecuteResponse};
use crate::observe::metrics::Metrics;
pub use envelope::Budget;
use envelope::{Envelope, Piece};
use store::{Object, Store};

#[derive(Debug)]
pub struct Offloader {
    budget: Budget,
    store: Option<Store>,
    url_ttl_s: u64,
    metrics: Arc<Metrics>,
}

impl Offloader {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        Self {
            budget: Budget {
                limit: config.offload.max_inline.as_bytes(),
                escaped: config.on_lambda(),
            },
            store: Store::new(&config.offload),
            url_ttl_s: config.offload.url_ttl.as_secs(),
            metrics,
        }
    }

    /// The HTTP response for a successful execution.
    pub async fn deliver(&self, response: &ExecuteResponse) -> Result<Response, ApiError> {
        let body = serde_json::to_string(response).map_err(internal)?;
        let total = self.budget.cost(&body);
        if total <= self.budget.limit {
            return Ok(json_response(body));
        }
        let mut envelope = Envelope::parse(&body).map_err(internal)?;
        let Some(store) = &self.store else {
            return Err(self.too_large(&envelope, total));
        };
        let id = uuid::Uuid::new_v4();
        for piece in envelope.plan(self.budget, total) {
            let object = match piece {
                Piece::Field(field) => object_for(&envelope, field, &id)?,
                Piece::File(index) => file_object(&envelope, index, &id)?,
            };
            let bytes = object.body.len() as u64;
            let url = store.put(object).await.map_err(|error| {
                self.metrics.offload(false);
                tracing::error!(%error, "could not offload a large response");
                ApiError::new(
                    ErrorCode::OffloadFailed,
                    "the response is too large to return inline and could not be stored for download",
                )
            })?;
            match piece {
                Piece::Field(field) => envelope.replace(field, &url, bytes),
                Piece::File(index) => envelope.replace_file(index, &url),
            }
            .map_err(internal)?;
        }
        envelope
            .set("url_expires_in_s", &self.url_ttl_s)
            .map_err(internal)?;
        let body = envelope.to_json().map_err(internal)?;
        if !self.budget.fits(&body) {
            return Err(self.too_large(&envelope, self.budget.cost(&body)));
        }
        self.metrics.offload(true);
        tracing::info!(%id, "large response offloaded to S3");
        Ok(json_response(body))
    }

    fn too_large(&self, envelope: &Envelope, total: u64) -> ApiError {
        let hint = if self.store.is_some() {
            "even with its result and output stored in S3"
        } else {
            "set RESULT_BUCKET to receive large results as presigned S3 URLs"
        };
        let mut error = ApiError::new(
            ErrorCode::ResultTooLarge,
            format!(
                "the response is {total} bytes, over the inline limit of {} bytes; {hint}",
                self.budget.limit
            ),
        )
        .with("response_bytes", total)
        .with("limit_bytes", self.budget.limit);
        for field in envelope::OFFLOADABLE {
            if let Some(raw) = envelope.raw(field) {
                error = error.with(&format!("{field}_bytes"), payload_len(field, raw));
            }
        }
        error
    }
}

/// What is stored for a field: the result's JSON as the harness wrote it, the streams as text.
fn object_for(envelope: &Envelope, field: &str, id: &uuid::Uuid) -> Result<Object, ApiError> {
    let raw = envelope.raw(field).unwrap_or("null");
    let (body, extension, content_type) = if field == "result" {
        (raw.as_bytes().to_vec(), "json", "application/json")
    } else {
        let text: String = serde_json::from_str(raw).map_err(internal)?;
        (text.into_bytes(), "txt", "text/plain; charset=utf-8")
    };
    Ok(Object {
        key: format!("results/{id}/{field}.{extension}"),
        body,
        content_type,
    })
}

/// An output file's content as stored: its own bytes, under its own path and content type.
fn file_object(envelope: &Envelope, index: usize, id: &uuid::Uuid) -> Result<Object, ApiError> {
    use base64::Engine;
    let files = envelope.files();
    let file = files
        .get(index)
        .ok_or_else(|| offload_failed("an output file is missing from the envelope"))?;
    let text = |key: &str| -> Result<String, ApiError> {
        let raw = file.get(key).map_or("null", |value| value.get());
        serde_json::from_str(raw).map_err(internal)
    };
    let body = base64::engine::general_purpose::STANDARD
        .decode(text("content_base64")?)
        .map_err(|error| {
            tracing::error!(%error, "an output file's content is not base64");
            offload_failed("an output file's content is not base64")
        })?;
    Ok(Object {
        key: format!("results/{id}/{}", text("path")?),
        body,
        content_type: crate::execute::api::files::content_type(&text("path")?),
    })
}

/// The size of a field as a client downloads it.
fn payload_len(field: &str, raw: &str) -> u64 {
    if field == "result" {
        return raw.len() as u64;
    }
    serde_json::from_str::<String>(raw).map_or(raw.len(), |text| text.len()) as u64
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn internal(error: serde_json::Error) -> ApiError {
    tracing::error!(%error, "could not re-serialize a response envelope");
    offload_failed("the response could not be re-serialized")
}

/// The answer was there but could not be prepared for S3: the offload failed, not the sandbox.
fn offload_failed(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::OffloadFailed,
        format!("the response is too large to return inline and could not be stored: {why}"),
    )
}
