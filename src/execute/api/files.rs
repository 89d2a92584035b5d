//! Files in a request (`files`: written into the script's working directory before `main()`)
//! and in a response (`files`: what the script left under `outputs/`).
//!
//! Input files are checked here, before anything starts: each path must be a plain relative
//! path that stays inside the working directory, and their number and sizes must be within the
//! limits, each refusal with its own code. The harness writes them without following links
//! (layer/harness_files.py), so the checks here and the care there each suffice on their own.

use std::collections::HashSet;

use base64::Engine;
use serde::Serialize;
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};
use crate::config::InputFileLimits;

/// Longest accepted path, and longest component (the usual NAME_MAX).
const MAX_PATH_BYTES: usize = 1024;
const MAX_COMPONENT_BYTES: usize = 255;
/// Deepest accepted path, in components.
const MAX_DEPTH: usize = 16;

/// One input file, as the harness receives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputFile {
    pub path: String,
    #[serde(flatten)]
    pub content: InputContent,
}

/// The content as the client sent it: UTF-8 text, or base64 (checked, passed on as sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum InputContent {
    #[serde(rename = "content")]
    Text(String),
    #[serde(rename = "content_base64")]
    Base64(String),
}

/// One file the script left under `outputs/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutputFile {
    /// Relative to the working directory, `outputs/` included.
    pub path: String,
    pub bytes: u64,
    /// Guessed from the extension; `application/octet-stream` when unknown.
    pub content_type: &'static str,
    pub content_base64: String,
}

/// An entry under `outputs/` that is not returned, and why (`symlink`, `fifo`, `socket`,
/// `device`, `too_deep`, `name_not_utf8`...): such entries are never followed or opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SkippedFile {
    pub path: String,
    pub reason: String,
}

/// The request's `files`: checked, within `limits`.
pub fn parse_input_files(
    value: Option<Value>,
    limits: &InputFileLimits,
) -> Result<Vec<InputFile>, ApiError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(invalid(
                "\"files\" must be a list of {\"path\", \"content\"}",
            ))
        }
    };
    if entries.len() > limits.max_files {
        return Err(ApiError::new(
            ErrorCode::TooManyInputFiles,
            format!(
                "the request has {} files, over the limit of {}",
                entries.len(),
                limits.max_files
            ),
        )
        .with("limit_files", limits.max_files));
    }
    let mut files = Vec::with_capacity(entries.len());
    let mut total = 0u64;
    for (index, entry) in entries.into_iter().enumerate() {
        let (file, size) = parse_entry(entry, index, limits)?;
        total += size;
        if total > limits.max_total.as_bytes() {
            return Err(ApiError::new(
                ErrorCode::InputFilesTooLarge,
                format!(
                    "the request's files add up to more than the limit of {}",
                    limits.max_total
                ),
            )
            .with("limit_bytes", limits.max_total.as_bytes()));
        }
        files.push(file);
    }
    check_no_clashes(&files)?;
    Ok(files)
}

/// One entry and its decoded size.
fn parse_entry(
    entry: Value,
    index: usize,
    limits: &InputFileLimits,
) -> Result<(InputFile, u64), ApiError> {
    let Value::Object(mut fields) = entry else {
        return Err(invalid(format!(
            "files[{index}] must be an object with \"path\" and \"content\" or \"content_base64\""
        )));
    };
    let path = match fields.remove("path") {
        Some(Value::String(path)) => path,
        _ => return Err(invalid(format!("files[{index}].path must be a string"))),
    };
    check_path(&path)?;
    let (content, size) = parse_content(&mut fields, &path)?;
    if size > limits.max_file.as_bytes() {
        return Err(ApiError::new(
            ErrorCode::InputFileTooLarge,
            format!(
                "the input file {path} is {size} bytes, over the limit of {}",
                limits.max_file
            ),
        )
        .with("path", path)
        .with("limit_bytes", limits.max_file.as_bytes()));
    }
    Ok((InputFile { path, content }, size))
}

fn parse_content(
    fields: &mut Map<String, Value>,
    path: &str,
) -> Result<(InputContent, u64), ApiError> {
    match (fields.remove("content"), fields.remove("content_base64")) {
        (Some(Value::String(text)), None) => {
            let size = text.len() as u64;
            Ok((InputContent::Text(text), size))
        }
        (None, Some(Value::String(encoded))) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(&encoded)
                .map_err(|error| {
                    invalid(format!(
                        "the content_base64 of {path} is not valid base64: {error}"
                    ))
                })?;
            Ok((InputContent::Base64(encoded), decoded.len() as u64))
        }
        _ => Err(invalid(format!(
            "the file {path} must have exactly one of \"content\" (text) or \"content_base64\" \
             (standard base64), as a string"
        ))),
    }
}

/// A plain relative path that stays inside the working directory: no leading `/`, no empty,
/// `.` or `..` component, no NUL or other control character.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    let refuse = |why: &str| {
        Err(ApiError::new(
            ErrorCode::InvalidFilePath,
            format!("the file path {path:?} is not allowed: {why}"),
        )
        .with("path", path))
    };
    if path.is_empty() {
        return refuse("it is empty");
    }
    if path.starts_with('/') {
        return refuse("only paths relative to the working directory are allowed");
    }
    if path.len() > MAX_PATH_BYTES {
        return refuse("it is over 1024 bytes long");
    }
    if path.chars().any(char::is_control) {
        return refuse("it contains a control character");
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_DEPTH {
        return refuse("it is more than 16 levels deep");
    }
    for component in components {
        match component {
            "" => return refuse("it has an empty component (a trailing or doubled /)"),
            "." | ".." => return refuse("it has a . or .. component"),
            long if long.len() > MAX_COMPONENT_BYTES => {
                return refuse("a component is over 255 bytes long")
            }
            _ => {}
        }
    }
    Ok(())
}

/// No two files at one path, and no file where another needs a directory (`a` and `a/b`).
fn check_no_clashes(files: &[InputFile]) -> Result<(), ApiError> {
    let paths: HashSet<&str> = files.iter().map(|file| file.path.as_str()).collect();
    if paths.len() < files.len() {
        let mut seen = HashSet::new();
        let twice = files.iter().find(|file| !seen.insert(file.path.as_str()));
        let path = twice.map_or("", |file| file.path.as_str());
        return Err(ApiError::new(
            ErrorCode::InvalidFilePath,
            format!("the file path {path:?} is given twice"),
        )
        .with("path", path));
    }
    for file in files {
        let mut prefix = file.path.as_str();
        while let Some((parent, _)) = prefix.rsplit_once('/') {
            if paths.contains(parent) {
                return Err(ApiError::new(
                    ErrorCode::InvalidFilePath,
                    format!(
                        "the file path {:?} needs {parent:?} to be a directory, but it is also a file",
                        file.path
                    ),
                )
                .with("path", file.path.as_str()));
            }
            prefix = parent;
        }
    }
    Ok(())
}

/// The content type of an output file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    let extension = path
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "eps" | "ps" => "application/postscript",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "txt" | "log" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "json" => "application/json",
        "xml" => "application/xml",
        "parquet" => "application/vnd.apache.parquet",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
