//! The trace a request belongs to, read from whichever header its platform or caller sent:
//! W3C `traceparent`, Google's `X-Cloud-Trace-Context`, or AWS X-Ray's `X-Amzn-Trace-Id`. One
//! shape for all three (a 128-bit trace id in 32 hex digits, the caller's span as 16), so each
//! log format can write it where its platform links on it: Cloud Logging's
//! `logging.googleapis.com/trace`, X-Ray's `1-xxxxxxxx-yyyyyyyyyyyyyyyyyyyyyyyy` on Lambda.
//!
//! Only the ids are kept, and only when well-formed: a header is the caller's text, and it
//! goes into every log line of its request.

use axum::http::HeaderMap;

/// The trace context of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, never all zeros.
    pub trace_id: String,
    /// The caller's span, 16 lowercase hex digits, when the header gave one.
    pub span_id: Option<String>,
    /// Whether the caller's tracer sampled (recorded) this trace.
    pub sampled: Option<bool>,
}

impl TraceContext {
    /// From the first of `traceparent`, `X-Cloud-Trace-Context` and `X-Amzn-Trace-Id` that is
    /// well-formed (Cloud Run sends the first two, with the same trace).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        header("traceparent")
            .and_then(Self::from_traceparent)
            .or_else(|| header("x-cloud-trace-context").and_then(Self::from_cloud_trace))
            .or_else(|| header("x-amzn-trace-id").and_then(Self::from_xray))
    }

    /// `00-<trace-id>-<parent-id>-<flags>` (W3C Trace Context, level 1).
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four fields; a later version may add more after them.
        if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !is_id(trace, 32) || !is_id(parent, 16) || !is_hex(flags, 2) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace.to_owned(),
            span_id: Some(parent.to_owned()),
            sampled: Some(flags & 1 == 1),
        })
    }

    /// `<trace-id>/<span-id decimal>;o=<0|1>`, the span and the option both optional.
    pub fn from_cloud_trace(value: &str) -> Option<Self> {
        let (ids, options) = match value.trim().split_once(';') {
            Some((ids, options)) => (ids, Some(options)),
            None => (value.trim(), None),
        };
        let (trace, span) = match ids.split_once('/') {
            Some((trace, span)) => (trace, Some(span)),
            None => (ids, None),
        };
        let trace = trace.to_ascii_lowercase();
        if !is_id(&trace, 32) {
            return None;
        }
        // Decimal in this header; Cloud Logging wants the 16 hex digits of the same number.
        let span_id = span
            .and_then(|span| span.parse::<u64>().ok())
            .filter(|span| *span != 0)
            .map(|span| format!("{span:016x}"));
        let sampled = options.and_then(|options| match options.trim() {
            "o=1" => Some(true),
            "o=0" => Some(false),
            _ => None,
        });
        Some(Self {
            trace_id: trace,
            span_id,
            sampled,
        })
    }

    /// `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=<0|1>`, in any order, with more fields
    /// allowed (X-Ray's header; a Lambda context's trace id is the same text).
    pub fn from_xray(value: &str) -> Option<Self> {
        let mut context: Option<Self> = None;
        let (mut span_id, mut sampled) = (None, None);
        for field in value.split(';') {
            match field.trim().split_once('=') {
                Some(("Root", root)) => context = Self::from_xray_root(root),
                Some(("Parent", parent)) if is_id(parent, 16) => {
                    span_id = Some(parent.to_owned());
                }
                Some(("Sampled", "1")) => sampled = Some(true),
                Some(("Sampled", "0")) => sampled = Some(false),
                _ => {}
            }
        }
        context.map(|context| Self {
            span_id,
            sampled,
            ..context
        })
    }

    fn from_xray_root(root: &str) -> Option<Self> {
        let mut parts = root.split('-');
        let (version, time, random) = (parts.next()?, parts.next()?, parts.next()?);
        if version != "1" || parts.next().is_some() || !is_hex(time, 8) || !is_hex(random, 24) {
            return None;
        }
        let trace_id = format!("{time}{random}");
        is_id(&trace_id, 32).then_some(Self {
            trace_id,
            span_id: None,
            sampled: None,
        })
    }

    /// The trace id as X-Ray writes it: `1-<first 8 hex>-<other 24>` (the same 128 bits).
    pub fn xray_trace_id(&self) -> String {
        let (time, random) = self.trace_id.split_at(8);
        format!("1-{time}-{random}")
    }
}

/// Exactly `digits` lowercase hex digits.
fn is_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An id: hex of that length, and not all zeros (which every format reserves as invalid).
fn is_id(text: &str, digits: usize) -> bool {
    is_hex(text, digits) && text.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn traceparent() {
        let value = format!("00-{TRACE}-00f067aa0ba902b7-01");
        let context = TraceContext::from_traceparent(&value).expect("valid");
        assert_eq!(context.trace_id, TRACE);
        assert_eq!(context.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(context.sampled, Some(true));
        let zeros = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
        for bad in [
            zeros.as_str(),
            "00-abc-00f067aa0ba902b7-01",
            &format!("ff-{TRACE}-00f067aa0ba902b7-01"),
            &format!("00-{TRACE}-00f067aa0ba902b7-01-extra"),
            &format!("00-{}-00f067aa0ba902b7-01", TRACE.to_uppercase()),
        ] {
            assert_eq!(TraceContext::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn cloud_trace_context_turns_its_decimal_span_into_hex() {
        let value = format!("{}/74;o=1", TRACE.to_uppercase());
        let context = TraceContext::from_cloud_trace(&value).expect("valid");
        assert_eq!(context.trace_id, TRACE);
        assert_eq!(context.span_id.as_deref(), Some("000000000000004a"));
        assert_eq!(context.sampled, Some(true));
        let bare = TraceContext::from_cloud_trace(TRACE).expect("valid");
        assert_eq!((bare.span_id, bare.sampled), (None, None));
        assert_eq!(TraceContext::from_cloud_trace("nope/1;o=1"), None);
    }

    #[test]
    fn xray_maps_onto_the_same_128_bits() {
        let value = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let context = TraceContext::from_xray(value).expect("valid");
        assert_eq!(context.trace_id, "5759e988bd862e3fe1be46a994272793");
        assert_eq!(context.span_id.as_deref(), Some("53995c3f42cd8ad8"));
        assert_eq!(context.sampled, Some(true));
        assert_eq!(
            context.xray_trace_id(),
            "1-5759e988-bd862e3fe1be46a994272793"
        );
        assert_eq!(
            TraceContext::from_xray("Root=2-5759e988-bd86;Sampled=1"),
            None
        );
        assert_eq!(TraceContext::from_xray("Self=1-5759e988-bd862e3f"), None);
    }

    #[test]
    fn traceparent_wins_then_cloud_trace_then_xray() {
        let mut headers = HeaderMap::new();
        let xray = "Root=1-5759e988-bd862e3fe1be46a994272793";
        headers.insert("x-amzn-trace-id", xray.parse().expect("value"));
        let found = TraceContext::from_headers(&headers).expect("xray");
        assert_eq!(found.trace_id, "5759e988bd862e3fe1be46a994272793");
        headers.insert("x-cloud-trace-context", TRACE.parse().expect("value"));
        assert_eq!(
            TraceContext::from_headers(&headers)
                .expect("cloud")
                .trace_id,
            TRACE
        );
        headers.insert("traceparent", "garbage".parse().expect("value"));
        assert_eq!(
            TraceContext::from_headers(&headers)
                .expect("cloud")
                .trace_id,
            TRACE
        );
    }
}
