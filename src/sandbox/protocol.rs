//! The harness's report on fd 3: a header line written by its supervisor (which never runs user
//! code), then the frame the script's process produced. layer/harness.py is the other half.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// How the script's process ended, as its supervisor saw it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// The frame grew past the result cap and the process was killed for it.
    pub frame_oversized: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// CPU time of the script's process and the children it waited for.
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
}

/// `None` when there is no valid header: the harness never got to report.
pub fn parse(channel: &[u8]) -> Option<Report> {
    let newline = channel.iter().position(|&byte| byte == b'\n')?;
    let header: Header = serde_json::from_slice(&channel[..newline]).ok()?;
    let frame = parse_frame(&channel[newline + 1..]);
    Some(Report { header, frame })
}

#[derive(Deserialize)]
struct RawFrame<'a> {
    status: String,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    code: Option<String>,
    error: Option<String>,
    #[serde(flatten)]
    details: Map<String, Value>,
}

fn parse_frame(bytes: &[u8]) -> Frame {
    if bytes.is_empty() {
        return Frame::Missing;
    }
    let Ok(raw) = serde_json::from_slice::<RawFrame>(bytes) else {
        return Frame::Corrupt;
    };
    match (raw.status.as_str(), raw.result, raw.code) {
        ("ok", Some(result), None) => Frame::Result(result.to_owned()),
        ("error", None, Some(code)) => Frame::Error {
            code,
            message: raw.error.unwrap_or_default(),
            details: raw.details,
        },
        _ => Frame::Corrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"frame_oversized": false, "exit_code": 0, "signal": null}"#;

    #[test]
    fn a_result_passes_through_verbatim() {
        let channel = format!(
            "{HEADER}\n{{\"status\":\"ok\",\"result\":{{\"big\":123456789012345678901234567890}}}}"
        );
        let report = parse(channel.as_bytes()).expect("valid report");
        let Frame::Result(result) = report.frame else {
            panic!("expected a result, got {:?}", report.frame)
        };
        assert_eq!(result.get(), r#"{"big":123456789012345678901234567890}"#);
    }

    #[test]
    fn errors_keep_their_details() {
        let channel = format!(
            "{HEADER}\n{{\"status\":\"error\",\"code\":\"SYNTAX_ERROR\",\"error\":\"bad\",\"line\":3}}"
        );
        let report = parse(channel.as_bytes()).expect("valid report");
        let Frame::Error { code, details, .. } = report.frame else {
            panic!("expected an error")
        };
        assert_eq!(code, "SYNTAX_ERROR");
        assert_eq!(details["line"], 3);
    }

    #[test]
    fn missing_corrupt_and_absent() {
        let report = parse(format!("{HEADER}\n").as_bytes()).expect("header only");
        assert!(matches!(report.frame, Frame::Missing));
        let report = parse(format!("{HEADER}\n{{\"status\":\"ok\"}}{{").as_bytes()).expect("hdr");
        assert!(matches!(report.frame, Frame::Corrupt));
        // NaN is not JSON: a script cannot smuggle it through a hand-written frame.
        let report = parse(format!("{HEADER}\n{{\"status\":\"ok\",\"result\":NaN}}").as_bytes())
            .expect("hdr");
        assert!(matches!(report.frame, Frame::Corrupt));
        assert!(parse(b"").is_none());
        assert!(parse(b"garbage\n").is_none());
    }
}
