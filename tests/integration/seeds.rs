//! The examples of the seed documents, exactly as their users ran them.

use serde_json::json;

use crate::support::{Kind, Service};

pub const NUMPY_PANDAS_SEED: &str = "def main():\n    import numpy as np\n    import pandas as pd\n    print(\"Processing data...\")\n    data = np.array([1, 2, 3, 4, 5])\n    return {\"mean\": float(np.mean(data)), \"sum\": int(np.sum(data))}";

async fn numpy_pandas_example(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service.run(NUMPY_PANDAS_SEED).await;
    assert_eq!(reply.expect_result(), &json!({"mean": 3.0, "sum": 15}));
    assert_eq!(reply.body["stdout"], "Processing data...\n");
    assert_eq!(reply.body["sandbox"], kind.sandbox(), "{}", reply.body);
}

async fn hello_example_keeps_stdout_verbatim(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service
        .run("def main():\n  print('hi')\n  return {\"sum\": 1+2}\n")
        .await;
    assert_eq!(reply.expect_result(), &json!({"sum": 3}));
    assert_eq!(reply.body["stdout"], "hi\n");
}

async fn missing_main(kind: Kind) {
    let service = Service::start(kind).await;
    let body = service
        .run("print(123)")
        .await
        .expect_error(422, "NO_MAIN")
        .clone();
    assert_eq!(
        body["error"],
        "Script must contain a 'def main():' function"
    );
    assert_eq!(body["stdout"], "123\n");
}

async fn set_return(kind: Kind) {
    let service = Service::start(kind).await;
    service
        .run("def main(): return set([1,2])")
        .await
        .expect_error(422, "NON_JSON_RETURN");
}

async fn endless_loop_times_out_near_15_s(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service.run("def main():\n while True: pass").await;
    let body = reply.expect_error(422, "TIMEOUT");
    // The deadline is the contract's 15 s (a CPU-limit kill at 10 s would say so instead).
    let wall_ms = body["usage"]["wall_ms"].as_u64().expect("wall_ms");
    assert!(
        (9_000..25_000).contains(&wall_ms),
        "ended after {wall_ms} ms: {body}"
    );
    service.assert_still_healthy().await;
}

async fn health(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service.get("/health").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["ok"], true);
    let body = &reply.body;
    let layers: Vec<String> = serde_json::from_value(body["isolation"].clone()).expect("a list");
    let has = |layer: &str| layers.iter().any(|name| name == layer);
    match kind {
        Kind::Nsjail => {
            assert_eq!(body["sandbox"], "nsjail", "{body}");
            assert!(
                has("namespaces") && has("cgroups") && has("seccomp"),
                "{body}"
            );
        }
        Kind::Compat => {
            assert_eq!(body["sandbox"], "compat", "{body}");
            assert!(
                has("cgroups") && has("seccomp") && has("landlock"),
                "{body}"
            );
        }
        // What Lambda allows: no namespaces, no cgroups, no Landlock; seccomp remains.
        Kind::Lambda => {
            assert_eq!(body["sandbox"], "compat", "{body}");
            assert!(has("seccomp") && has("no_new_privs"), "{body}");
            for missing in ["namespaces", "cgroups", "landlock"] {
                assert!(
                    !has(missing),
                    "{missing} reported under Lambda's conditions: {body}"
                );
            }
            assert_eq!(body["executions"]["capacity"], 1, "{body}");
        }
    }
}

for_each_sandbox!(
    numpy_pandas_example,
    hello_example_keeps_stdout_verbatim,
    missing_main,
    set_return,
    endless_loop_times_out_near_15_s,
    health,
);
