//! The MCP door, through a real MCP client (the official Python SDK's Streamable HTTP client,
//! `common::mcp_client`): it lists `run_python`, runs numpy, gets a matplotlib figure back as a
//! PNG image, and gets failures (an exception, a timeout) as results with `isError`, in every
//! sandbox profile. What the endpoint answers a plain HTTP client that is not speaking MCP is
//! checked against the OpenAPI document like every other answer.

use serde_json::{json, Value};

use crate::common::mcp_client::{self, Handshake};
use crate::support::{Kind, Service};

/// The results of a plan, in order, after checking the tool list the client saw.
fn results(report: &Value, calls: usize) -> Vec<Value> {
    let tools = report["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 1, "{report}");
    let tool = &tools[0];
    assert_eq!(tool["name"], "run_python", "{tool}");
    assert_eq!(tool["inputSchema"]["required"], json!(["code"]), "{tool}");
    assert!(
        tool["outputSchema"]["properties"]["ok"].is_object(),
        "{tool}"
    );
    let description = tool["description"].as_str().expect("a description");
    for promise in [
        "numpy==",
        "pandas==",
        "matplotlib==",
        "scipy==",
        "scikit-learn==",
        "pyarrow==",
        "openpyxl==",
        "outputs/",
        "def main",
    ] {
        assert!(description.contains(promise), "{promise}: {description}");
    }
    let results = report["results"].as_array().expect("results").clone();
    assert_eq!(results.len(), calls, "{report}");
    results
}

fn structured(result: &Value) -> &Value {
    &result["structuredContent"]
}

fn text_summary(result: &Value) -> &str {
    assert_eq!(result["content"][0]["type"], "text", "{result}");
    result["content"][0]["text"]
        .as_str()
        .expect("a text summary")
}

async fn mcp_client_runs_numpy_a_plot_an_error_and_a_timeout(kind: Kind) {
    let service = Service::start(kind).await;
    let plan = json!([
        {"code": "import numpy as np\nnp.arange(1, 6).mean()"},
        {"code": "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('rise')\nNone"},
        {"code": "total = 1\nraise ValueError(f'bad total {total}')"},
        {"code": "while True:\n    pass", "timeout_s": 1},
    ]);
    let report = mcp_client::run_async(service.url("/mcp"), None, Handshake::Auto, plan).await;
    let results = results(&report, 4);

    let numpy = &results[0];
    assert_eq!(numpy["isError"], false, "{numpy}");
    assert_eq!(structured(numpy)["result"], 3.0, "{numpy}");
    assert_eq!(structured(numpy)["sandbox"], kind.sandbox(), "{numpy}");
    assert!(text_summary(numpy).starts_with("Result: 3.0\n"), "{numpy}");

    let plot = &results[1];
    assert_eq!(plot["isError"], false, "{plot}");
    let image = &plot["content"][1];
    assert_eq!(image["type"], "image", "{plot}");
    assert_eq!(image["mimeType"], "image/png", "{plot}");
    // base64 of the PNG signature's first bytes.
    assert!(image["data"]
        .as_str()
        .is_some_and(|data| data.starts_with("iVBORw0KGgo")));
    let files = &structured(plot)["files"];
    assert_eq!(files[0]["path"], "outputs/figure-1.png", "{plot}");
    assert_eq!(files[0]["returned_as"], "image", "{plot}");

    let error = &results[2];
    assert_eq!(error["isError"], true, "{error}");
    let outcome = structured(error);
    assert_eq!(outcome["ok"], false, "{error}");
    assert_eq!(outcome["code"], "EXCEPTION", "{error}");
    assert_eq!(outcome["where"], "cell", "{error}");
    assert_eq!(outcome["exception_type"], "ValueError", "{error}");
    let traceback = outcome["traceback"].as_str().expect("a traceback");
    assert!(traceback.contains("line 2"), "{traceback}");
    assert!(
        traceback.contains("raise ValueError(f'bad total {total}')"),
        "{traceback}"
    );
    assert!(
        text_summary(error).starts_with("Error EXCEPTION: the cell raised ValueError: bad total 1")
    );

    let timeout = &results[3];
    assert_eq!(timeout["isError"], true, "{timeout}");
    assert_eq!(structured(timeout)["code"], "TIMEOUT", "{timeout}");
    service.assert_still_healthy().await;
}

/// Two calls with one session id share a variable, as a model keeps the id between calls.
async fn mcp_client_calls_share_a_session(kind: Kind) {
    let service = Service::start(kind).await;
    let plan = json!([
        {"code": "import pandas as pd\nframe = pd.DataFrame({'x': [1, 2, 3]})\nlen(frame)", "session": "new"},
        {"code": "int(frame.x.sum() * 7)", "session": "$previous"},
    ]);
    let report = mcp_client::run_async(service.url("/mcp"), None, Handshake::Auto, plan).await;
    let results = results(&report, 2);
    let (first, second) = (structured(&results[0]), structured(&results[1]));
    assert_eq!(first["result"], 3, "{first}");
    let id = first["session"]["id"].as_str().expect("a session id");
    assert_eq!(second["result"], 42, "{second}");
    assert_eq!(second["session"]["id"], id, "{second}");
}

async fn mcp_client_with_the_initialize_handshake_and_an_api_key(kind: Kind) {
    let key = "mcp-test-key";
    let service = Service::start_with(kind, &[("API_KEY", key)]).await;
    let plan = json!([
        {
            "code": "import pandas as pd\ndf = pd.read_csv('in/prices.csv')\ndf",
            "files": [{"path": "in/prices.csv", "content": "day,price\n1,9.5\n2,10.25\n"}],
        },
        {
            "code": "def main(rows):\n    with open('outputs/rows.csv', 'w') as f:\n        \
                     f.write('n\\n' * rows)\n    return rows",
            "args": {"rows": 3},
        },
    ]);
    let report = mcp_client::run_async(
        service.url("/mcp"),
        Some(key.to_owned()),
        Handshake::Legacy,
        plan,
    )
    .await;
    assert_eq!(report["server"]["name"], "python-executor", "{report}");
    let results = results(&report, 2);

    let frame = structured(&results[0]);
    assert_eq!(
        frame["result"],
        json!([{"day": 1, "price": 9.5}, {"day": 2, "price": 10.25}])
    );
    assert!(frame["display"]
        .as_str()
        .is_some_and(|table| table.contains("10.25")));

    let script = &results[1];
    assert_eq!(structured(script)["result"], 3, "{script}");
    let resource = &script["content"][1]["resource"];
    assert_eq!(resource["uri"], "sandbox:///outputs/rows.csv", "{script}");
    assert_eq!(resource["mimeType"], "text/csv", "{script}");
    assert_eq!(resource["text"], "n\nn\nn\n", "{script}");

    // Without the key, the endpoint refuses before the transport sees the request.
    let refused = service
        .post_raw("/mcp", "application/json", b"{}".to_vec())
        .await;
    refused.expect_error(401, "UNAUTHORIZED");
}

for_each_sandbox!(
    mcp_client_runs_numpy_a_plot_an_error_and_a_timeout,
    mcp_client_with_the_initialize_handshake_and_an_api_key,
    mcp_client_calls_share_a_session,
);

/// What a client that does not speak the transport gets: the service's JSON errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_mcp_gets_json_errors() {
    let service = Service::start(Kind::Nsjail).await;
    // Stateless: no event stream to open, no session to end.
    let reply = service.get("/mcp").await;
    reply.expect_error(405, "METHOD_NOT_ALLOWED");
    // The transport's own refusals, in the service's error body.
    let reply = service
        .post_raw("/mcp", "text/plain", b"hello".to_vec())
        .await;
    assert_eq!(reply.status, 406, "{}", reply.body);
    assert_eq!(reply.body["code"], "INVALID_REQUEST", "{}", reply.body);
    let health = service.get("/health").await;
    assert_eq!(health.body["mcp"]["path"], "/mcp", "{}", health.body);
    assert_eq!(
        health.body["mcp"]["tools"],
        json!(["run_python"]),
        "{}",
        health.body
    );
}
