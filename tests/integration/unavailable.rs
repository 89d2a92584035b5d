//! When no sandbox can run, clients learn the kind of failure, never the host's paths: the
//! full reason is for the logs. Here nsjail is missing from an otherwise complete layer.

use crate::support::{layer_dir, Kind, Service};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nsjail_health_and_errors_name_no_host_path() {
    let layer = tempfile::tempdir().expect("tempdir");
    for entry in ["python", "harness", "etc"] {
        std::os::unix::fs::symlink(layer_dir().join(entry), layer.path().join(entry))
            .expect("symlink");
    }
    let dir = layer.path().display().to_string();
    let service = Service::start_with(Kind::Nsjail, &[("LAYER_DIR", &dir)]).await;

    let health = service.get("/health").await;
    assert_eq!(health.status, 503, "{}", health.text);
    assert_eq!(health.body["ok"], false);
    assert_eq!(health.body["reason_category"], "setup");
    let refused = service.run("def main():\n    return 1\n").await;
    refused.expect_error(500, "SANDBOX_ERROR");
    assert_eq!(refused.body["reason_category"], "setup");
    for text in [&health.text, &refused.text] {
        assert!(!text.contains(&dir), "a host path leaked: {text}");
        assert!(!text.contains("nsjail/bin"), "a host path leaked: {text}");
    }
}
