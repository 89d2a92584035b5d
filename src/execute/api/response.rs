//! The success envelope of `POST /execute`.

use serde::Serialize;
use serde_json::value::RawValue;

use super::files::{OutputFile, SkippedFile};

/// Which captured streams were cut at their cap.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Truncated {
    pub stdout: bool,
    pub stderr: bool,
}

/// What the execution used, where the platform could measure it.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub wall_ms: u64,
    pub cpu_ms: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
    /// Served by a sandbox the pool had started ahead of time.
    pub warm_start: bool,
}

/// What became of the session a call ran in.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SessionOutcome {
    pub id: String,
    /// The call's state is the session's now.
    pub saved: bool,
    /// Names the state left out: values that cannot be pickled (open files, sockets,
    /// generators, threads), or that could not be restored.
    pub dropped: Vec<String>,
    pub state_bytes: u64,
}

/// What the sandbox saved for the session, until the executor seals and stores it.
#[derive(Debug, Default)]
pub struct SavedState {
    /// None when it was over the limit.
    pub state: Option<Vec<u8>>,
    pub dropped: Vec<String>,
}

/// `result` and `stdout` keep exactly their documented meaning; the rest only adds to them.
#[derive(Debug, Serialize)]
pub struct ExecuteResponse {
    /// main()'s return value, passed through byte for byte as the harness serialized it.
    pub result: Box<RawValue>,
    /// A cell's short text rendering of a result that was not JSON itself (a DataFrame's
    /// table, an object's repr); only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: Truncated,
    pub usage: Usage,
    pub sandbox: &'static str,
    /// The isolation layers that were in force, e.g. `["namespaces", "cgroups", "seccomp"]`.
    pub isolation: Vec<&'static str>,
    /// The regular files the script left under `outputs/`, in path order.
    pub files: Vec<OutputFile>,
    /// Entries under `outputs/` that are not returned (symlinks, FIFOs...); only when any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_files: Vec<SkippedFile>,
    /// The session the call ran in, when it ran in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionOutcome>,
    /// Never sent: what the sandbox saved, for the executor to seal and store.
    #[serde(skip)]
    pub saved_state: Option<SavedState>,
}
