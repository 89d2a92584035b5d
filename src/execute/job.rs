//! The harness's job, as layer/harness.py reads it on stdin: the script, its keyword arguments
//! and its input files, in one JSON object. The sandbox carries it as bytes it never reads.

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
    });
    Job {
        input: Arc::from(input.to_string().into_bytes()),
        limits,
    }
}
