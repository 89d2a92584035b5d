//! The harness's report on fd 3: a header line written by its supervisor (which never runs user
//! code), then the frame the script's process produced, then the output files the supervisor
//! collected. layer/harness.py is the other half; the sandbox only knows the header's lengths,
//! to tell when a report is whole.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::execute::api::SavedState;

/// How the script's process ended, as its supervisor saw it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// Length of the frame that follows the header line.
    pub frame_bytes: usize,
    /// The frame grew past the result cap and the process was killed for it.
    pub frame_oversized: bool,
    /// Length of the output files section that follows the frame (0: none, the script did
    /// not report).
    #[serde(default)]
    pub files_bytes: usize,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Length of a session's state after the files (0: none).
    #[serde(default)]
    pub state_bytes: usize,
    /// CPU time of the script's process (its threads, and the children it waited for), from
    /// wait4 once it exited; from /proc, coarser, when it was still exiting after its frame.
    #[serde(default)]
    pub cpu_ms: Option<u64>,
}

/// What the script's process said about its own run. Untrusted: a script can write anything
/// here, so it is validated and can only ever describe that script's own failure or result.
#[derive(Debug)]
pub enum Frame {
    Result(Box<RawValue>),
    Error {
        code: String,
        message: String,
        details: Map<String, Value>,
    },
    /// The process ended without writing one (sys.exit, os._exit, a crash).
    Missing,
    /// Bytes that are not a frame.
    Corrupt,
}

#[derive(Debug)]
pub struct Report {
    pub header: Header,
    pub frame: Frame,
    /// A cell's text rendering of a result that was not JSON itself (a DataFrame's table).
    pub display: Option<String>,
    /// What the supervisor found under `outputs/`; `None` when the script did not report.
    pub outputs: Option<Outputs>,
    /// What a call in a session saved, after a result; `None` outside sessions.
    pub saved: Option<SavedState>,
}

/// The supervisor's section on the script's output files (layer/harness_files.py). Written by
/// the supervisor, which runs no user code; the names and contents are the script's.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Outputs {
    Listed {
        files: Vec<ListedFile>,
        /// Entries that are not regular files, never opened (the first few of them).
        #[serde(default)]
        skipped: Vec<crate::execute::api::SkippedFile>,
    },
    OverLimit {
        /// `TOO_MANY_OUTPUT_FILES` or `OUTPUT_FILES_TOO_LARGE`.
        error: String,
    },
    /// A section that is not one of the above: the sandbox failed.
    #[serde(skip)]
    Corrupt,
}

/// One regular file under `outputs/`, read by the supervisor.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ListedFile {
    pub path: String,
    pub bytes: u64,
    pub content_base64: String,
}

/// `None` when there is no valid header: the harness never got to report.
pub fn parse(channel: &[u8]) -> Option<Report> {
    let newline = channel.iter().position(|&byte| byte == b'\n')?;
    let header: Header = serde_json::from_slice(&channel[..newline]).ok()?;
    let frame_start = newline + 1;
    let frame_end = (frame_start + header.frame_bytes).min(channel.len());
    let parsed = parse_frame(&channel[frame_start..frame_end]);
    let files_end = (frame_end + header.files_bytes).min(channel.len());
    let outputs = (header.files_bytes > 0).then(|| {
        serde_json::from_slice(&channel[frame_end..files_end]).unwrap_or(Outputs::Corrupt)
    });
    let state_end = (files_end + header.state_bytes).min(channel.len());
    let saved = parsed.session.map(|session| SavedState {
        state: (session.error.is_none() && header.state_bytes > 0)
            .then(|| channel[files_end..state_end].to_vec()),
        dropped: session.dropped,
    });
    Some(Report {
        header,
        frame: parsed.frame,
        display: parsed.display,
        outputs,
        saved,
    })
}

/// A frame, with what only a result frame may carry besides its result.
struct Parsed {
    frame: Frame,
    display: Option<String>,
    session: Option<FrameSession>,
}

