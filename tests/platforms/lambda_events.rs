//! Every sample event in `events/`, converted by lambda_http exactly as the Lambda entry point
//! converts it, through the real router running real scripts under real nsjail; each answer is
//! checked against `events/expected.json`.

use crate::lambda_support::events;
use axum::body::to_bytes;
use lambda_http::Service;
use python_executor::execute::{Category, Unavailable};
use python_executor::http::lambda;
use serde_json::{json, Value};

/// Runs one event (JSON text) through the Lambda handler; status and JSON body.
async fn invoke(router: &axum::Router, event: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(event).expect("lambda_http accepts the event");
    let response = lambda::handler(router.clone())
        .call(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).expect("every answer is JSON");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_gets_its_expected_answer() {
    let router = crate::lambda_support::router_with(&[("TEMPLATES", "0")]).await;
    let expected = events::expected();
    let files = events::files();
    for name in &files {
        assert!(
            expected.get(name).is_some(),
            "{name} has no entry in events/expected.json"
        );
        let (status, body) = invoke(&router, &events::read(name)).await;
        events::check(name, status, &body);
    }
    let names: Vec<&str> = files.iter().map(String::as_str).collect();
    for kind in ["function-url-", "http-api-", "rest-api-", "alb-"] {
        assert!(
            names.iter().any(|n| n.starts_with(kind)),
            "no {kind}* event"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_http_api_stage_is_taken_out_of_the_path() {
    let router = crate::lambda_support::router_with(&[("TEMPLATES", "0")]).await;
    let mut event: Value =
        serde_json::from_str(&events::read("http-api-execute.json")).expect("json");
    event["rawPath"] = json!("/prod/execute");
    event["requestContext"]["stage"] = json!("prod");
    event["requestContext"]["http"]["path"] = json!("/prod/execute");
    let (status, body) = invoke(&router, &event.to_string()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!({"sum": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_still_answer_json_through_every_front_door() {
    let router = crate::lambda_support::router_with(&[("TEMPLATES", "0")]).await;
    for name in [
        "function-url-health.json",
        "rest-api-health.json",
        "alb-health.json",
    ] {
        let mut event: Value = serde_json::from_str(&events::read(name)).expect("json");
        // Payload 2.0 names the path rawPath; REST API and ALB events name it path.
        let key = if event.get("rawPath").is_some() {
            "rawPath"
        } else {
            "path"
        };
        event[key] = json!("/nope");
        let (status, body) = invoke(&router, &event.to_string()).await;
        assert_eq!(status, 404, "{name}: {body}");
        assert_eq!(body["code"], "NOT_FOUND", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_value_is_a_result_through_the_lambda_entry_point() {
    let router = crate::lambda_support::router_with(&[("TEMPLATES", "0")]).await;
    for (script, expected) in [
        ("def main():\n    print('only output')\n", json!(null)),
        ("def main():\n    return None\n", json!(null)),
        ("def main():\n    return False\n", json!(false)),
        ("def main():\n    return 0\n", json!(0)),
        ("def main():\n    return ''\n", json!("")),
        ("def main():\n    return []\n", json!([])),
        ("def main():\n    return {}\n", json!({})),
    ] {
        for template in ["function-url-execute-numpy.json", "rest-api-execute.json"] {
            let event = events::with_body(template, &json!({ "script": script }));
            let (status, body) = invoke(&router, &event).await;
            assert_eq!(status, 200, "{template}: {script}: {body}");
            assert_eq!(body.get("result"), Some(&expected), "{template}: {script}");
        }
    }
}

#[tokio::test]
async fn without_a_usable_sandbox_every_execution_is_refused_and_health_says_why() {
    // The full reason names host paths: it belongs in the logs, never in an answer.
    let detail =
        "the nsjail sandbox does not start: nsjail is missing at /opt/secret/nsjail/bin/nsjail";
    let router =
        crate::lambda_support::router_without_sandbox(Unavailable::new(Category::Setup, detail));
    let (status, body) = invoke(&router, &events::read("function-url-execute-numpy.json")).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "SANDBOX_ERROR");
    assert_eq!(body["reason_category"], "setup");
    assert_eq!(body["reason"], Category::Setup.public_sentence());
    assert!(!body.to_string().contains("/opt"), "no host path: {body}");
    assert!(body.get("result").is_none(), "no script ran: {body}");
    let (status, body) = invoke(&router, &events::read("rest-api-health.json")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ok"], false);
    assert_eq!(body["reason_category"], "setup");
    assert_eq!(body["reason"], Category::Setup.public_sentence());
    assert!(!body.to_string().contains("/opt"), "no host path: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_in_and_a_plot_comes_out_through_the_lambda_entry_point() {
    use base64::Engine;
    let router = crate::lambda_support::router_with(&[("TEMPLATES", "0")]).await;
    let script = [
        "import matplotlib.pyplot as plt",
        "def main():",
        "    xs, ys = zip(*(map(float, line.split(',')) for line in open('data/points.csv')))",
        "    plt.plot(xs, ys)",
        "    plt.savefig('outputs/plot.png')",
        "    return {'points': len(xs)}",
    ]
    .join("\n");
    let request = json!({
        "script": script,
        "files": [{"path": "data/points.csv", "content": "1,2\n2,4\n3,1\n"}],
    });
    for template in ["function-url-execute-numpy.json", "rest-api-execute.json"] {
        let (status, body) = invoke(&router, &events::with_body(template, &request)).await;
        assert_eq!(status, 200, "{template}: {body}");
        assert_eq!(body["result"], json!({"points": 3}), "{template}");
        let plot = &body["files"][0];
        assert_eq!(plot["path"], "outputs/plot.png", "{template}: {body}");
        assert_eq!(plot["content_type"], "image/png");
        let png = base64::engine::general_purpose::STANDARD
            .decode(plot["content_base64"].as_str().expect("base64"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "{template}: a PNG");
        assert_eq!(plot["bytes"], png.len());
    }
    // A path trick is refused through this door too.
    let trick = json!({"script": "def main():\n    return 1\n",
                       "files": [{"path": "../x", "content": ""}]});
    let event = events::with_body("function-url-execute-numpy.json", &trick);
    let (status, body) = invoke(&router, &event).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "INVALID_FILE_PATH");
}
