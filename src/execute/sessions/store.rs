//! Where sealed session states are kept: in this process's memory or on its disk (one instance,
//! the default), or in an S3 bucket that every instance reads (Lambda, several Cloud Run
//! instances). States are opaque sealed bytes here; each is written only if it is still the
//! version its call started from (S3's conditional writes), so a call never overwrites a
//! state newer than the one it continued.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::config::OffloadConfig;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the session store failed: {0}")]
    Failed(String),
    /// The state changed since the call read it (another call of the session saved first).
    #[error("the session's state changed since this call began")]
    Changed,
}

/// A stored state and the version it was read at.
#[derive(Debug)]
pub struct Stored {
    pub sealed: Vec<u8>,
    pub version: Option<String>,
}

/// What a write expects to find: nothing (a new session), or the version it read.
#[derive(Clone, Debug)]
pub enum Expected {
    Absent,
    Version(Option<String>),
}

#[derive(Debug)]
pub enum Store {
    Memory(MemoryStore),
    Disk(PathBuf),
    S3(S3Store),
}

impl Store {
    pub async fn get(&self, path: &str) -> Result<Option<Stored>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(memory.get(path)),
            Self::Disk(dir) => match tokio::fs::read(dir.join(path)).await {
                Ok(sealed) => Ok(Some(Stored {
                    sealed,
                    version: None,
                })),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(error) => Err(StoreError::Failed(error.to_string())),
            },
            Self::S3(s3) => s3.get(path).await,
        }
    }

    /// Writes a state expiring at `expires`, if `expected` still holds.
    pub async fn put(
        &self,
        path: &str,
        sealed: Vec<u8>,
        expires: SystemTime,
        expected: Expected,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                memory.put(path, sealed, expires);
                Ok(())
            }
            Self::Disk(dir) => write_file(&dir.join(path), &sealed).await,
            Self::S3(s3) => s3.put(path, sealed, expected).await,
        }
    }

    pub async fn delete(&self, path: &str) {
        match self {
            Self::Memory(memory) => memory.delete(path),
            Self::Disk(dir) => {
                let _ = tokio::fs::remove_file(dir.join(path)).await;
            }
            Self::S3(s3) => s3.delete(path).await,
        }
    }

    /// How many live states there are under `prefix` (one caller's): those written since
    /// `fresh_since` (a state lives its TTL from its last write). On disk, the others are
    /// removed on the way; in S3, the bucket's lifecycle rule removes them, and the count may
    /// stop once it reaches `enough` (the caller's allowance).
    pub async fn count(
        &self,
        prefix: &str,
        fresh_since: SystemTime,
        enough: usize,
    ) -> Result<usize, StoreError> {
        match self {
            Self::Memory(memory) => Ok(memory.count(prefix)),
            Self::Disk(dir) => Ok(count_files(&dir.join(prefix), fresh_since)),
            Self::S3(s3) => s3.count(prefix, fresh_since, enough).await,
        }
    }
}

/// The files in `dir` written since `fresh_since`; older ones are expired states, removed.
fn count_files(dir: &std::path::Path, fresh_since: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut fresh = 0;
    for entry in entries.flatten() {
        let written = entry.metadata().and_then(|meta| meta.modified());
        match written {
            Ok(time) if time >= fresh_since => fresh += 1,
            _ => {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    fresh
}

/// Writes a file whole or not at all: a temporary file renamed over the old one.
async fn write_file(path: &std::path::Path, content: &[u8]) -> Result<(), StoreError> {
    let failed = |error: std::io::Error| StoreError::Failed(error.to_string());
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(failed)?;
    }
    let temporary = path.with_extension("writing");
    tokio::fs::write(&temporary, content)
        .await
        .map_err(failed)?;
    tokio::fs::rename(&temporary, path).await.map_err(failed)
}

/// States in memory, at most `capacity` bytes together: past it, the soonest to expire go.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    states: Mutex<HashMap<String, (Vec<u8>, SystemTime)>>,
}

impl MemoryStore {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            states: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Vec<u8>, SystemTime)>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, path: &str) -> Option<Stored> {
        self.lock().get(path).map(|(sealed, _)| Stored {
            sealed: sealed.clone(),
            version: None,
        })
    }

    fn put(&self, path: &str, sealed: Vec<u8>, expires: SystemTime) {
        let mut states = self.lock();
        let now = SystemTime::now();
        states.retain(|_, (_, expiry)| *expiry > now);
        states.insert(path.to_owned(), (sealed, expires));
        let mut total: usize = states.values().map(|(sealed, _)| sealed.len()).sum();
        while total > self.capacity {
            let soonest = states
                .iter()
                .min_by_key(|(_, (_, expiry))| *expiry)
                .map(|(path, _)| path.clone());
            let Some(soonest) = soonest else { break };
            if let Some((sealed, _)) = states.remove(&soonest) {
                tracing::warn!(
                    bytes = sealed.len(),
                    "the session store is full: a session ends early"
                );
                total -= sealed.len();
            }
        }
    }

    fn delete(&self, path: &str) {
        self.lock().remove(path);
    }

    fn count(&self, prefix: &str) -> usize {
        let now = SystemTime::now();
        self.lock()
            .iter()
            .filter(|(path, (_, expiry))| path.starts_with(prefix) && *expiry > now)
            .count()
    }
}

