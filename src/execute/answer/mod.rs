//! The layer above the sandbox: turning what happened in one (an [`Execution`]) into the API's
//! answer, exactly one code per execution. The sandbox only observes; everything a client is
//! told is decided here.
//!
//! The order matters. What the service itself observed (its own deadline kill, the cgroup's OOM
//! counter) is trusted first; then the harness supervisor's header; the script's own frame last,
//! and only for the codes a script may legitimately report about itself.

use std::time::Duration;

use serde_json::{Map, Value};

mod outputs;
pub mod report;

use crate::execute::api::{ApiError, ErrorCode, ExecuteResponse, Truncated, Usage};
use crate::limits::Limits;
use crate::sandbox::{Ending, Execution, SandboxKind, Tripped};
use report::{Frame, Header, Report};

/// nsjail exits 255 when it fails itself, as opposed to relaying the script's status.
const NSJAIL_OWN_FAILURE: i32 = 255;
/// Accounting rounds: a process SIGKILLed at its hard CPU limit may report a little less used.
const CPU_LIMIT_SLACK_MS: u64 = 500;

/// Nothing ran: the places executions share (compat on Lambda) are still being emptied of what
/// a previous script left there.
pub fn shared_places_unclean() -> ApiError {
    let mut error = ApiError::new(
        ErrorCode::Overloaded,
        "the sandbox's shared scratch space is being cleaned after a previous script; please \
         retry shortly",
    );
    error.retry_after_s = Some(1);
    error
}

pub fn interpret(execution: &Execution, limits: &Limits) -> Result<ExecuteResponse, ApiError> {
    let report = report::parse(&execution.report.bytes);
    let usage = usage(execution, report.as_ref().map(|r| &r.header));
    // The service's own fields always win over anything a failure already carries.
    let fail = |mut error: ApiError| {
        error.details.extend(context(execution, usage));
        Err(error)
    };
    if execution.ending == Ending::Refused {
        return Err(shared_places_unclean());
    }
    if let Some(error) = observed_failure(execution, limits) {
        return fail(error);
    }
    let Some(report) = report else {
        return fail(no_report(execution));
    };
    let judged = judge(&report, limits).and_then(|result| {
        let files = outputs::returned(report.outputs.as_ref(), limits)?;
        Ok((result, files))
    });
    match judged {
        Ok((result, (files, skipped_files))) => Ok(ExecuteResponse {
            result,
            display: report.display,
            stdout: execution.stdout.text(),
            stderr: execution.stderr.text(),
            truncated: truncated(execution),
            usage,
            sandbox: execution.kind.as_str(),
            isolation: execution.isolation.names(),
            files,
            skipped_files,
            session: None,
            saved_state: report.saved,
        }),
        Err(error) => fail(error),
    }
}

/// What the service itself saw end the script, which wins over anything the harness said:
/// a shutdown, a client gone, the deadline, the memory or CPU limit.
fn observed_failure(execution: &Execution, limits: &Limits) -> Option<ApiError> {
    let error = match execution.ending {
        Ending::Aborted => ApiError::new(
            ErrorCode::SandboxError,
            "the service is shutting down and ended the script before it finished; please retry",
        ),
        Ending::Abandoned => ApiError::new(
            ErrorCode::SandboxError,
            "the client went away before the script finished, which ended it",
        ),
        Ending::TimedOut => {
            let seconds = limits.wall.as_secs_f64();
            ApiError::new(
                ErrorCode::Timeout,
                format!("the script did not finish within its {seconds} s time limit"),
            )
        }
        _ if execution.oom_killed || execution.ending == Ending::OverLimit(Tripped::Memory) => {
            memory_limit(limits)
        }
        Ending::OverLimit(Tripped::Cpu) => {
            let seconds = limits.cpu.as_secs_f64();
            ApiError::new(
                ErrorCode::Timeout,
                format!(
                    "the script's processes together used more than its {seconds} s CPU time limit"
                ),
            )
        }
        _ => return None,
    };
    Some(error)
}

fn judge(report: &Report, limits: &Limits) -> Result<Box<serde_json::value::RawValue>, ApiError> {
    let header = &report.header;
    if header.frame_oversized {
        return Err(result_too_large(limits));
    }
    if let Some(signal) = header.signal {
        return Err(killed_by(signal, header, limits));
    }
    match &report.frame {
        Frame::Result(result) => Ok(result.clone()),
        Frame::Error {
            code,
            message,
            details,
        } => Err(script_error(code, message, details, limits)),
        Frame::Missing => Err(ApiError::new(
            ErrorCode::EmptyOutput,
            format!(
                "the script ended (exit status {}) before main() returned a result",
                header.exit_code.unwrap_or(-1)
            ),
        )),
        Frame::Corrupt => Err(ApiError::new(
            ErrorCode::EmptyOutput,
            "the script overwrote its result with something that is not a result",
        )),
    }
}

fn killed_by(signal: i32, header: &Header, limits: &Limits) -> ApiError {
    let cpu_limit_ms = limits.cpu.as_millis() as u64;
    let cpu_used_ms = header.cpu_ms.unwrap_or(0);
    let over_cpu = cpu_used_ms + CPU_LIMIT_SLACK_MS >= cpu_limit_ms;
    if signal == libc::SIGXCPU || (signal == libc::SIGKILL && over_cpu) {
        let seconds = limits.cpu.as_secs_f64();
        return ApiError::new(
            ErrorCode::Timeout,
            format!("the script used more than its {seconds} s CPU time limit"),
        );
    }
    ApiError::new(
        ErrorCode::EmptyOutput,
        format!(
            "the script was killed by signal {signal} ({}) before main() returned",
            signal_name(signal)
        ),
    )
    .with("signal", signal)
}

