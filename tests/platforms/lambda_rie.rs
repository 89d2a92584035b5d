//! The contract under the AWS Lambda Runtime Interface Emulator (what `sam local invoke` runs,
//! without Docker): the service binary is started by the RIE, from the repository root and with
//! no configuration, and every sample event is invoked through the emulator's HTTP endpoint.
//! Fails, never skips, when the RIE (`make tools`) or the layer (`make layer`) is missing.

use crate::lambda_support::common::binary::service_exe;
use crate::lambda_support::common::mcp_client::{self, Handshake};
use crate::lambda_support::events;
use crate::lambda_support::function_url::FunctionUrl;
use crate::lambda_support::rie::Rie;
use serde_json::{json, Value};

/// Credentials as Lambda hands them to a function; none may ever reach a script.
const FAKE_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLECANARY0001"),
    ("AWS_SECRET_ACCESS_KEY", "canary-secret-do-not-leak"),
    ("AWS_SESSION_TOKEN", "canary-session-token"),
];

fn content_type(payload: &Value) -> Option<String> {
    let single = payload["headers"]["content-type"].as_str();
    let multi = payload["multiValueHeaders"]["content-type"][0].as_str();
    single.or(multi).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_event_answers_as_expected_under_the_emulator() {
    let rie = Rie::start(&[]);
    for name in events::files() {
        let payload = rie.invoke(&events::read(&name)).await;
        let (status, body) = events::decode_response(&payload);
        events::check(&name, status, &body);
        assert_eq!(
            content_type(&payload).as_deref(),
            Some("application/json"),
            "{name}: {payload}"
        );
        if name.starts_with("rest-api-") {
            // REST APIs read multiValueHeaders; single headers there would be duplicated.
            assert!(
                payload["multiValueHeaders"].is_object(),
                "{name}: {payload}"
            );
        }
    }
}

/// Returns its own environment and whatever it can read of every process's environment.
const ENV_SNOOP: &str = r#"import os
def main():
    found = []
    try:
        pids = os.listdir('/proc')
    except OSError:
        pids = []
    for pid in set(pids) | {str(os.getppid()), '1'}:
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                found.append(f.read().decode('utf-8', 'replace'))
        except Exception:
            pass
    print(sorted(os.environ))
    return {'env': dict(os.environ), 'proc': found}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_credentials_never_reach_a_script_under_nsjail() {
    credentials_stay_out("nsjail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_credentials_never_reach_a_script_under_compat() {
    credentials_stay_out("compat").await;
}

/// The service runs with Lambda-style credentials in its environment; a script of `sandbox`
/// looks for them in its own environment and in every /proc/<pid>/environ it can read.
async fn credentials_stay_out(sandbox: &str) {
    let mut env: Vec<(&str, String)> = FAKE_CREDENTIALS.map(|(k, v)| (k, v.to_owned())).to_vec();
    env.push(("SANDBOX", sandbox.to_owned()));
    let rie = Rie::start(&env);
    let event = events::with_body(
        "function-url-execute-numpy.json",
        &json!({ "script": ENV_SNOOP }),
    );
    let payload = rie.invoke(&event).await;
    // The service itself did hold the credentials, so their absence below means something.
    let service_env = service_environment(&rie);
    for (name, value) in FAKE_CREDENTIALS {
        assert!(
            service_env.contains(&format!("{name}={value}")),
            "{name} not in the service"
        );
    }
    let (status, body) = events::decode_response(&payload);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sandbox"], sandbox, "{body}");
    let seen = body["result"]["env"]
        .as_object()
        .expect("the script's environment");
    assert!(seen.keys().all(|key| !key.starts_with("AWS_")), "{body}");
    let text = body.to_string();
    for (name, value) in FAKE_CREDENTIALS {
        assert!(
            !text.contains(value),
            "{name}'s value reached the script: {text}"
        );
    }
}

/// The environment of the service process the emulator started.
fn service_environment(rie: &Rie) -> String {
    let binary = service_exe();
    let pid =
        rie.process().descendants().into_iter().find(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
        });
    let pid =
        pid.unwrap_or_else(|| panic!("the service process was not found\n{}", rie.process().log()));
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    String::from_utf8_lossy(&raw).replace('\0', "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_lambda_cap_is_refused_in_json_without_a_bucket() {
    let rie = Rie::start(&[]);
    // 2.4 MiB of quotes: under the 5 MiB result cap as JSON, but twice that once Lambda wraps
    // the envelope in its own JSON string, so over the 6 MB response cap.
    let script = "def main():\n    return '\"' * (2400 * 1024)\n";
    let (status, body) = rie.execute(&json!({ "script": script })).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "RESULT_TOO_LARGE");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("RESULT_BUCKET")),
        "{body}"
    );
    assert!(body["result_bytes"].as_u64() > Some(2400 * 1024), "{body}");
}

/// The official Python MCP client, through a function URL (function URL events, buffered
/// responses) to the service under the emulator: both handshakes, numpy, a figure as a PNG
/// image, and a failing cell as a result with `isError`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_runs_python_through_a_function_url() {
    let url = FunctionUrl::start(Rie::start(&[])).await;
    let plan = json!([
        {"code": "import numpy as np\nnp.array([1, 2, 3, 4, 5]).sum()"},
        {"code": "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.bar(['a', 'b'], [3, 5])"},
        {"code": "import pandas as pd\npd.DataFrame({'x': [1]}).loc[5]"},
    ]);
    for handshake in [Handshake::Legacy, Handshake::Auto] {
        let report = mcp_client::run_async(url.url("/mcp"), None, handshake, plan.clone()).await;
        assert_eq!(report["tools"][0]["name"], "run_python", "{report}");
        let results = &report["results"];
        assert_eq!(results[0]["isError"], false, "{report}");
        assert_eq!(results[0]["structuredContent"]["result"], 15, "{report}");
        let image = &results[1]["content"][1];
        assert_eq!(image["type"], "image", "{report}");
        assert_eq!(image["mimeType"], "image/png", "{report}");
        assert_eq!(results[2]["isError"], true, "{report}");
        let outcome = &results[2]["structuredContent"];
        assert_eq!(outcome["code"], "EXCEPTION", "{report}");
        assert_eq!(outcome["exception_type"], "KeyError", "{report}");
        assert_eq!(outcome["where"], "cell", "{report}");
    }
}
