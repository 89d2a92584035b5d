//! Attacks on the result channel and the harness: nothing a script prints, writes or defines
//! can forge its result or break the harness.

use serde_json::json;

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

for_each_sandbox!(
    printed_envelopes_are_just_output,
    the_result_fd_is_out_of_reach,
    script_globals_cannot_break_the_harness,
    killing_the_supervisor_forges_nothing,
);
