//! The harness's job, as layer/harness.py reads it on stdin: the code, its keyword arguments,
//! its input files, how it runs (a script's `main()` or a notebook cell) and whether open
//! figures are saved, in one line of JSON; in a session, the state it restores follows the
//! line as raw bytes (base64 in the JSON cost a session's every call an encoding here and a
//! parse and a decoding in the sandbox). The sandbox carries it as bytes it never reads.

use std::sync::Arc;

use serde_json::json;

use super::api::ExecuteRequest;
use crate::limits::Limits;
use crate::sandbox::Job;

/// The job for `request`, under `limits` (already the request's own); in a session, with the
/// state it restores (none for a new session).
pub fn for_request(
    request: &ExecuteRequest,
    limits: Limits,
    session: Option<Option<&[u8]>>,
) -> Job {
    let mut input = json!({
        "script": request.script,
        "args": request.args,
        "files": request.files,
        "mode": request.mode.as_str(),
        "figures": request.save_figures,
    });
    let state = session.map(Option::unwrap_or_default);
    if let Some(state) = state {
        input["session"] = json!({ "state_bytes": state.len() });
    }
    // serde_json writes no raw newline: the line ends at the first one.
    let mut bytes = input.to_string().into_bytes();
    if let Some(state) = state {
        bytes.reserve(1 + state.len());
        bytes.push(b'\n');
        bytes.extend_from_slice(state);
    }
    Job {
        input: Arc::from(bytes),
        limits,
    }
}
