//! The service binary serving HTTP on a free loopback port (the Cloud Run entry point), with
//! only the environment a test gives it.

use std::time::Duration;

use serde_json::Value;

use super::common::binary::{Launch, Running};
use super::common::ports::free_addr;

/// Long enough for the sandbox self-test at startup on a busy machine.
const LISTENING_WITHIN: Duration = Duration::from_secs(30);

pub struct HttpService {
    base: String,
    process: Running,
    client: reqwest::Client,
}

impl HttpService {
    pub fn start(env: &[(&str, String)]) -> Self {
        super::require_layer();
        let addr = free_addr();
        let process = Launch::service()
            .current_dir(super::repo_root())
            .clear_env()
            .env("PORT", addr.port().to_string())
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .start_listening(addr, LISTENING_WITHIN);
        Self {
            base: format!("http://{addr}"),
            process,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
        }
    }

    /// `GET /metrics` (no key is configured), read with the Prometheus project's parser.
    pub async fn metrics(&self) -> super::common::prometheus::Exposition {
        let response = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.process.log()));
        assert_eq!(response.status().as_u16(), 200);
        super::common::prometheus::Exposition::parse(&response.text().await.expect("text"))
    }

    /// Runs `script`; status and JSON body, which must be one docs/openapi.json describes.
    pub async fn execute(&self, script: &str) -> (u16, Value) {
        self.post(&serde_json::json!({ "script": script })).await
    }

    /// `POST /execute` with `body`; status and JSON body, checked as `execute`'s are.
    pub async fn post(&self, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/execute", self.base))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {e}\n{}", self.process.log()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let header = |name: &str| Some(headers.get(name)?.to_str().ok()?.to_owned());
        let body = response.json().await.expect("JSON body");
        super::common::openapi::check(&super::common::openapi::Observed {
            method: "POST",
            path: "/execute",
            status,
            header: &header,
            body: &body,
        });
        (status, body)
    }
}