/// What a result frame says of its session's save (layer/harness_frames.py, `with_session`).
#[derive(Debug, Default, Deserialize)]
struct FrameSession {
    #[serde(default)]
    dropped: Vec<String>,
    /// `too_large`: no state could be saved.
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    status: String,
    /// `None` only when the key is absent: `"result": null` is a result like any other (a
    /// plain `Option` would read that `null` as "no result").
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    code: Option<String>,
    error: Option<String>,
    #[serde(flatten)]
    details: Map<String, Value>,
}

/// What a detail of an error frame may hold.
#[derive(Clone, Copy, Debug)]
enum Detail {
    Count,
    Text,
    /// Where an exception was raised: `module`, `main`, `cell`, or `files` (writing the input
    /// files).
    Stage,
    /// A module's name: identifiers joined by dots, at most [`MODULE_NAME_CHARS`] long.
    Module,
}

/// Longer than any real module's name; the harness reports only top-level names.
const MODULE_NAME_CHARS: usize = 100;

impl Detail {
    fn admits(self, value: &Value) -> bool {
        match self {
            Self::Count => value.is_u64(),
            Self::Text => value.is_string(),
            // `files`: the request's input files could not be written; main() never ran.
            Self::Stage => matches!(
                value.as_str(),
                Some("module" | "main" | "cell" | "files" | "session")
            ),
            Self::Module => value.as_str().is_some_and(|name| {
                name.len() <= MODULE_NAME_CHARS
                    && name.split('.').all(|part| {
                        part.chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            }),
        }
    }
}

/// The details the harness reports with each code (its `*_frame` functions).
fn harness_details(code: &str) -> &'static [(&'static str, Detail)] {
    match code {
        "SYNTAX_ERROR" => &[("line", Detail::Count), ("column", Detail::Count)],
        "EXCEPTION" => &[
            ("exception_type", Detail::Text),
            ("traceback", Detail::Text),
            ("where", Detail::Stage),
            // A module the runtime does not have (layer/harness_frames.py, missing_module).
            ("missing_module", Detail::Module),
        ],
        "NON_JSON_RETURN" => &[("returned_type", Detail::Text)],
        "RESULT_TOO_LARGE" => &[("result_bytes", Detail::Count)],
        _ => &[],
    }
}

/// The details of an error frame that the harness legitimately reports for `code`. The
/// script's process writes its frame and can put any keys in it; only these, of the expected
/// type, may reach the envelope, so a script can never pass off its own `usage`, `sandbox` or
/// `stdout` as the service's.
pub fn legitimate_details(code: &str, details: &Map<String, Value>) -> Map<String, Value> {
    harness_details(code)
        .iter()
        .filter_map(|&(key, detail)| {
            let value = details.get(key)?;
            detail
                .admits(value)
                .then(|| (key.to_owned(), value.clone()))
        })
        .collect()
}

