//! The S3 side of offloading: write an object, hand back a presigned GET URL for it.
//!
//! The client is `crate::execute::s3`'s, built on first use.

use std::time::Duration;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::config::OffloadConfig;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("could not write s3://{bucket}/{key}: {cause}")]
    Put {
        bucket: String,
        key: String,
        cause: String,
    },
    #[error("could not presign s3://{bucket}/{key}: {cause}")]
    Presign {
        bucket: String,
        key: String,
        cause: String,
    },
}

/// One object to write.
#[derive(Debug)]
pub struct Object {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

#[derive(Debug)]
pub struct Store {
    bucket: String,
    url_ttl: Duration,
    endpoint_url: Option<String>,
    force_path_style: bool,
    client: OnceCell<Client>,
}

impl Store {
    /// `None` when no bucket is configured.
    pub fn new(config: &OffloadConfig) -> Option<Self> {
        Some(Self {
            bucket: config.bucket.clone()?,
            url_ttl: config.url_ttl,
            endpoint_url: config.endpoint_url.clone(),
            force_path_style: config.force_path_style,
            client: OnceCell::new(),
        })
    }

    /// Writes `object` and returns a URL that fetches it until the TTL passes.
    pub async fn put(&self, object: Object) -> Result<String, StoreError> {
        let client = self.client().await;
        client
            .put_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .content_type(object.content_type)
            .body(ByteStream::from(object.body))
            .send()
            .await
            .map_err(|error| StoreError::Put {
                bucket: self.bucket.clone(),
                key: object.key.clone(),
                cause: DisplayErrorContext(&error).to_string(),
            })?;
        let presign_error = |cause: String| StoreError::Presign {
            bucket: self.bucket.clone(),
            key: object.key.clone(),
            cause,
        };
        let presigning =
            PresigningConfig::expires_in(self.url_ttl).map_err(|e| presign_error(e.to_string()))?;
        let request = client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .presigned(presigning)
            .await
            .map_err(|error| presign_error(DisplayErrorContext(&error).to_string()))?;
        Ok(request.uri().to_owned())
    }

    async fn client(&self) -> &Client {
        let endpoint = self.endpoint_url.as_deref();
        self.client
            .get_or_init(|| crate::execute::s3::client(endpoint, self.force_path_style))
            .await
    }
}
