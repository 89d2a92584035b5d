//! Every error code and HTTP status of the API contract, each triggered for real.

use serde_json::json;

use crate::support::{Kind, Service};

async fn malformed_requests_are_invalid_request(kind: Kind) {
    let service = Service::start(kind).await;
    let json = "application/json";
    for body in [
        "not json",
        "[1, 2]",
        "{}",
        r#"{"script": 5}"#,
        r#"{"script": "def main(): pass", "args": [1]}"#,
        r#"{"script": "def main(): pass", "args": {"not an identifier": 1}}"#,
        r#"{"script": "def main(): pass", "timeout_s": "soon"}"#,
        r#"{"script": "def main(): pass", "timeout_s": 0}"#,
    ] {
        let reply = service.post_raw("/execute", json, body.into()).await;
        reply.expect_error(400, "INVALID_REQUEST");
    }
}

async fn wrong_content_types_are_415(kind: Kind) {
    let service = Service::start(kind).await;
    let body = br#"{"script": "def main(): return 1"}"#.to_vec();
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let reply = service
            .post_raw("/execute", content_type, body.clone())
            .await;
        reply.expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    }
    let reply = service
        .post_raw("/execute", "application/json; charset=utf-8", body)
        .await;
    assert_eq!(reply.expect_result(), &json!(1));
}

async fn oversized_script_and_body_are_413(kind: Kind) {
    let service = Service::start(kind).await;
    let script = format!("def main(): return 1\n#{}", "x".repeat(51 * 1024));
    service
        .run(&script)
        .await
        .expect_error(413, "SCRIPT_TOO_LARGE");
    let huge_args =
        json!({"script": "def main(blob): return 1", "args": {"blob": "y".repeat(2 << 20)}});
    service
        .execute(huge_args)
        .await
        .expect_error(413, "SCRIPT_TOO_LARGE");
    service.assert_still_healthy().await;
}

async fn unknown_routes_and_methods_answer_json(kind: Kind) {
    let service = Service::start(kind).await;
    service.get("/nope").await.expect_error(404, "NOT_FOUND");
    service
        .get("/execute")
        .await
        .expect_error(405, "METHOD_NOT_ALLOWED");
}

async fn syntax_error_gives_line_and_column(kind: Kind) {
    let service = Service::start(kind).await;
    let body = service
        .run("def main():\n    return (1,\n")
        .await
        .expect_error(422, "SYNTAX_ERROR")
        .clone();
    assert!(body["line"].as_u64().is_some(), "{body}");
    assert!(body["column"].as_u64().is_some(), "{body}");
    service
        .run("def main(): return 1\n\0")
        .await
        .expect_error(422, "SYNTAX_ERROR");
}

async fn main_must_be_callable(kind: Kind) {
    let service = Service::start(kind).await;
    service.run("main = 5").await.expect_error(422, "NO_MAIN");
}

async fn exceptions_carry_only_the_scripts_frames(kind: Kind) {
    let service = Service::start(kind).await;
    let script = "def helper():\n    raise ValueError('boom')\n\ndef main():\n    print('before')\n    helper()\n";
    let body = service
        .run(script)
        .await
        .expect_error(422, "EXCEPTION")
        .clone();
    assert_eq!(body["exception_type"], "ValueError");
    assert_eq!(body["stdout"], "before\n");
    let traceback = body["traceback"].as_str().expect("traceback");
    assert!(traceback.contains("line 6, in main"), "{traceback}");
    assert!(traceback.contains("line 2, in helper"), "{traceback}");
    assert!(traceback.contains("ValueError: boom"), "{traceback}");
    assert!(
        !traceback.contains("harness"),
        "no harness frames: {traceback}"
    );
    // Module-level code raising is an exception too.
    service
        .run("raise KeyError('top')\ndef main(): return 1")
        .await
        .expect_error(422, "EXCEPTION");
}

async fn non_json_returns_are_rejected(kind: Kind) {
    let service = Service::start(kind).await;
    for expression in [
        "{1, 2}",
        "object()",
        "float('nan')",
        "float('inf')",
        "b'bytes'",
    ] {
        let script = format!("def main():\n    return {expression}\n");
        service
            .run(&script)
            .await
            .expect_error(422, "NON_JSON_RETURN");
    }
}

async fn ending_without_a_result_is_empty_output(kind: Kind) {
    let service = Service::start(kind).await;
    for script in [
        "import sys\ndef main():\n    sys.exit(0)\n",
        "import os\ndef main():\n    os._exit(1)\n",
        "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGSEGV)\n",
        "import sys\nsys.exit(3)\ndef main(): return 1\n",
    ] {
        service.run(script).await.expect_error(422, "EMPTY_OUTPUT");
    }
    service.assert_still_healthy().await;
}

async fn request_timeout_lowers_the_deadline(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service
        .execute(
            json!({"script": "import time\ndef main():\n    time.sleep(30)\n", "timeout_s": 1}),
        )
        .await;
    let body = reply.expect_error(422, "TIMEOUT");
    let wall_ms = body["usage"]["wall_ms"].as_u64().expect("wall_ms");
    assert!(wall_ms < 10_000, "stopped at the requested 1 s: {body}");
}

