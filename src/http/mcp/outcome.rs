//! The structured content of every `run_python` result, as a model reads it: `/execute`'s
//! envelope or error body, with output cut to fit a model's context.

use rmcp::schemars;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The structured content of every `run_python` result.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    /// Whether the code ran to its end; `result` is then its result.
    pub ok: bool,
    /// main()'s return value, or a cell's last expression (JSON); null after a failure. Over
    /// the reply's size, a string: the start of its JSON and a marker (`truncated.result`).
    pub result: Value,
    /// A cell's text rendering of a result that was not JSON (a DataFrame's table, a repr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub truncated: Truncated,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The isolation that ran the code: `nsjail` or `compat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The files the code left under `outputs/`; their contents are content blocks.
    pub files: Vec<FileEntry>,
    /// The session the call ran in: `{"id", "saved", "dropped"}`; pass `id` as `session`
    /// again to continue it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Value>,
    /// The failure's code (`EXCEPTION`, `TIMEOUT`, ...), as `/execute` answers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The failure, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    /// The traceback of the code's own lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
    /// Where an exception was raised: `cell`, `module`, `main` or `files`.
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// A syntax error's line and column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// After `OVERLOADED`: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// Anything else the failure carries (limits, sizes, a signal).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

/// Which parts were cut, by the service's caps or to fit this reply.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Truncated {
    pub stdout: bool,
    pub stderr: bool,
    pub result: bool,
}

/// What the execution used.
#[derive(Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    pub wall_ms: u64,
    pub cpu_ms: Option<u64>,
    pub peak_memory_bytes: Option<u64>,
}

/// One output file, and how its content came back.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub content_type: String,
    /// `image` (image content), `text` or `blob` (an embedded resource), or `listed` (too
    /// large a binary to embed: only named here).
    pub returned_as: String,
}
