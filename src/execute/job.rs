//! The harness's job, as layer/harness.py reads it on stdin: the code, its keyword arguments,
//! its input files, how it runs (a script's `main()` or a notebook cell) and whether open
//! figures are saved, in one JSON object. The sandbox carries it as bytes it never reads.

use std::sync::Arc;

use serde_json::json;

use super::api::ExecuteRequest;
use crate::limits::Limits;
use crate::sandbox::Job;

/// The job for `request`, under `limits` (already the request's own).
pub fn for_request(request: &ExecuteRequest, limits: Limits) -> Job {
    let input = json!({
        "script": request.script,
        "args": request.args,
        "files": request.files,
        "mode": request.mode.as_str(),
        "figures": request.save_figures,
    });
    Job {
        input: Arc::from(input.to_string().into_bytes()),
        limits,
    }
}
