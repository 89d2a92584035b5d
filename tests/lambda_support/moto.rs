//! A local S3 (moto's server) on a free loopback port, for the offload tests.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::procs::{free_addr, Guard};

pub struct Moto {
    pub endpoint: String,
    guard: Guard,
    _logs: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Self {
        let server = super::require_tool("venv/bin/moto_server");
        let addr: SocketAddr = free_addr();
        let mut command = Command::new(server);
        command
            .args(["-H", "127.0.0.1", "-p"])
            .arg(addr.port().to_string());
        let logs = tempfile::tempdir().expect("log dir");
        let mut guard = Guard::spawn("moto_server", command, logs.path());
        guard.wait_listening(addr, Duration::from_secs(30));
        Self {
            endpoint: format!("http://{addr}"),
            guard,
            _logs: logs,
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
            self.guard.log()
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