fn script_error(
    code: &str,
    message: &str,
    details: &Map<String, Value>,
    limits: &Limits,
) -> ApiError {
    let mut details = report::legitimate_details(code, details);
    if let Some(module) = details.get("missing_module").and_then(Value::as_str) {
        let hint = missing_module_hint(module);
        details.insert("hint".into(), hint.into());
    }
    match ErrorCode::from_script_frame(code) {
        // The harness cannot know the limit; the service words it the same as an OOM kill.
        Some(ErrorCode::MemoryLimit) => memory_limit(limits),
        Some(ErrorCode::ResultTooLarge) => result_too_large(limits).with_details(details),
        Some(code) => ApiError::new(code, message).with_details(details),
        None => ApiError::new(
            ErrorCode::EmptyOutput,
            "the script overwrote its result with something that is not a result",
        ),
    }
}

/// What a caller should do about a module the runtime lacks: the service's words, around a name
/// the report parser has checked is one.
fn missing_module_hint(module: &str) -> String {
    format!(
        "no module named '{module}' is installed in this runtime: the script needs a package \
         this service does not have, which no change to the script's code provides (GET \
         /packages lists what is installed; an operator adds packages through \
         layer/requirements.in)"
    )
}

fn no_report(execution: &Execution) -> ApiError {
    let exit = match execution.ending {
        Ending::Exited(status) => status,
        _ => None,
    };
    let exit_code = exit.and_then(|status| status.code());
    let killed = exit.is_some_and(|status| status.code().is_none());
    // In compat mode the script shares a uid with its supervisor and can kill it; that is the
    // script ending itself, not the sandbox failing. nsjail's supervisor is the PID namespace's
    // init, which the script cannot kill.
    if execution.kind == SandboxKind::Compat && (killed || exit_code != Some(NSJAIL_OWN_FAILURE)) {
        return ApiError::new(
            ErrorCode::EmptyOutput,
            "the script ended its own supervisor before main() returned a result",
        );
    }
    tracing::error!(
        ?exit,
        tool_log = %String::from_utf8_lossy(&execution.tool_log.bytes),
        "the sandbox ended without a report"
    );
    // stderr may hold the script's own output: only at debug level, never at info.
    tracing::debug!(
        stderr = %String::from_utf8_lossy(&execution.stderr.bytes),
        "stderr of the sandbox that failed"
    );
    sandbox_failed()
}

pub fn sandbox_failed() -> ApiError {
    ApiError::new(
        ErrorCode::SandboxError,
        "the sandbox failed to run the script; this is a service error, please retry or report it",
    )
}

fn memory_limit(limits: &Limits) -> ApiError {
    ApiError::new(
        ErrorCode::MemoryLimit,
        format!(
            "the script used more than its memory limit of {} MiB",
            limits.memory.as_mib_ceil()
        ),
    )
}

fn result_too_large(limits: &Limits) -> ApiError {
    ApiError::new(
        ErrorCode::ResultTooLarge,
        format!("the result is over the limit of {}", limits.result),
    )
    .with("limit_bytes", limits.result.as_bytes())
}

fn usage(execution: &Execution, header: Option<&Header>) -> Usage {
    Usage {
        wall_ms: execution.wall.as_millis() as u64,
        cpu_ms: cpu_ms(header, execution.cpu),
        // Without a cgroup, the watch's samples (every 100 ms) are the only measure.
        peak_memory_bytes: execution.peak_memory_bytes,
        warm_start: execution.warm_start,
    }
}

/// The script's CPU time. The harness's figure comes first: it exists with or without cgroups
/// (compat on Lambda has none), and it covers the script's process from its start to its exit,
/// both inside `wall_ms`. The cgroup's is read after the sandbox is killed, so it also counts
/// every process's exit; it is only the fallback for executions the harness could not report
/// on (a wall-clock timeout, a supervisor the script killed), and without a cgroup the watch's
/// last sample of the sandbox's processes stands in for it.
fn cpu_ms(header: Option<&Header>, cgroup_cpu: Option<Duration>) -> Option<u64> {
    header
        .and_then(|header| header.cpu_ms)
        .or_else(|| cgroup_cpu.map(|cpu| cpu.as_millis() as u64))
}

fn truncated(execution: &Execution) -> Truncated {
    Truncated {
        stdout: execution.stdout.truncated,
        stderr: execution.stderr.truncated,
    }
}

/// What every failure carries besides its code: output so far, usage and the sandbox.
fn context(execution: &Execution, usage: Usage) -> Map<String, Value> {
    let mut details = Map::new();
    details.insert("stdout".into(), execution.stdout.text().into());
    details.insert("stderr".into(), execution.stderr.text().into());
    // Plain structs of numbers and bools: serializing them cannot fail.
    let truncated = serde_json::to_value(truncated(execution)).unwrap_or_default();
    details.insert("truncated".into(), truncated);
    details.insert(
        "usage".into(),
        serde_json::to_value(usage).unwrap_or_default(),
    );
    details.insert("sandbox".into(), execution.kind.as_str().into());
    details.insert("isolation".into(), execution.isolation.names().into());
    details
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "signal",
    }
}

#[cfg(test)]
mod tests;
