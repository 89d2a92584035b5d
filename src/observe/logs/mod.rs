//! Log lines each platform reads natively ([`format`]), with the fields of the spans around
//! each event on every line ([`fields`]), and the level each platform's operator chose.
//!
//! The style is decided once at start from the settings and the platform ([`LogStyle::choose`]):
//! Cloud Logging's fields on Cloud Run, on Lambda whatever the function's log format says
//! (`AWS_LAMBDA_LOG_FORMAT`), elsewhere JSON for machines and text for a terminal;
//! `LOG_FORMAT` overrides. The level: on Lambda the function's application log level
//! (`AWS_LAMBDA_LOG_LEVEL`), otherwise `RUST_LOG`, otherwise `info`.

pub mod fields;
pub mod format;

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat, Platform};
use fields::{Collect, RecordSpanFields, SpanFields};

/// The field every line of a request carries: its id (`X-Request-Id`).
pub const REQUEST_ID: &str = "request_id";
/// The trace the request belongs to: 32 hex digits.
pub const TRACE_ID: &str = "trace_id";
/// The caller's span in that trace: 16 hex digits.
pub const SPAN_ID: &str = "span_id";
/// Whether the caller's tracer sampled the trace.
pub const TRACE_SAMPLED: &str = "trace_sampled";
/// The target of the one access line per request, whose fields (`method`, `path`, `status`,
/// `duration_ms`, `user_agent`, `response_bytes`) Cloud Logging shows as `httpRequest`.
pub const ACCESS: &str = "python_executor::access";

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStyle {
    Text,
    /// `lambda`: Lambda's level names and `xrayTraceId`.
    Json {
        lambda: bool,
    },
    CloudLogging,
}

impl LogStyle {
    /// The style for these settings on this platform; `terminal` is whether stderr is one.
    pub fn choose(logs: &LogConfig, platform: Platform, terminal: bool) -> Self {
        let lambda = platform == Platform::Lambda;
        match logs.format {
            LogFormat::Json => Self::Json { lambda },
            LogFormat::Text => Self::Text,
            LogFormat::CloudLogging => Self::CloudLogging,
            LogFormat::Auto => match (platform, logs.lambda_format.as_deref()) {
                (Platform::CloudRun, _) => Self::CloudLogging,
                (Platform::Lambda, Some(format)) if format.eq_ignore_ascii_case("text") => {
                    Self::Text
                }
                (Platform::Lambda, _) => Self::Json { lambda },
                (Platform::Elsewhere, _) if terminal => Self::Text,
                (Platform::Elsewhere, _) => Self::Json { lambda },
            },
        }
    }
}

/// The filter: Lambda's level where it is given (FATAL, which tracing lacks, as ERROR), then
/// `RUST_LOG`, then `info`.
pub fn filter(logs: &LogConfig, platform: Platform) -> EnvFilter {
    let lambda_level = logs
        .lambda_level
        .as_deref()
        .filter(|_| platform == Platform::Lambda)
        .map(|level| match level.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            level => level.to_owned(),
        });
    if let Some(level) = lambda_level {
        if let Ok(filter) = EnvFilter::try_new(&level) {
            return filter;
        }
    }
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Installs the global subscriber, writing to stderr. A second call (tests start several
/// services in one process) is harmless and ignored.
pub fn init(style: LogStyle, filter: EnvFilter) {
    let lines = tracing_subscriber::fmt::layer()
        .event_format(Format { style })
        .with_writer(std::io::stderr);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(RecordSpanFields)
        .with(lines)
        .try_init();
}

/// Formats each event as one line of `style`.
#[derive(Clone, Copy, Debug)]
pub struct Format {
    pub style: LogStyle,
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = serde_json::Map::new();
        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            if let Some(SpanFields(span_fields)) = span.extensions().get::<SpanFields>() {
                fields.extend(span_fields.clone());
            }
        }
        let mut collect = Collect(fields);
        event.record(&mut collect);
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let metadata = event.metadata();
        let line = format::Line {
            time,
            level: *metadata.level(),
            target: metadata.target(),
            access: metadata.target() == ACCESS,
            fields: collect.0,
        };
        writeln!(writer, "{}", format::render(self.style, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    fn logs(format: LogFormat, lambda_format: Option<&str>) -> LogConfig {
        LogConfig {
            format,
            lambda_format: lambda_format.map(str::to_owned),
            lambda_level: None,
        }
    }

    #[test]
    fn auto_follows_the_platform_and_a_setting_overrides_it() {
        use LogFormat::*;
        use Platform::*;
        let choose = |format, lambda_format, platform, terminal| {
            LogStyle::choose(&logs(format, lambda_format), platform, terminal)
        };
        assert_eq!(choose(Auto, None, CloudRun, false), LogStyle::CloudLogging);
        let lambda_json = LogStyle::Json { lambda: true };
        assert_eq!(choose(Auto, Some("JSON"), Lambda, false), lambda_json);
        assert_eq!(choose(Auto, Some("Text"), Lambda, false), LogStyle::Text);
        assert_eq!(choose(Auto, None, Lambda, true), lambda_json);
        assert_eq!(choose(Auto, None, Elsewhere, true), LogStyle::Text);
        let plain_json = LogStyle::Json { lambda: false };
        assert_eq!(choose(Auto, None, Elsewhere, false), plain_json);
        assert_eq!(choose(Text, None, CloudRun, false), LogStyle::Text);
        assert_eq!(
            choose(CloudLogging, None, Elsewhere, true),
            LogStyle::CloudLogging
        );
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_inside_a_span_carries_its_fields_even_recorded_late() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let lines = tracing_subscriber::fmt::layer()
            .event_format(Format {
                style: LogStyle::Json { lambda: false },
            })
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry()
            .with(RecordSpanFields)
            .with(lines);
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("request", request_id = "r-7", key = tracing::field::Empty);
            let _entered = span.enter();
            tracing::warn!(pid = 12, "inner");
            span.record("key", "alice");
            tracing::info!(target: ACCESS, status = 200, "request");
        });
        let text = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["request_id"], "r-7");
        assert_eq!(lines[0]["pid"], 12);
        assert!(lines[0].get("key").is_none());
        assert_eq!(lines[1]["key"], "alice");
        assert_eq!(lines[1]["request_id"], "r-7");
        assert_eq!(lines[1]["target"], ACCESS);
    }

    #[test]
    fn lambdas_level_wins_there_only() {
        let mut config = logs(LogFormat::Auto, None);
        config.lambda_level = Some("FATAL".into());
        assert_eq!(filter(&config, Platform::Lambda).to_string(), "error");
        config.lambda_level = Some("DEBUG".into());
        assert_eq!(filter(&config, Platform::Lambda).to_string(), "debug");
    }
}
