//! The script's output files: from the supervisor's section of the report to the envelope's
//! `files`, or to the error that says why none are returned. Never some of them: over a limit,
//! the answer is the limit's error code, not a shortened list.

use super::report::Outputs;
use super::sandbox_failed;
use crate::execute::api::files::content_type;
use crate::execute::api::{ApiError, ErrorCode, OutputFile, SkippedFile};
use crate::limits::Limits;

/// What a successful execution returns of its files: those returned, and those passed over.
pub type Returned = (Vec<OutputFile>, Vec<SkippedFile>);

pub fn returned(outputs: Option<&Outputs>, limits: &Limits) -> Result<Returned, ApiError> {
    match outputs {
        None => Ok((Vec::new(), Vec::new())),
        Some(Outputs::Listed { files, skipped }) => {
            let files = files
                .iter()
                .map(|file| OutputFile {
                    path: file.path.clone(),
                    bytes: file.bytes,
                    content_type: content_type(&file.path),
                    content_base64: file.content_base64.clone(),
                })
                .collect();
            Ok((files, skipped.clone()))
        }
        Some(Outputs::OverLimit { error }) => Err(over_limit(error, limits)),
        Some(Outputs::Corrupt) => {
            tracing::error!("the harness's output files section is not valid");
            Err(sandbox_failed())
        }
    }
}

fn over_limit(error: &str, limits: &Limits) -> ApiError {
    match error {
        "TOO_MANY_OUTPUT_FILES" => ApiError::new(
            ErrorCode::TooManyOutputFiles,
            format!(
                "the script left more than {} files under outputs/ (MAX_OUTPUT_FILES); none \
                 are returned",
                limits.output_files
            ),
        )
        .with("limit_files", limits.output_files),
        "OUTPUT_FILES_TOO_LARGE" => ApiError::new(
            ErrorCode::OutputFilesTooLarge,
            format!(
                "the files the script left under outputs/ add up to more than {} \
                 (MAX_OUTPUT_FILES_KIB); none are returned",
                limits.output_bytes
            ),
        )
        .with("limit_bytes", limits.output_bytes.as_bytes()),
        other => {
            tracing::error!(
                error = other,
                "the harness reported an unknown output files error"
            );
            sandbox_failed()
        }
    }
}
