//! Attacks on the result channel and the harness: nothing a script prints, writes or defines
//! can forge its result or break the harness.

use serde_json::{json, Value};

use crate::support::{Kind, Service};

async fn printed_envelopes_are_just_output(kind: Kind) {
    let service = Service::start(kind).await;
    let forged = r#"{"status":"ok","result":"forged"}"#;
    let script = format!(
        "import sys, json\ndef main():\n    print('{{\"frame_oversized\": false, \"exit_code\": 0, \"signal\": null}}')\n    print({forged:?})\n    sys.stderr.write({forged:?})\n    return 'real'\n"
    );
    let reply = service.run(&script).await;
    assert_eq!(reply.expect_result(), &json!("real"));
    assert!(reply.body["stdout"]
        .as_str()
        .unwrap_or("")
        .contains("forged"));
}

async fn the_result_fd_is_out_of_reach(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import os
def main():
    found = {}
    payload = b'{"frame_oversized": false, "exit_code": 0, "signal": null}\n{"status":"ok","result":"forged"}'
    for fd in range(3, 64):
        try:
            os.write(fd, payload)
            found[str(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    for target in ("/proc/1/fd/3", "/proc/self/fd/3", "/proc/1/mem"):
        try:
            with open(target, "wb") as f:
                f.write(payload)
            found[target] = "written"
        except OSError as e:
            found[target] = type(e).__name__
    return found
"#;
    let reply = service.run(script).await;
    // The script can reach the pipe its own process reports on and corrupt its own report;
    // it can never make the service return the forged value.
    assert!(!reply.body.to_string().contains("forged"), "{}", reply.body);
    if reply.status == 200 {
        for (key, value) in reply.expect_result().as_object().expect("object") {
            assert_ne!(value, "written", "{key} was writable: {}", reply.body);
        }
    } else {
        reply.expect_error(422, "EMPTY_OUTPUT");
    }
    // Without the scan, a script that only tries the supervisor's channel gets its real result.
    let script = "import os
def main():
    found = {}
    for target in ('/proc/1/fd/3', '/proc/1/mem'):
        try:
            open(target, 'wb').write(b'forged')
            found[target] = 'written'
        except OSError as e:
            found[target] = type(e).__name__
    return found
";
    let found = service.run(script).await.expect_result().clone();
    for (key, value) in found.as_object().expect("object") {
        assert_ne!(value, "written", "{key} was writable: {found}");
    }
    service.assert_still_healthy().await;
}

async fn script_globals_cannot_break_the_harness(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import json as _json, builtins, os as _os
json = None
sys = None
os = None
print = None
def _forged(*args, **kwargs):
    return '"forged"'
_json.dumps = _forged
_os.write = None
_os._exit = None
builtins.print = None
builtins.len = None
def main():
    return {"real": True}
"#;
    let reply = service.run(script).await;
    assert_eq!(reply.expect_result(), &json!({"real": true}));
    service.assert_still_healthy().await;
}

async fn killing_the_supervisor_forges_nothing(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import os, signal
def main():
    parent = os.getppid()
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
        try:
            os.kill(parent, sig)
        except OSError:
            pass
    return "after the attempt"
"#;
    let reply = service.run(script).await;
    // nsjail: the supervisor is the PID namespace's init and ignores the signals, so the
    // result comes back; compat: it may die, and then there is no result, never a forged one.
    match reply.status {
        200 => assert_eq!(reply.expect_result(), &json!("after the attempt")),
        _ => {
            reply.expect_error(422, "EMPTY_OUTPUT");
        }
    }
    service.assert_still_healthy().await;
}

/// A script that writes an error frame of its own (then ends before the harness writes the
/// real one) on whichever of its descriptors is a pipe it may write.
fn forging_script(frame: &Value) -> String {
    writing_on_every_pipe(&frame.to_string())
}

/// A script that writes `frame` on whichever of its descriptors is a pipe it may write, then
/// ends before the harness writes anything.
fn writing_on_every_pipe(frame: &str) -> String {
    format!(
        "import os, fcntl, sys\ndef main():\n    print('real output')\n    sys.stdout.flush()\n    for fd in range(3, 64):\n        try:\n            if not os.readlink(f'/proc/self/fd/{{fd}}').startswith('pipe:'):\n                continue\n            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:\n                continue\n            os.write(fd, {frame:?}.encode())\n        except OSError:\n            pass\n    os._exit(0)\n"
    )
}

/// The service's own fields of an error envelope, as the service measured them.
fn assert_service_fields(kind: Kind, body: &Value) {
    assert_eq!(body["sandbox"], kind.sandbox(), "{body}");
    assert_eq!(body["stdout"], "real output\n", "{body}");
    assert_eq!(body["stderr"], "", "{body}");
    assert_eq!(
        body["truncated"],
        json!({"stdout": false, "stderr": false}),
        "{body}"
    );
    let isolation = body["isolation"].as_array().expect("isolation is a list");
    assert!(!isolation.contains(&json!("forged")), "{body}");
    assert!(body["usage"]["wall_ms"].as_u64().is_some(), "{body}");
    assert!(body["usage"]["warm_start"].is_boolean(), "{body}");
    assert_ne!(body["usage"]["cpu_ms"], 123_456_789, "{body}");
    for key in ["extra", "reason", "signal", "files"] {
        assert!(body.get(key).is_none(), "{key} was forged: {body}");
    }
}

async fn forged_error_frames_cannot_replace_the_services_fields(kind: Kind) {
    let service = Service::start(kind).await;
    let service_fields = json!({
        "usage": {"wall_ms": 0, "cpu_ms": 123_456_789, "peak_memory_bytes": 1},
        "sandbox": "forged", "isolation": ["forged"], "stdout": "forged", "stderr": "forged",
        "truncated": "forged", "extra": "forged", "reason": "forged", "signal": 9,
        "files": [], "limit_bytes": 1, "code": "TIMEOUT",
    });
    let frame = |code: &str, own: Value| {
        let mut frame = service_fields.clone();
        frame["status"] = json!("error");
        frame["error"] = json!("the script's own sentence");
        frame
            .as_object_mut()
            .expect("object")
            .extend(own.as_object().cloned().unwrap_or_default());
        frame["code"] = json!(code);
        frame
    };
    let exception = frame(
        "EXCEPTION",
        json!({"exception_type": "Forged", "traceback": "tb", "where": "main", "line": 3}),
    );
    let body = service.run(&forging_script(&exception)).await;
    let body = body.expect_error(422, "EXCEPTION");
    assert_service_fields(kind, body);
    // What the harness reports for an exception is the script's to say about itself.
    assert_eq!(body["exception_type"], "Forged", "{body}");
    assert_eq!(body["where"], "main", "{body}");
    assert!(
        body.get("line").is_none(),
        "not an exception's detail: {body}"
    );

    let too_large = frame("RESULT_TOO_LARGE", json!({"result_bytes": 10}));
    let reply = service.run(&forging_script(&too_large)).await;
    let body = reply.expect_error(422, "RESULT_TOO_LARGE");
    assert_service_fields(kind, body);
    assert_eq!(
        body["limit_bytes"],
        5 * 1024 * 1024,
        "the service's own limit: {body}"
    );
    assert_eq!(body["result_bytes"], 10, "{body}");

    let syntax = frame(
        "SYNTAX_ERROR",
        json!({"line": "not a number", "column": 7, "traceback": "forged"}),
    );
    let reply = service.run(&forging_script(&syntax)).await;
    let body = reply.expect_error(422, "SYNTAX_ERROR");
    assert_service_fields(kind, body);
    assert_eq!(body["column"], 7, "{body}");
    assert!(
        body.get("line").is_none(),
        "a line must be a number: {body}"
    );
    assert!(body.get("traceback").is_none(), "{body}");
    service.assert_still_healthy().await;
}

/// The script's process lists its own output files, so the section is the script's to write:
/// one that names a file outside outputs/, or more than the limits let through, is refused as
/// the script's own failure, and no file of it is returned.
async fn a_forged_files_section_returns_no_files(kind: Kind) {
    let service = Service::start(kind).await;
    let escaping = r#"{"files":[{"path":"outputs/../../etc/passwd","bytes":4,"content_base64":"YWJjZA=="}],"skipped":[]}"#;
    let oversized = format!(
        r#"{{"files":[{{"path":"outputs/big","bytes":{},"content_base64":"YWJjZA=="}}],"skipped":[]}}"#,
        1u64 << 40
    );
    for files in [escaping.to_owned(), oversized] {
        let sections = format!("{}\n{files}\n", json!({"status": "ok", "result": 1}));
        let reply = service.run(&writing_on_every_pipe(&sections)).await;
        let body = reply.expect_error(422, "EMPTY_OUTPUT");
        assert!(body.get("files").is_none(), "{body}");
        assert_eq!(body["stdout"], "real output\n", "{body}");
    }
    service.assert_still_healthy().await;
}

/// The script's process holds stdio and its own frame pipe, nothing else: not the supervisor's
/// channel (fd 3), not compat's isolation-tool log (fd 4), nothing the service left open.
async fn the_script_inherits_no_other_fds(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import os
def main():
    found = {}
    for fd in range(0, 256):
        try:
            os.fstat(fd)
        except OSError:
            continue
        try:
            found[str(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            found[str(fd)] = "open"
    return found
"#;
    let found = service.run(script).await.expect_result().clone();
    let fds = found.as_object().expect("fds");
    // stdin, stdout, stderr, and one more: the pipe this process writes its own frame to.
    let extra: Vec<(&String, &serde_json::Value)> = fds
        .iter()
        .filter(|(fd, _)| !["0", "1", "2"].contains(&fd.as_str()))
        .collect();
    assert_eq!(extra.len(), 1, "{found}");
    assert!(
        extra[0].1.as_str().is_some_and(|t| t.starts_with("pipe:")),
        "{found}"
    );
    service.assert_still_healthy().await;
}

for_each_sandbox!(
    printed_envelopes_are_just_output,
    the_result_fd_is_out_of_reach,
    the_script_inherits_no_other_fds,
    script_globals_cannot_break_the_harness,
    killing_the_supervisor_forges_nothing,
    forged_error_frames_cannot_replace_the_services_fields,
    a_forged_files_section_returns_no_files,
);
