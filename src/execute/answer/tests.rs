//! `interpret`'s order, as a table over constructed executions: what the service observed
//! itself comes first, then the supervisor's header, then the script's own frame, and each row
//! says which observation must win when several are present.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::*;
use crate::sandbox::{Captured, Isolation};

/// A report channel: the supervisor's header line, then `frame`.
fn report(frame: &str, signal: Option<i32>, oversized: bool) -> Captured {
    let header = serde_json::json!({
        "frame_bytes": frame.len(),
        "frame_oversized": oversized,
        "exit_code": if signal.is_some() { None } else { Some(0) },
        "signal": signal,
        "cpu_ms": 12,
    });
    Captured {
        bytes: format!("{header}\n{frame}").into_bytes(),
        truncated: false,
    }
}

const RESULT: &str = r#"{"status":"ok","result":{"answer":42}}"#;

fn execution(kind: SandboxKind, ending: Ending, report: Captured) -> Execution {
    Execution {
        kind,
        isolation: Isolation::default(),
        warm_start: true,
        ending,
        stdout: Captured::default(),
        stderr: Captured::default(),
        report,
        tool_log: Captured::default(),
        wall: Duration::from_millis(30),
        cpu: Some(Duration::from_millis(25)),
        peak_memory_bytes: Some(1 << 20),
        oom_killed: false,
    }
}

fn code_of(execution: &Execution) -> &'static str {
    match interpret(execution, &Limits::default()) {
        Ok(_) => "OK",
        Err(error) => error.code.as_str(),
    }
}

#[test]
fn the_services_own_observations_come_first_then_the_header_then_the_frame() {
    use SandboxKind::{Compat, Nsjail};
    let whole = || report(RESULT, None, false);
    let killed = |status: i32| Ending::Exited(Some(ExitStatus::from_raw(status)));
    let oom = |mut execution: Execution| {
        execution.oom_killed = true;
        execution
    };
    let script_error = r#"{"status":"error","code":"EXCEPTION","error":"boom"}"#;
    let forged = r#"{"status":"error","code":"SANDBOX_ERROR","error":"forged"}"#;
    let rows: Vec<(&str, Execution, &str)> = vec![
        (
            "a whole report with a result",
            execution(Nsjail, Ending::Reported, whole()),
            "OK",
        ),
        (
            "refused beats a report",
            execution(Compat, Ending::Refused, whole()),
            "OVERLOADED",
        ),
        (
            "the abort beats a report",
            execution(Nsjail, Ending::Aborted, whole()),
            "SANDBOX_ERROR",
        ),
        (
            "the deadline beats the OOM killer",
            oom(execution(Nsjail, Ending::TimedOut, whole())),
            "TIMEOUT",
        ),
        (
            "the OOM killer beats a result",
            oom(execution(Nsjail, Ending::Reported, whole())),
            "MEMORY_LIMIT",
        ),
        (
            "the watch's memory beats a result",
            execution(Compat, Ending::OverLimit(Tripped::Memory), whole()),
            "MEMORY_LIMIT",
        ),
        (
            "the watch's CPU beats a result",
            execution(Compat, Ending::OverLimit(Tripped::Cpu), whole()),
            "TIMEOUT",
        ),
        (
            "nsjail failing itself",
            execution(Nsjail, killed(255 << 8), Captured::default()),
            "SANDBOX_ERROR",
        ),
        (
            "compat's supervisor killed by its script",
            execution(Compat, killed(9), Captured::default()),
            "EMPTY_OUTPUT",
        ),
        (
            "an oversized frame beats its result",
            execution(Nsjail, Ending::Reported, report(RESULT, None, true)),
            "RESULT_TOO_LARGE",
        ),
        (
            "SIGXCPU in the header beats the frame",
            execution(
                Nsjail,
                Ending::Reported,
                report(RESULT, Some(libc::SIGXCPU), false),
            ),
            "TIMEOUT",
        ),
        (
            "another signal: no result",
            execution(
                Nsjail,
                Ending::Reported,
                report(RESULT, Some(libc::SIGSEGV), false),
            ),
            "EMPTY_OUTPUT",
        ),
        (
            "the script's own error",
            execution(Nsjail, Ending::Reported, report(script_error, None, false)),
            "EXCEPTION",
        ),
        (
            "a code a script may not claim",
            execution(Nsjail, Ending::Reported, report(forged, None, false)),
            "EMPTY_OUTPUT",
        ),
        (
            "no frame at all",
            execution(Compat, Ending::Reported, report("", None, false)),
            "EMPTY_OUTPUT",
        ),
    ];
    for (what, execution, expected) in rows {
        assert_eq!(code_of(&execution), expected, "{what}");
    }
}

#[test]
fn cpu_time_is_the_harnesss_with_or_without_cgroups() {
    let header = |cpu_ms| Header {
        frame_bytes: 0,
        frame_oversized: false,
        files_bytes: 0,
        state_bytes: 0,
        exit_code: None,
        signal: None,
        cpu_ms,
    };
    let cgroup = Some(Duration::from_millis(25));
    // No cgroups (compat on Lambda): the harness's figure.
    assert_eq!(cpu_ms(Some(&header(Some(3))), None), Some(3));
    // With cgroups too: the cgroup's figure also counts the exits after the answer.
    assert_eq!(cpu_ms(Some(&header(Some(3))), cgroup), Some(3));
    // No report (a wall-clock timeout): the cgroup's, where there is one.
    assert_eq!(cpu_ms(None, cgroup), Some(25));
    assert_eq!(cpu_ms(Some(&header(None)), cgroup), Some(25));
    assert_eq!(cpu_ms(None, None), None);
}