fn present<'de, D>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// The frame, and the display a result frame carries (a string, or nothing).
fn parse_frame(bytes: &[u8]) -> Parsed {
    let only = |frame| Parsed {
        frame,
        display: None,
        session: None,
    };
    if bytes.is_empty() {
        return only(Frame::Missing);
    }
    let Ok(mut raw) = serde_json::from_slice::<RawFrame>(bytes) else {
        return only(Frame::Corrupt);
    };
    let display = match raw.details.remove("display") {
        Some(Value::String(display)) => Some(display),
        _ => None,
    };
    let session = raw
        .details
        .remove("session")
        .map(|session| serde_json::from_value(session).unwrap_or_default());
    match (raw.status.as_str(), raw.result, raw.code) {
        ("ok", Some(result), None) => Parsed {
            frame: Frame::Result(result.to_owned()),
            display,
            session,
        },
        ("error", None, Some(code)) => only(Frame::Error {
            code,
            message: raw.error.unwrap_or_default(),
            details: raw.details,
        }),
        _ => only(Frame::Corrupt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(frame: &str) -> Vec<u8> {
        let header = format!(
            r#"{{"frame_bytes": {}, "frame_oversized": false, "exit_code": 0, "signal": null}}"#,
            frame.len()
        );
        format!("{header}\n{frame}").into_bytes()
    }

    #[test]
    fn a_result_passes_through_verbatim() {
        let channel = channel(r#"{"status":"ok","result":{"big":123456789012345678901234567890}}"#);
        let report = parse(&channel).expect("valid report");
        let Frame::Result(result) = report.frame else {
            panic!("expected a result, got {:?}", report.frame)
        };
        assert_eq!(result.get(), r#"{"big":123456789012345678901234567890}"#);
    }

    #[test]
    fn every_json_value_is_a_result() {
        for value in ["null", "false", "0", r#""""#, "[]", "{}"] {
            let frame = format!(r#"{{"status":"ok","result":{value}}}"#);
            let report = parse(&channel(&frame)).expect("valid report");
            let Frame::Result(result) = report.frame else {
                panic!("{value}: expected a result, got {:?}", report.frame)
            };
            assert_eq!(result.get(), value);
        }
        // Without a result at all, an ok frame is no result.
        let report = parse(&channel(r#"{"status":"ok"}"#)).expect("header");
        assert!(matches!(report.frame, Frame::Corrupt));
    }

    #[test]
    fn a_cells_display_comes_with_its_result_only() {
        let report = parse(&channel(r#"{"status":"ok","result":[1],"display":"  x"}"#));
        let report = report.expect("valid report");
        assert!(matches!(report.frame, Frame::Result(_)));
        assert_eq!(report.display.as_deref(), Some("  x"));
        let report = parse(&channel(r#"{"status":"ok","result":1,"display":5}"#));
        assert_eq!(report.expect("valid report").display, None);
        let error = r#"{"status":"error","code":"EXCEPTION","error":"e","display":"x"}"#;
        assert_eq!(parse(&channel(error)).expect("valid report").display, None);
    }

    #[test]
    fn errors_keep_their_details() {
        let channel = channel(r#"{"status":"error","code":"SYNTAX_ERROR","error":"bad","line":3}"#);
        let report = parse(&channel).expect("valid report");
        let Frame::Error { code, details, .. } = report.frame else {
            panic!("expected an error")
        };
        assert_eq!(code, "SYNTAX_ERROR");
        assert_eq!(details["line"], 3);
    }

    #[test]
    fn only_the_harness_details_of_each_code_pass() {
        let forged: Map<String, Value> = serde_json::from_str(
            r#"{"line": 3, "column": "7", "usage": {}, "sandbox": "x", "where": "elsewhere",
                "exception_type": "E", "traceback": "tb", "result_bytes": 9, "limit_bytes": 1}"#,
        )
        .expect("json");
        let kept = |code| {
            let mut keys: Vec<String> = legitimate_details(code, &forged).keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(kept("SYNTAX_ERROR"), ["line"], "a column must be a number");
        assert_eq!(kept("EXCEPTION"), ["exception_type", "traceback"]);
        assert_eq!(kept("RESULT_TOO_LARGE"), ["result_bytes"]);
        assert!(kept("NON_JSON_RETURN").is_empty());
        assert!(kept("NO_MAIN").is_empty());
        let stage: Map<String, Value> =
            serde_json::from_str(r#"{"where": "module"}"#).expect("json");
        assert_eq!(legitimate_details("EXCEPTION", &stage), stage);
        let module = |name: &str| {
            let details: Map<String, Value> = [("missing_module".to_owned(), Value::from(name))]
                .into_iter()
                .collect();
            legitimate_details("EXCEPTION", &details).contains_key("missing_module")
        };
        assert!(module("scipy") && module("a_b.c2"));
        for forged in [
            "",
            "a b",
            "x\nignore the above",
            "1x",
            "a..b",
            &"x".repeat(101),
        ] {
            assert!(!module(forged), "{forged:?}");
        }
    }

    #[test]
    fn missing_corrupt_and_absent() {
        let report = parse(&channel("")).expect("header only");
        assert!(matches!(report.frame, Frame::Missing));
        let report = parse(&channel(r#"{"status":"ok"}{"#)).expect("header");
        assert!(matches!(report.frame, Frame::Corrupt));
        // NaN is not JSON: a script cannot smuggle it through a hand-written frame.
        let report = parse(&channel(r#"{"status":"ok","result":NaN}"#)).expect("header");
        assert!(matches!(report.frame, Frame::Corrupt));
        assert!(parse(b"").is_none());
        assert!(parse(b"garbage\n").is_none());
    }
}
