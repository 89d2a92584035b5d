//! The script's output files: from the report's files section to the envelope's `files`, or to
//! the error that says why none are returned. Never some of them: over a limit, the answer is
//! the limit's error code, not a shortened list.
//!
//! The script's own process lists them (layer/harness_files.py), so the section is checked as
//! the frame is: a script that overwrites it can only make its own answer an error.

use super::report::{ListedFile, Outputs};
use crate::execute::api::files::content_type;
use crate::execute::api::{ApiError, ErrorCode, OutputFile, SkippedFile};
use crate::limits::Limits;

/// What a successful execution returns of its files: those returned, and those passed over.
pub type Returned = (Vec<OutputFile>, Vec<SkippedFile>);

pub fn returned(outputs: Option<&Outputs>, limits: &Limits) -> Result<Returned, ApiError> {
    match outputs {
        None => Ok((Vec::new(), Vec::new())),
        Some(Outputs::Listed { files, skipped }) if is_plausible(files, skipped, limits) => {
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
        Some(Outputs::OverLimit { error }) => {
            Err(over_limit(error, limits).unwrap_or_else(overwritten))
        }
        Some(Outputs::Listed { .. } | Outputs::Corrupt) => Err(overwritten()),
    }
}

/// Where the script leaves the files it returns (OUTPUTS_DIR in layer/harness_files.py).
const OUTPUTS_DIR: &str = "outputs";
/// Skipped entries the harness names at most (MAX_SKIPPED_LISTED there), and how long it lets
/// each one's path be (MAX_SKIPPED_PATH, in characters of up to 4 bytes).
const SKIPPED_LISTED: usize = 32;
const SKIPPED_PATH_BYTES: usize = 4 * 1024;
/// Why the harness passes an entry over (layer/harness_files.py).
const SKIP_REASONS: [&str; 7] = [
    "symlink",
    "fifo",
    "socket",
    "device",
    "not_a_regular_file",
    "name_not_utf8",
    "too_deep",
];

/// What the harness could have listed: within the limits, under `outputs/`, each content the
/// base64 of as many bytes as it says.
fn is_plausible(files: &[ListedFile], skipped: &[SkippedFile], limits: &Limits) -> bool {
    let total: u64 = files.iter().map(|file| file.bytes).sum();
    files.len() <= limits.output_files as usize
        && total <= limits.output_bytes.as_bytes()
        && files.iter().all(|file| {
            is_output_path(&file.path)
                && file.content_base64.len() as u64 == file.bytes.div_ceil(3) * 4
        })
        && skipped.len() <= SKIPPED_LISTED
        && skipped.iter().all(|entry| {
            entry.path.len() <= SKIPPED_PATH_BYTES
                && is_output_path(&entry.path)
                && SKIP_REASONS.contains(&entry.reason.as_str())
        })
}

/// `outputs` or a path below it, with no empty, `.` or `..` component.
fn is_output_path(path: &str) -> bool {
    let mut components = path.split('/');
    components.next() == Some(OUTPUTS_DIR)
        && components.all(|part| !matches!(part, "" | "." | "..") && !part.contains('\0'))
}

fn overwritten() -> ApiError {
    ApiError::new(
        ErrorCode::EmptyOutput,
        "the script overwrote the list of its output files with something that is not one",
    )
}

fn over_limit(error: &str, limits: &Limits) -> Option<ApiError> {
    let error = match error {
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
        _ => return None,
    };
    Some(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(path: &str, bytes: u64, content_base64: &str) -> Outputs {
        Outputs::Listed {
            files: vec![ListedFile {
                path: path.to_owned(),
                bytes,
                content_base64: content_base64.to_owned(),
            }],
            skipped: Vec::new(),
        }
    }

    fn code(outputs: &Outputs) -> Option<ErrorCode> {
        returned(Some(outputs), &Limits::default())
            .err()
            .map(|error| error.code)
    }

    #[test]
    fn what_the_harness_lists_passes() {
        let outputs = listed("outputs/deep/a.txt", 4, "YWJjZA==");
        let (files, _) = returned(Some(&outputs), &Limits::default()).expect("listed files pass");
        assert_eq!(files[0].path, "outputs/deep/a.txt");
        assert_eq!(files[0].content_base64, "YWJjZA==");
    }

    #[test]
    fn a_section_the_script_overwrote_is_its_own_error() {
        let forged = [
            listed("../etc/passwd", 4, "YWJjZA=="),
            listed("outputs/../../x", 4, "YWJjZA=="),
            listed("outputs//x", 4, "YWJjZA=="),
            listed("elsewhere/x", 4, "YWJjZA=="),
            listed("outputs/a", 1, "YWJjZA=="),
            listed("outputs/a", u64::MAX / 2, "YWJjZA=="),
            Outputs::OverLimit {
                error: "ANYTHING".to_owned(),
            },
            Outputs::Corrupt,
        ];
        for outputs in &forged {
            assert_eq!(code(outputs), Some(ErrorCode::EmptyOutput), "{outputs:?}");
        }
    }

    #[test]
    fn more_files_than_the_limit_is_forged_too() {
        let file = || ListedFile {
            path: "outputs/a".to_owned(),
            bytes: 0,
            content_base64: String::new(),
        };
        let limits = Limits::default();
        let outputs = Outputs::Listed {
            files: (0..=limits.output_files).map(|_| file()).collect(),
            skipped: Vec::new(),
        };
        assert_eq!(code(&outputs), Some(ErrorCode::EmptyOutput));
    }

    #[test]
    fn the_harnesss_own_limit_errors_keep_their_codes() {
        let outputs = Outputs::OverLimit {
            error: "TOO_MANY_OUTPUT_FILES".to_owned(),
        };
        assert_eq!(code(&outputs), Some(ErrorCode::TooManyOutputFiles));
    }
}
