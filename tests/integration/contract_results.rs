//! The contract's finer points about what an execution answers: every JSON value `main()` can
//! return is a result (`null` included), every answer reports its CPU time, and an exception
//! says whether module code or `main()` raised it.

use python_executor::execute::answer::report;
use serde_json::{json, Value};

use crate::support::{bare_harness, Kind, Service};

async fn every_json_value_is_a_result(kind: Kind) {
    let service = Service::start(kind).await;
    for (expression, expected) in [
        ("None", json!(null)),
        ("False", json!(false)),
        ("0", json!(0)),
        ("''", json!("")),
        ("[]", json!([])),
        ("{}", json!({})),
    ] {
        let reply = service
            .run(&format!("def main():\n    return {expression}\n"))
            .await;
        assert_eq!(reply.expect_result(), &expected, "{expression}");
        assert!(
            reply.body.get("result").is_some(),
            "{expression}: `result` is present: {}",
            reply.text
        );
    }
    // The seeds' scripts that only print: main() returns nothing, which answers null.
    for script in [
        "def main():\n    print('only output')\n",
        "def main():\n    pass\n",
    ] {
        let reply = service.run(script).await;
        assert_eq!(reply.expect_result(), &json!(null), "{script}");
        assert!(
            reply.text.starts_with(r#"{"result":null,"#),
            "{}",
            reply.text
        );
    }
    let reply = service.run("def main():\n    print('only output')\n").await;
    assert_eq!(reply.body["stdout"], "only output\n");
}

/// `usage.cpu_ms` is measured for every outcome, and over the same interval as `wall_ms`.
async fn cpu_time_is_reported_for_every_outcome(kind: Kind) {
    let service = Service::start(kind).await;
    for (script, status) in [
        ("def main():\n    return sum(range(100000))\n", 200),
        ("def main():\n    return (1,\n", 422),
        ("def main():\n    raise ValueError('x')\n", 422),
        ("import no_such_module\ndef main(): return 1\n", 422),
        ("main = 5\n", 422),
        ("def main():\n    return {1}\n", 422),
        ("import sys\ndef main():\n    sys.exit(0)\n", 422),
        ("import os\ndef main():\n    os._exit(3)\n", 422),
    ] {
        let reply = service.run(script).await;
        assert_eq!(reply.status, status, "{script}: {}", reply.body);
        let usage = &reply.body["usage"];
        let cpu_ms = usage["cpu_ms"].as_u64();
        let wall_ms = usage["wall_ms"].as_u64().expect("wall_ms");
        let cpu_ms = cpu_ms.unwrap_or_else(|| panic!("{script}: cpu_ms is a number: {usage}"));
        // Single-threaded scripts: their CPU time fits in the wall-clock time (1 ms of slack
        // for the two figures' rounding).
        assert!(
            cpu_ms <= wall_ms + 1,
            "{script}: cpu_ms {cpu_ms} over wall_ms {wall_ms}"
        );
    }
    // Work the script does shows up.
    let busy =
        "def main():\n    n = 0\n    for i in range(3_000_000):\n        n += i\n    return n\n";
    let reply = service.run(busy).await;
    let cpu_ms = reply.body["usage"]["cpu_ms"].as_u64().expect("cpu_ms");
    assert!(cpu_ms >= 20, "a busy loop used {cpu_ms} ms: {}", reply.body);
}

/// The harness's report for `script`, run bare: no sandbox and no cgroup, so what the header
/// says is all there is to know of the script's CPU time (as in compat on Lambda).
fn bare_harness_report(script: &str) -> report::Report {
    let cwd = tempfile::tempdir().expect("a working directory");
    bare_harness(cwd.path(), &json!({"script": script, "args": {}}))
}

#[test]
fn the_harness_reports_cpu_time_without_cgroups() {
    let busy =
        "def main():\n    n = 0\n    for i in range(3_000_000):\n        n += i\n    return n\n";
    for script in [
        "def main():\n    return 1\n",
        "def main(:\n",
        "main = 5\n",
        busy,
    ] {
        let report = bare_harness_report(script);
        assert!(
            report.header.cpu_ms.is_some(),
            "{script}: {:?}",
            report.header
        );
    }
    let cpu_ms = bare_harness_report(busy).header.cpu_ms.unwrap_or(0);
    assert!(cpu_ms >= 20, "a busy loop used {cpu_ms} ms");
}

fn expect_exception(body: &Value, where_: &str, type_: &str) {
    assert_eq!(body["where"], where_, "{body}");
    assert_eq!(body["exception_type"], type_, "{body}");
}

async fn exceptions_say_where_they_were_raised(kind: Kind) {
    let service = Service::start(kind).await;
    let body = service
        .run("import no_such_module_here\n\ndef main():\n    return 1\n")
        .await
        .expect_error(422, "EXCEPTION")
        .clone();
    expect_exception(&body, "module", "ModuleNotFoundError");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(!error.contains("main() raised"), "{error}");
    assert!(error.contains("module"), "{error}");
    assert!(error.contains("no_such_module_here"), "{error}");
    let traceback = body["traceback"].as_str().unwrap_or_default();
    assert!(traceback.contains("in <module>"), "{traceback}");

    let body = service
        .run("def helper():\n    raise KeyError('k')\n\ndef main():\n    helper()\n")
        .await
        .expect_error(422, "EXCEPTION")
        .clone();
    expect_exception(&body, "main", "KeyError");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("main() raised KeyError"), "{error}");

    // Module code that calls a function which raises is still module code.
    let body = service
        .run("def setup():\n    raise RuntimeError('early')\n\nsetup()\n\ndef main():\n    return 1\n")
        .await
        .expect_error(422, "EXCEPTION")
        .clone();
    expect_exception(&body, "module", "RuntimeError");
}

for_each_sandbox!(
    every_json_value_is_a_result,
    cpu_time_is_reported_for_every_outcome,
    exceptions_say_where_they_were_raised,
);
