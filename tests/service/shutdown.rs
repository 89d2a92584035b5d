//! Cloud Run behaviour: SIGTERM lets running executions finish within the grace period, then
//! ends what remains; with the default graces every caller has its answer, and the process has
//! exited 0 leaving no sandbox process behind, within the 10 s Cloud Run allows between SIGTERM
//! and SIGKILL. And the API key.

use std::time::{Duration, Instant};

use crate::common::procs::{processes_with, survivors};
use crate::common::wait;
use crate::process::Binary;

/// Long enough for a sandbox to start on a busy machine.
const STARTED_WITHIN: Duration = Duration::from_secs(30);

/// A script that starts a child carrying `marker` and then runs for `seconds`: the time it runs
/// is what the test measures against the grace period.
fn sleeper(marker: &str, seconds: u32) -> String {
    // The marker rides in the child's command line, so the test can see the script running and,
    // at the end, look for leftovers.
    format!(
        "import subprocess, sys, time\ndef main():\n    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', '{marker}'])\n    time.sleep({seconds})\n    return 'finished'\n"
    )
}

/// Cloud Run sends SIGKILL this long after SIGTERM.
const CLOUD_RUN_KILLS_AFTER: Duration = Duration::from_secs(10);

/// Sends `script`, SIGTERMs the service once the script's `marker` child runs, and returns the
/// answer the request still gets.
async fn terminate_mid_execution(
    service: &mut Binary,
    script: String,
    marker: &str,
) -> (u16, serde_json::Value) {
    let (answer, _) = timed_termination(service, script, marker).await;
    answer
}

/// [`terminate_mid_execution`], and how long after SIGTERM the answer came.
async fn timed_termination(
    service: &mut Binary,
    script: String,
    marker: &str,
) -> ((u16, serde_json::Value), Duration) {
    let url = service.url("/execute");
    let request = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({ "script": script }))
            .send()
            .await
            .expect("the running request is answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    });
    let running = wait::until_async(STARTED_WITHIN, || {
        std::future::ready((!processes_with(marker).is_empty()).then_some(()))
    })
    .await;
    assert!(
        running.is_some(),
        "the script never ran:\n{}",
        service.log()
    );
    service.terminate();
    let terminated = Instant::now();
    let answer = request.await.expect("request task");
    (answer, terminated.elapsed())
}

async fn sigterm_lets_a_running_execution_finish(sandbox: &str) {
    let mut service = Binary::start(&[("SANDBOX", sandbox)], None);
    let marker = format!("pyexec-sigterm-{sandbox}-{}", std::process::id());
    let script = sleeper(&marker, 2);
    let (status, body) = terminate_mid_execution(&mut service, script, &marker).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "finished", "{body}");
    assert_eq!(service.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(survivors(&marker).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_execution_finish_compat() {
    sigterm_lets_a_running_execution_finish("compat").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_execution_finish_nsjail() {
    sigterm_lets_a_running_execution_finish("nsjail").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_period_executions_are_ended_and_the_service_exits_0() {
    let mut service = Binary::start(&[("SANDBOX", "compat"), ("SHUTDOWN_GRACE_S", "1")], None);
    let marker = format!("pyexec-grace-{}", std::process::id());
    let script = sleeper(&marker, 60);
    let (status, body) = terminate_mid_execution(&mut service, script, &marker).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "SANDBOX_ERROR", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("shutting down"),
        "{body}"
    );
    assert_eq!(service.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(survivors(&marker).await, Vec::<String>::new());
}

/// The caller had its answer `answered` after SIGTERM, before Cloud Run's SIGKILL would
/// come, and the service then exited cleanly in the time left, leaving no process behind.
async fn answered_and_gone_before_cloud_run_kills(
    service: &mut Binary,
    answered: Duration,
    marker: &str,
) {
    assert!(
        answered < CLOUD_RUN_KILLS_AFTER,
        "answered {answered:?} after SIGTERM"
    );
    let left = CLOUD_RUN_KILLS_AFTER.saturating_sub(answered);
    assert_eq!(service.wait_exit(left), Some(0), "{}", service.log());
    assert_eq!(survivors(marker).await, Vec::<String>::new());
}

/// Cloud Run's path with its defaults (no grace set): a 5 s script running at SIGTERM ends
/// within the 7 s drain, and its caller has the answer, and the service has exited, before
/// Cloud Run's SIGKILL would come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cloud_run_a_5_s_script_at_sigterm_is_answered_within_10_s() {
    let env = [("SANDBOX", "nsjail"), ("K_SERVICE", "python-executor")];
    let mut service = Binary::start(&env, None);
    let marker = format!("pyexec-cloud-run-{}", std::process::id());
    let ((status, body), answered) =
        timed_termination(&mut service, sleeper(&marker, 5), &marker).await;
    assert_eq!(
        (status, &body["result"]),
        (200, &serde_json::json!("finished")),
        "{body}"
    );
    answered_and_gone_before_cloud_run_kills(&mut service, answered, &marker).await;
}

/// With the default graces, a script that would run past them is ended at 7 s, and its caller
/// told so (SANDBOX_ERROR, "shutting down") well before the 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cloud_run_a_script_longer_than_the_grace_is_ended_and_answered_within_10_s() {
    let env = [
        ("SANDBOX", "compat"),
        ("K_SERVICE", "python-executor"),
        ("MAX_TIMEOUT_S", "60"),
    ];
    let mut service = Binary::start(&env, None);
    let marker = format!("pyexec-cloud-run-long-{}", std::process::id());
    let ((status, body), answered) =
        timed_termination(&mut service, sleeper(&marker, 60), &marker).await;
    assert_eq!(
        (status, &body["code"]),
        (500, &serde_json::json!("SANDBOX_ERROR")),
        "{body}"
    );
    answered_and_gone_before_cloud_run_kills(&mut service, answered, &marker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_execute_requires_it_and_health_stays_open() {
    let service = Binary::start(&[("SANDBOX", "compat"), ("API_KEY", "k3y-for-tests")], None);
    let script = "def main():\n    return 1\n";
    let (status, body) = service.execute(script, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    let (status, body) = service.execute(script, Some("wrong")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("UNAUTHORIZED")),
        "{body}"
    );
    let (status, body) = service.execute(script, Some("k3y-for-tests")).await;
    assert_eq!(
        (status, &body["result"]),
        (200, &serde_json::json!(1)),
        "{body}"
    );
    assert_eq!(service.health().await["ok"], true);
}
