//! What a session adds to a warm request: a cell in a session that holds a 1 MB DataFrame and
//! ten small variables, beside the same cell with no session, in spaced pairs (the order
//! alternating, as the doors' figures are taken). The session side restores the state before
//! the cell and pickles, seals and stores it again after; the figure to read is the median of
//! the paired differences (target: under 20 ms with the memory store). Then the same with the
//! S3 store, against moto's local server as the tests use it, on a service of its own.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::Service;
use crate::lambda_support::moto::Moto;
use crate::report::{Figures, Kind, P50_P95_P99};

/// 16384 rows of 8 float64 columns: 1 MiB of values, and ten small variables beside it.
const STATE: &str = "import numpy as np\nimport pandas as pd\n\
    df = pd.DataFrame(np.random.default_rng(0).random((16384, 8)))\n\
    a0, a1, a2, a3, a4, a5, a6, a7, a8, a9 = range(10)\nlen(df)";
/// What every measured call runs, with the session and without: next to nothing, so the
/// difference is the session's.
const CELL: &str = "a0 + a9 if 'a0' in globals() else 9";
const BUCKET: &str = "bench-sessions";
/// The key every instance of an S3-backed deployment shares (any secret of 32+ characters).
const SESSION_KEY: &str = "a-benchmark-key-that-seals-session-states";

/// Rows for `store` ("memory" or "S3 (local)"): both sides' medians and the paired difference.
pub async fn overhead(
    service: &Service,
    store: &str,
    (pairs, spacing): (usize, Duration),
    figures: &mut Figures,
) {
    let opened = cell(service, STATE, Some("new")).await;
    let Some(id) = opened["session"]["id"].as_str().map(str::to_owned) else {
        figures
            .notes
            .push(format!("sessions ({store}): none started: {opened}"));
        return;
    };
    let (mut plain, mut in_session, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let mut timings = [Duration::ZERO; 2];
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let started = Instant::now();
            let answer = cell(service, CELL, (side == 1).then_some(id.as_str())).await;
            timings[side] = started.elapsed();
            assert_eq!(
                answer["result"],
                json!(9),
                "a benchmark cell answered wrongly"
            );
            // Deliberate: spaced, as the other spaced figures.
            tokio::time::sleep(spacing).await;
        }
        plain.push(timings[0]);
        in_session.push(timings[1]);
        differences.push((timings[1].as_secs_f64() - timings[0].as_secs_f64()) * 1000.0);
    }
    figures.percentiles("cell with no session", &plain, &P50_P95_P99[..1]);
    let row = format!("cell in a session, 1 MB DataFrame + 10 vars, {store} store");
    figures.percentiles(&row, &in_session, &P50_P95_P99[..1]);
    differences.sort_by(f64::total_cmp);
    let median = differences.get(differences.len() / 2).copied();
    figures.push(
        format!("session overhead, {store} store, median of pairs (ms)"),
        Kind::Lower,
        median,
    );
    if let Some(added) = median {
        let bytes = opened["session"]["state_bytes"].as_u64().unwrap_or(0);
        figures.notes.push(format!(
            "a session holding {} KiB of state adds {added:.1} ms at the median of {pairs} pairs \
             with the {store} store",
            bytes / 1024
        ));
    }
}

/// The same, on a service of its own whose sessions live in a local S3 (moto). `env` is the
/// configuration's own settings.
pub async fn overhead_s3(env: &[(&str, &str)], pairs: (usize, Duration), figures: &mut Figures) {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let mut settings = moto.service_env(BUCKET);
    settings.push(("SESSION_STORE", "s3".to_owned()));
    settings.push(("SESSION_KEY", SESSION_KEY.to_owned()));
    let mut all: Vec<(&str, &str)> = env.to_vec();
    all.extend(settings.iter().map(|(key, value)| (*key, value.as_str())));
    match Service::start(&all).await {
        Ok(service) => overhead(&service, "S3 (local)", pairs, figures).await,
        Err(reason) => figures.notes.push(format!("sessions (S3): {reason}")),
    }
}

/// Runs `code` as a cell, in `session` when given: the answer's body.
async fn cell(service: &Service, code: &str, session: Option<&str>) -> Value {
    let reply = service
        .client()
        .post(service.url("/execute"))
        .json(&json!({"script": code, "mode": "cell", "session": session}))
        .send()
        .await
        .expect("/execute answers");
    let status = reply.status();
    let body: Value = reply.json().await.expect("a JSON body");
    assert_eq!(status, 200, "a benchmark cell failed: {body}");
    body
}
