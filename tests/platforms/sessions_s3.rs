//! Sessions across instances: two service processes sharing one S3 store (moto's server) and
//! one `SESSION_KEY`, one serving HTTP as on Cloud Run and one under the Lambda emulator, so
//! any instance continues any session; and S3's conditional writes keep two instances from
//! saving over each other's state.

use futures::StreamExt;
use serde_json::{json, Value};

use crate::lambda_support::http::HttpService;
use crate::lambda_support::moto::Moto;
use crate::lambda_support::rie::Rie;

const BUCKET: &str = "sessions";
/// The secret every instance of the deployment shares (any text of 32 characters or more).
const SESSION_KEY: &str = "sessions-are-sealed-with-this-key-everywhere";

fn instance_env(moto: &Moto) -> Vec<(&'static str, String)> {
    let mut env = moto.service_env(BUCKET);
    env.push(("SESSION_STORE", "s3".to_owned()));
    env.push(("SESSION_KEY", SESSION_KEY.to_owned()));
    env
}

fn cell(code: &str, session: &str) -> Value {
    json!({"script": code, "mode": "cell", "session": session})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_answers_cell_one_and_another_cell_two() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let env = instance_env(&moto);
    let cloud_run = HttpService::start(&env);
    let lambda = Rie::start(&env);
    let mut first = cell(
        "import pandas as pd\ndf = pd.read_csv('in.csv')\nlen(df)",
        "new",
    );
    first["files"] = json!([{"path": "in.csv", "content": "x,y\n1,2\n3,4\n5,6\n"}]);
    let (status, body) = cloud_run.post(&first).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(3), "{body}");
    let id = body["session"]["id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let (status, body) = lambda.execute(&cell("int(df.x.sum())", &id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(9), "{body}");
    // And back: the state the Lambda instance saved is the one Cloud Run continues from.
    let (status, body) = lambda.execute(&cell("df['z'] = df.x * 10", &id)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = cloud_run.post(&cell("int(df.z.sum())", &id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], json!(90), "{body}");
}

/// Two instances run one session's calls at once: the one that saves second finds the state
/// changed and is told SESSION_CONFLICT; the session holds the first saver's state, never an
/// older one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_of_two_concurrent_saves_is_a_conflict() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    let env = instance_env(&moto);
    let (one, two) = (HttpService::start(&env), HttpService::start(&env));
    let (status, body) = one.post(&cell("n = 0", "new")).await;
    assert_eq!(status, 200, "{body}");
    let id = body["session"]["id"]
        .as_str()
        .expect("a session id")
        .to_owned();
    let slow_cell = cell("import time\ntime.sleep(3)\nn = 'slow'", &id);
    let slow = one.post(&slow_cell);
    let fast = async {
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
        two.post(&cell("n = 'fast'", &id)).await
    };
    let ((slow_status, slow_body), (fast_status, fast_body)) = tokio::join!(slow, fast);
    assert_eq!(fast_status, 200, "{fast_body}");
    assert_eq!(slow_status, 409, "{slow_body}");
    assert_eq!(slow_body["code"], "SESSION_CONFLICT", "{slow_body}");
    assert_eq!(slow_body["session"], json!({"id": id, "saved": false}));
    let (status, body) = one.post(&cell("n", &id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"], "fast", "{body}");
}

/// Expired states stay listed until the bucket's lifecycle rule removes them (a day later),
/// and S3 lists 1000 keys a page: a caller's allowance counts its fresh states on every page.
/// Here 1000 expired states sort before any session id, so the first page holds none of the
/// fresh ones; the third session of an allowance of two is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allowance_counts_fresh_states_past_a_page_of_expired_ones() {
    const TTL_S: u64 = 2;
    let moto = Moto::start();
    moto.create_bucket(BUCKET).await;
    expired_states_of_the_anonymous_caller(&moto, 1000).await;
    tokio::time::sleep(std::time::Duration::from_secs(TTL_S + 1)).await;
    let mut env = instance_env(&moto);
    env.push(("SESSIONS_PER_KEY", "2".to_owned()));
    env.push(("SESSION_TTL_S", TTL_S.to_string()));
    let service = HttpService::start(&env);
    for n in 0..2 {
        let (status, body) = service.post(&cell(&format!("n = {n}"), "new")).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = service.post(&cell("n = 2", "new")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["code"], "TOO_MANY_SESSIONS", "{body}");
}

/// `count` objects under the prefix the service files the anonymous caller's states in
/// (`sessions/<first 16 bytes of SHA-256 of the caller, hex>/`), named to sort before any
/// session id ("!" comes before digits and letters).
async fn expired_states_of_the_anonymous_caller(moto: &Moto, count: usize) {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"anonymous");
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let client = reqwest::Client::new();
    let puts = (0..count).map(|i| {
        let url = format!("{}/{BUCKET}/sessions/{hex}/!{i:04}", moto.endpoint);
        let client = client.clone();
        async move {
            let response = client.put(url).body("stale").send().await.expect("moto");
            assert!(response.status().is_success(), "{}", response.status());
        }
    });
    let mut puts = futures::stream::iter(puts).buffer_unordered(16);
    while puts.next().await.is_some() {}
}
