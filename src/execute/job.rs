//! The harness's job, as layer/harness.py reads it on stdin: the code, its keyword arguments,
//! its input files, how it runs (a script's `main()` or a notebook cell) and whether open
//! figures are saved, in one JSON object. The sandbox carries it as bytes it never reads.

use std::sync::Arc;

use base64::Engine as _;
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
    if let Some(state) = session {
        let state = state.map(|state| base64::engine::general_purpose::STANDARD.encode(state));
        input["session"] = json!({ "state": state });
    }
    Job {
        input: Arc::from(input.to_string().into_bytes()),
        limits,
    }
}