async fn cpu_limit_is_a_timeout(kind: Kind) {
    let service = Service::start_with(kind, &[("CPU_LIMIT_S", "2")]).await;
    let body = service
        .run("def main():\n    while True: pass\n")
        .await
        .expect_error(422, "TIMEOUT")
        .clone();
    assert!(
        body["error"].as_str().unwrap_or("").contains("CPU"),
        "{body}"
    );
    // The script got its whole CPU allowance, not a second less. (The kernel checks the limit
    // against raw tick samples, while the reported figure is the adjusted one; on a loaded
    // virtual machine the two differ by up to a tenth or so, hence the margin.)
    let cpu_ms = body["usage"]["cpu_ms"]
        .as_u64()
        .expect("cpu_ms is measured");
    assert!(cpu_ms >= 1_500, "stopped after {cpu_ms} ms of CPU: {body}");
    service.assert_still_healthy().await;
}

async fn memory_limit(kind: Kind) {
    let service = Service::start_with(kind, &[("MEMORY_LIMIT_MIB", "200")]).await;
    let script = "def main():\n    blob = bytearray(400 * 1024 * 1024)\n    return len(blob)\n";
    service.run(script).await.expect_error(422, "MEMORY_LIMIT");
    let numpy = "import numpy as np\ndef main():\n    return int(np.ones(60_000_000).sum())\n";
    service.run(numpy).await.expect_error(422, "MEMORY_LIMIT");
    service.assert_still_healthy().await;
}

async fn result_too_large(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_RESULT_KIB", "64")]).await;
    let body = service
        .run("def main():\n    return 'x' * (200 * 1024)\n")
        .await
        .expect_error(422, "RESULT_TOO_LARGE")
        .clone();
    assert_eq!(body["limit_bytes"], 64 * 1024);
    // Just under the cap still comes back whole.
    let reply = service.run("def main():\n    return 'y' * 60000\n").await;
    assert_eq!(reply.expect_result().as_str().map(str::len), Some(60000));
}

async fn args_are_keyword_arguments(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service
        .execute(json!({
            "script": "def main(name, times=1, data=None):\n    return {'greeting': 'hi ' * times + name, 'data': data}\n",
            "args": {"name": "ada", "times": 2, "data": {"nested": [1, 2.5, null, true]}},
        }))
        .await;
    assert_eq!(
        reply.expect_result(),
        &json!({"greeting": "hi hi ada", "data": {"nested": [1, 2.5, null, true]}})
    );
    service
        .execute(json!({"script": "def main(): return 1", "args": {"unexpected": 1}}))
        .await
        .expect_error(422, "EXCEPTION");
}

async fn output_is_verbatim_and_separate(kind: Kind) {
    let service = Service::start(kind).await;
    let script = "import sys\ndef main():\n    print('  spaced  \\n')\n    print('é ✓', file=sys.stderr)\n    return [1, 'two', None]\n";
    let reply = service.run(script).await;
    assert_eq!(reply.expect_result(), &json!([1, "two", null]));
    assert_eq!(reply.body["stdout"], "  spaced  \n\n");
    assert_eq!(reply.body["stderr"], "é ✓\n");
    assert_eq!(
        reply.body["truncated"],
        json!({"stdout": false, "stderr": false})
    );
    let usage = &reply.body["usage"];
    assert!(usage["wall_ms"].as_u64().is_some(), "{usage}");
}

async fn large_integers_pass_through_exactly(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service.run("def main():\n    return 2 ** 100\n").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .text
            .starts_with(r#"{"result":1267650600228229401496703205376,"#),
        "{}",
        reply.text
    );
}

async fn output_over_the_cap_is_truncated_not_fatal(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_STDOUT_KIB", "64")]).await;
    let script = "import sys\ndef main():\n    sys.stdout.write('z' * (5 * 1024 * 1024))\n    return 'done'\n";
    let reply = service.run(script).await;
    assert_eq!(reply.expect_result(), &json!("done"));
    assert_eq!(reply.body["truncated"]["stdout"], true);
    assert_eq!(reply.body["stdout"].as_str().map(str::len), Some(64 * 1024));
}

for_each_sandbox!(
    a_relative_layer_dir_runs_scripts,
    malformed_requests_are_invalid_request,
    wrong_content_types_are_415,
    oversized_script_and_body_are_413,
    unknown_routes_and_methods_answer_json,
    syntax_error_gives_line_and_column,
    main_must_be_callable,
    exceptions_carry_only_the_scripts_frames,
    non_json_returns_are_rejected,
    ending_without_a_result_is_empty_output,
    request_timeout_lowers_the_deadline,
    cpu_limit_is_a_timeout,
    memory_limit,
    result_too_large,
    args_are_keyword_arguments,
    output_is_verbatim_and_separate,
    large_integers_pass_through_exactly,
    output_over_the_cap_is_truncated_not_fatal,
);

/// `LAYER_DIR` given relative to the service's working directory (as `LAYER_DIR=layer/out`
/// from a checkout would be) still runs scripts, in every sandbox: each runs the runtime from a
/// directory of its own.
async fn a_relative_layer_dir_runs_scripts(kind: Kind) {
    let cwd = std::env::current_dir().expect("a working directory");
    let layer = crate::support::layer_dir();
    let relative = layer
        .strip_prefix(&cwd)
        .expect("the tests run from the checkout, which holds the layer")
        .display()
        .to_string();
    assert!(!relative.starts_with('/'), "{relative}");
    let service = Service::start_with(kind, &[("LAYER_DIR", &relative)]).await;
    let script =
        "import numpy\ndef main():\n    print('ran')\n    return int(numpy.arange(4).sum())";
    let reply = service.run(script).await;
    assert_eq!(reply.expect_result(), 6, "body: {}", reply.body);
    assert_eq!(reply.body["stdout"], "ran\n");
}
