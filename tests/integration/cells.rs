//! Notebook cells on `/execute` (`"mode": "cell"` or `"auto"`): the result is the last
//! expression's value, non-JSON values come back readable, failures are the script's codes
//! with `where: "cell"`; and code pasted with a uniform indentation is dedented first.

use serde_json::{json, Value};

use crate::support::{Kind, Service};

async fn cell(service: &Service, code: &str) -> Value {
    let reply = service
        .execute(json!({ "script": code, "mode": "cell" }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn a_dataframe_cell_answers_its_records(kind: Kind) {
    let service = Service::start(kind).await;
    let body = cell(
        &service,
        "import pandas as pd; df = pd.DataFrame({\"x\": [1, 2]}); df",
    )
    .await;
    assert_eq!(body["result"], json!([{"x": 1}, {"x": 2}]), "{body}");
    assert_eq!(body["display"], "   x\n0  1\n1  2", "{body}");

    let series = cell(
        &service,
        "import pandas as pd\npd.Series([1.5, None], index=['a', 'b'], name='v')",
    )
    .await;
    assert_eq!(
        series["result"],
        json!([{"index": "a", "v": 1.5}, {"index": "b", "v": null}]),
        "{series}"
    );
}

async fn a_cells_value_is_its_last_expression_or_null(kind: Kind) {
    let service = Service::start(kind).await;
    let numpy = cell(
        &service,
        "import numpy as np\nx = np.arange(4)\nprint(x.sum())\nx * 2",
    )
    .await;
    assert_eq!(numpy["result"], json!([0, 2, 4, 6]), "{numpy}");
    assert_eq!(numpy["stdout"], "6\n", "{numpy}");
    assert!(
        numpy.get("display").is_none(),
        "numpy converts faithfully: {numpy}"
    );

    let statement = cell(&service, "x = 1").await;
    assert_eq!(statement["result"], Value::Null, "{statement}");
    assert!(statement.get("display").is_none(), "{statement}");

    let object = cell(
        &service,
        "class Point:\n    def __repr__(self):\n        return 'P(1)'\nPoint()",
    )
    .await;
    assert_eq!(object["result"], "P(1)", "{object}");
    assert_eq!(object["display"], "P(1)", "{object}");

    let reply = service
        .execute(json!({ "script": "x * y", "mode": "cell", "args": {"x": 6, "y": 7} }))
        .await;
    assert_eq!(
        reply.expect_result(),
        &json!(42),
        "args are a cell's globals"
    );
    let reply = service
        .execute(json!({ "script": "__name__", "mode": "cell" }))
        .await;
    assert_eq!(reply.expect_result(), "__main__", "as in a notebook");
}

async fn a_raising_cell_is_an_exception_with_its_own_lines(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service
        .execute(json!({
            "script": "print('before')\nitems = [1]\nitems[3]\n",
            "mode": "cell",
        }))
        .await;
    let body = reply.expect_error(422, "EXCEPTION");
    assert_eq!(body["where"], "cell", "{body}");
    assert_eq!(body["exception_type"], "IndexError", "{body}");
    assert_eq!(body["stdout"], "before\n", "{body}");
    let traceback = body["traceback"].as_str().expect("traceback");
    assert!(
        traceback.contains("line 3, in <module>\n    items[3]"),
        "{traceback}"
    );
    assert!(!traceback.contains("harness"), "{traceback}");
    service.assert_still_healthy().await;
}

async fn auto_mode_runs_main_when_there_is_one(kind: Kind) {
    let service = Service::start(kind).await;
    let script = service
        .execute(json!({
            "script": "def main(n):\n    return n + 1\nmain(100)",
            "mode": "auto",
            "args": {"n": 1},
        }))
        .await;
    assert_eq!(
        script.expect_result(),
        &json!(2),
        "a main() makes it a script"
    );
    let cell = service
        .execute(json!({ "script": "def helper():\n    return 5\nhelper()", "mode": "auto" }))
        .await;
    assert_eq!(cell.expect_result(), &json!(5), "no main(): a cell");
    let reply = service
        .execute(json!({ "script": "1", "mode": "notebook" }))
        .await;
    reply.expect_error(400, "INVALID_REQUEST");
}

async fn uniformly_indented_code_is_dedented(kind: Kind) {
    let service = Service::start(kind).await;
    let script = "    def main():\n        return {'ok': True}\n\n    # pasted\n";
    let reply = service.run(script).await;
    assert_eq!(reply.expect_result(), &json!({"ok": true}));
    let reply = service
        .execute(json!({ "script": "\n\t\tx = 2\n\t\tx ** 10\n", "mode": "cell" }))
        .await;
    assert_eq!(reply.expect_result(), &json!(1024));
    // Not uniform: still the syntax error it is.
    let reply = service.run("  def main():\n return 1\n").await;
    reply.expect_error(422, "SYNTAX_ERROR");
}

for_each_sandbox!(
    a_dataframe_cell_answers_its_records,
    a_cells_value_is_its_last_expression_or_null,
    a_raising_cell_is_an_exception_with_its_own_lines,
    auto_mode_runs_main_when_there_is_one,
    uniformly_indented_code_is_dedented,
);