/// States in an S3 bucket, written with S3's conditional writes.
#[derive(Debug)]
pub struct S3Store {
    bucket: String,
    endpoint_url: Option<String>,
    force_path_style: bool,
    client: OnceCell<aws_sdk_s3::Client>,
}

impl S3Store {
    /// The bucket's store, reached as the offload's bucket is (endpoint, path style).
    pub fn new(bucket: String, offload: &OffloadConfig) -> Self {
        Self {
            bucket,
            endpoint_url: offload.endpoint_url.clone(),
            force_path_style: offload.force_path_style,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| {
                crate::execute::s3::client(self.endpoint_url.as_deref(), self.force_path_style)
            })
            .await
    }

    async fn get(&self, path: &str) -> Result<Option<Stored>, StoreError> {
        let got = self
            .client()
            .await
            .get_object()
            .bucket(&self.bucket)
            .key(path)
            .send()
            .await;
        let output = match got {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None)
            }
            Err(error) => return Err(failed(&error)),
        };
        let version = output.e_tag().map(str::to_owned);
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(Some(Stored {
            sealed: body.into_bytes().to_vec(),
            version,
        }))
    }

    async fn put(&self, path: &str, sealed: Vec<u8>, expected: Expected) -> Result<(), StoreError> {
        let mut put = self
            .client()
            .await
            .put_object()
            .bucket(&self.bucket)
            .key(path);
        put = match expected {
            Expected::Absent => put.if_none_match("*"),
            Expected::Version(Some(version)) => put.if_match(version),
            Expected::Version(None) => put,
        };
        match put.body(ByteStream::from(sealed)).send().await {
            Ok(_) => Ok(()),
            Err(error) if precondition_failed(&error) => Err(StoreError::Changed),
            Err(error) => Err(failed(&error)),
        }
    }

    async fn delete(&self, path: &str) {
        let deleted = self
            .client()
            .await
            .delete_object()
            .bucket(&self.bucket)
            .key(path)
            .send();
        if let Err(error) = deleted.await {
            tracing::warn!(error = %DisplayErrorContext(&error), "could not delete a session state");
        }
    }

    /// The prefix's states written since `fresh_since`, page by page (S3 lists 1000 keys at a
    /// time), until `enough` are found. Expired states stay listed until the bucket's lifecycle
    /// rule removes them, up to a day later, so a caller's fresh states may be on any page: one
    /// page counted a caller who had made a thousand short-lived sessions as holding none.
    async fn count(
        &self,
        prefix: &str,
        fresh_since: SystemTime,
        enough: usize,
    ) -> Result<usize, StoreError> {
        let fresh_since = aws_sdk_s3::primitives::DateTime::from(fresh_since);
        let mut pages = self
            .client()
            .await
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut fresh = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| failed(&error))?;
            fresh += page
                .contents()
                .iter()
                .filter(|object| object.last_modified().is_some_and(|t| *t >= fresh_since))
                .count();
            if fresh >= enough {
                break;
            }
        }
        Ok(fresh)
    }
}

fn failed<E: std::error::Error + 'static>(error: &E) -> StoreError {
    StoreError::Failed(DisplayErrorContext(error).to_string())
}

/// Whether S3 refused a conditional write: the object changed (412) or exists already (412, or
/// 409 while another write of it is in flight).
fn precondition_failed<E>(error: &aws_sdk_s3::error::SdkError<E, HttpResponse>) -> bool {
    matches!(
        error
            .raw_response()
            .map(|response| response.status().as_u16()),
        Some(412 | 409)
    )
}
