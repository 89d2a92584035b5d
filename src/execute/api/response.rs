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

/// `result` and `stdout` keep exactly the seeds' meaning; the rest only adds to them.
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
}
