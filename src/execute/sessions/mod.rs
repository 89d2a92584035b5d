//! Sessions that need no server affinity: a session is a state, stored, not a process kept
//! alive. After each call that runs in a session, the sandbox pickles what the next call needs
//! (layer/harness_session.py); the service seals it (`seal`) and keeps it in the store the
//! deployment chose (`store`), under its caller, so any instance sharing the store continues
//! any session, and the next call restores it inside its own sandbox before its code runs.
//!
//! One call at a time per session: a second call while one runs on this instance is refused
//! (`SESSION_BUSY`, retry shortly), because running it from the same state would make its
//! answer and the other's race for the next state; across instances (S3), a call's state is
//! saved only if the session is still at the state it began from (`SESSION_CONFLICT`
//! otherwise). A failed call leaves the session at its previous state, and says so.

mod seal;
mod store;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::config::{OffloadConfig, SessionConfig, SessionStoreKind};
use crate::execute::api::{ApiError, ErrorCode, ExecuteResponse, SessionOutcome, SessionRequest};
use seal::{Rejected, Sealer};
use store::{Expected, MemoryStore, S3Store, Store, StoreError};

#[derive(Debug)]
pub struct Sessions {
    store: Store,
    sealer: Sealer,
    ttl: Duration,
    per_key: u32,
    /// Sessions with a call running on this instance.
    running: Arc<Mutex<HashSet<String>>>,
}

/// One call's session, from its start to its save: the state it restores, and the version of
/// it the save must still find.
#[derive(Debug)]
pub struct Begun {
    pub id: String,
    pub state: Option<Vec<u8>>,
    /// The import statements of the session's earlier calls: its state needs what they
    /// imported, so a call that imports nothing itself still goes to the template that has it.
    pub imports: Vec<String>,
    caller: String,
    expected: Expected,
    _running: Running,
}

impl Begun {
    /// What an error says of the session: it is where it was. A new session whose first call
    /// failed was never created, so it has no id to continue.
    fn kept(&self) -> serde_json::Value {
        match self.expected {
            Expected::Absent => json!({"saved": false}),
            Expected::Version(_) => json!({"id": self.id, "saved": false}),
        }
    }

    fn not_saved(&self, code: ErrorCode, message: &str) -> ApiError {
        ApiError::new(code, message).with("session", self.kept())
    }
}

/// Marks a session as running a call on this instance until dropped.
#[derive(Debug)]
struct Running {
    id: String,
    running: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.running).remove(&self.id);
    }
}

impl Sessions {
    pub fn new(config: &SessionConfig, offload: &OffloadConfig) -> Result<Self, String> {
        let key = config.key.as_ref().map(|key| key.0.as_str());
        let store = match config.store {
            SessionStoreKind::Memory => {
                Store::Memory(MemoryStore::new(config.memory_max.as_usize()))
            }
            SessionStoreKind::Disk => Store::Disk(
                config
                    .dir
                    .clone()
                    .ok_or("SESSION_STORE=disk needs SESSION_DIR")?,
            ),
            SessionStoreKind::S3 => {
                let bucket = config
                    .bucket
                    .clone()
                    .ok_or("SESSION_STORE=s3 needs SESSION_BUCKET (or RESULT_BUCKET)")?;
                if key.is_none() {
                    // A random key per process would make every other instance's states unreadable.
                    return Err(
                        "SESSION_STORE=s3 needs SESSION_KEY, which every instance shares".into(),
                    );
                }
                Store::S3(S3Store::new(bucket, offload))
            }
        };
        if key.is_none() {
            tracing::info!(
                "no SESSION_KEY: session states are sealed with a key of this process's own"
            );
        }
        Ok(Self {
            store,
            sealer: Sealer::new(key)?,
            ttl: config.ttl,
            per_key: config.per_key,
            running: Arc::default(),
        })
    }

    /// Starts a call in `caller`'s session: a new one (within the caller's allowance), or the
    /// one `request` names, with its state opened.
    pub async fn begin(&self, caller: &str, request: &SessionRequest) -> Result<Begun, ApiError> {
        let (id, record, expected) = match request {
            SessionRequest::New => {
                self.within_allowance(caller).await?;
                (
                    uuid::Uuid::new_v4().simple().to_string(),
                    None,
                    Expected::Absent,
                )
            }
            SessionRequest::Continue(id) => {
                let (record, version) = self.load(caller, id).await?;
                (id.clone(), Some(record), Expected::Version(version))
            }
        };
        let running = self.mark_running(&id)?;
        let (imports, state) = match record {
            Some(Record { imports, state }) => (imports, Some(state)),
            None => (Vec::new(), None),
        };
        Ok(Begun {
            id,
            state,
            imports,
            caller: caller.to_owned(),
            expected,
            _running: running,
        })
    }

