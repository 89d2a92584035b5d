//! A local S3 (moto's server) on a free loopback port, for the offload tests.

use std::time::Duration;

use super::common::binary::{Launch, Running};
use super::common::ports::free_addr;

/// Long enough for moto's Python server to import itself on a busy machine.
const LISTENING_WITHIN: Duration = Duration::from_secs(30);

pub struct Moto {
    pub endpoint: String,
    process: Running,
}

impl Moto {
    pub fn start() -> Self {
        let server = super::require_tool("venv/bin/moto_server");
        let addr = free_addr();
        let process = Launch::new("moto_server", server)
            .args(["-H", "127.0.0.1", "-p"])
            .arg(addr.port().to_string())
            .start_listening(addr, LISTENING_WITHIN);
        Self {
            endpoint: format!("http://{addr}"),
            process,
        }
    }

    /// Creates `bucket` (moto's server does not check signatures, so a plain PUT does).
    pub async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("moto answers");
        assert!(
            response.status().is_success(),
            "could not create the bucket: {}\n{}",
            response.status(),
            self.process.log()
        );
    }

    /// The service's settings for offloading into `bucket` here, with the fake credentials a
    /// local S3 accepts.
    pub fn service_env(&self, bucket: &'static str) -> Vec<(&'static str, String)> {
        vec![
            ("RESULT_BUCKET", bucket.to_owned()),
            ("S3_ENDPOINT_URL", self.endpoint.clone()),
            ("S3_FORCE_PATH_STYLE", "1".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }
}