    /// Saves what the call left, when it succeeded, and says in the answer what became of the
    /// session; a failure leaves the session where it was.
    pub async fn finish(
        &self,
        begun: Begun,
        script: &str,
        answer: Result<ExecuteResponse, ApiError>,
    ) -> Result<ExecuteResponse, ApiError> {
        let mut response = match answer {
            Ok(response) => response,
            Err(error) => return Err(error.with("session", begun.kept())),
        };
        let Some(saved) = response.saved_state.take() else {
            return Err(begun.not_saved(ErrorCode::SandboxError, "the sandbox saved no state"));
        };
        let Some(state) = saved.state else {
            let message = "the session's state is over SESSION_STATE_MAX_MIB; the session keeps its previous state";
            return Err(begun.not_saved(ErrorCode::SessionTooLarge, message));
        };
        let expires = SystemTime::now() + self.ttl;
        let state_bytes = state.len() as u64;
        let record = Record {
            imports: with_imports_of(&begun.imports, script),
            state,
        };
        let sealed = self
            .sealer
            .seal(&begun.caller, &begun.id, expires, &record.encode());
        let path = path(&begun.caller, &begun.id);
        match self
            .store
            .put(&path, sealed, expires, begun.expected.clone())
            .await
        {
            Ok(()) => {}
            Err(StoreError::Changed) => {
                let message =
                    "another call of this session saved its state first; this call's was not saved";
                return Err(begun.not_saved(ErrorCode::SessionConflict, message));
            }
            Err(error) => {
                tracing::error!(%error, "could not save a session's state");
                let message = "the session's state could not be saved";
                return Err(begun.not_saved(ErrorCode::SandboxError, message));
            }
        }
        response.session = Some(SessionOutcome {
            id: begun.id,
            saved: true,
            dropped: saved.dropped,
            state_bytes,
        });
        Ok(response)
    }

    /// The opened record of `caller`'s session `id`, and the version read.
    async fn load(&self, caller: &str, id: &str) -> Result<(Record, Option<String>), ApiError> {
        let path = path(caller, id);
        let stored = self.store.get(&path).await.map_err(store_failed)?;
        let Some(stored) = stored else {
            return Err(not_found(id));
        };
        match self.sealer.open(caller, id, &stored.sealed) {
            Ok(opened) if opened.expires > SystemTime::now() => {
                let record = Record::decode(opened.state).ok_or_else(|| rejected(id))?;
                Ok((record, stored.version))
            }
            Ok(_) => {
                self.store.delete(&path).await;
                Err(not_found(id))
            }
            Err(Rejected) => {
                tracing::warn!("a stored session state failed authentication: refused");
                Err(rejected(id))
            }
        }
    }

    async fn within_allowance(&self, caller: &str) -> Result<(), ApiError> {
        let allowed = self.per_key as usize;
        let fresh_since = SystemTime::now() - self.ttl;
        let held = self
            .store
            .count(&prefix(caller), fresh_since, allowed)
            .await
            .map_err(store_failed)?;
        if held >= allowed {
            return Err(ApiError::new(
                ErrorCode::TooManySessions,
                format!("this key holds {held} sessions, its allowance (SESSIONS_PER_KEY); let one expire first"),
            ));
        }
        Ok(())
    }

    fn mark_running(&self, id: &str) -> Result<Running, ApiError> {
        if !lock(&self.running).insert(id.to_owned()) {
            let mut error = ApiError::new(
                ErrorCode::SessionBusy,
                "another call of this session is running; sessions take one call at a time",
            )
            .with("session", json!({"id": id}));
            error.retry_after_s = Some(1);
            return Err(error);
        }
        Ok(Running {
            id: id.to_owned(),
            running: Arc::clone(&self.running),
        })
    }
}

/// Where a caller's states live: under a digest of the caller's name, so one caller's listing
/// is one prefix and no name reaches the store.
fn prefix(caller: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, caller.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sessions/{hex}/")
}

fn path(caller: &str, id: &str) -> String {
    format!("{}{id}", prefix(caller))
}

fn rejected(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::SessionStateRejected,
        "the session's stored state failed authentication (altered, or sealed with another key); it was refused, not restored",
    )
    .with("session", json!({"id": id}))
}

/// The most import statements a session keeps for routing (a bound on what it carries).
const MAX_IMPORTS: usize = 256;

/// The session's import statements with `script`'s added, each once, at most [`MAX_IMPORTS`].
fn with_imports_of(earlier: &[String], script: &str) -> Vec<String> {
    let mut imports = earlier.to_vec();
    for statement in crate::execute::templates::import_statements(script) {
        if imports.len() < MAX_IMPORTS && !imports.contains(&statement) {
            imports.push(statement);
        }
    }
    imports
}

/// What a session stores, sealed: the sandbox's pickled state, and beside it (read by the
/// service, never by the sandbox) the import statements that route its calls.
#[derive(Debug)]
struct Record {
    imports: Vec<String>,
    state: Vec<u8>,
}

impl Record {
    /// The imports' length (4 bytes, big-endian), the imports one per line, the state.
    fn encode(&self) -> Vec<u8> {
        let imports = self.imports.join("\n");
        let mut bytes = (imports.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(imports.as_bytes());
        bytes.extend_from_slice(&self.state);
        bytes
    }

    fn decode(mut bytes: Vec<u8>) -> Option<Self> {
        let length = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        let imports = std::str::from_utf8(bytes.get(4..4 + length)?).ok()?;
        let imports = imports.lines().map(str::to_owned).collect();
        let state = bytes.split_off(4 + length);
        Some(Self { imports, state })
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::SessionNotFound,
        "no such session for this key: it never existed, expired, or is another key's",
    )
    .with("session", json!({"id": id}))
}

fn store_failed(error: StoreError) -> ApiError {
    tracing::error!(%error, "the session store failed");
    ApiError::new(
        ErrorCode::SandboxError,
        "the session store failed; please retry",
    )
}

fn lock(running: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    running.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written_and_a_cut_one_does_not() {
        let imports = with_imports_of(&["import pandas as pd".into()], "import numpy\nx = 1");
        assert_eq!(imports, ["import pandas as pd", "import numpy"]);
        let record = Record {
            imports,
            state: b"pickled".to_vec(),
        };
        let bytes = record.encode();
        let read = Record::decode(bytes.clone()).expect("a record");
        assert_eq!((read.imports, read.state), (record.imports, record.state));
        assert!(Record::decode(bytes[..10].to_vec()).is_none());
    }
}
