//! The images' filesystems, built by tools/images/build-root.sh from the Dockerfiles themselves,
//! and what the tests need to know about each (its ENV, ENTRYPOINT and size).

pub mod cloudrun;
pub mod lambda;
pub mod template;
pub mod vm;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// An image's filesystem and the configuration its Dockerfile gives it.
#[derive(Debug)]
pub struct Image {
    /// The directory build-root.sh made: `root/` and `image.json`.
    pub dir: PathBuf,
    pub root: PathBuf,
    /// The Dockerfile's ENV, in its order.
    pub env: Vec<(String, String)>,
    pub entrypoint: Vec<String>,
    /// The root's size, as the sum of its files' sizes (an uncompressed image).
    pub size_bytes: u64,
}

pub use crate::lambda_support::repo_root;

/// Builds (or finds in the cache) the runtime filesystem of `dockerfile`, with the service
/// binary in it; fails loudly when anything it needs is missing.
pub fn build(dockerfile: &str) -> Image {
    let repo = repo_root();
    let binary = service_binary();
    let output = Command::new(repo.join("tools/images/build-root.sh"))
        .arg(repo.join(dockerfile))
        .arg(&binary)
        .output()
        .expect("tools/images/build-root.sh starts");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "building {dockerfile}'s filesystem failed ({}):\n{}",
        output.status,
        tail(&log, 60)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("image.json")).expect("image.json is there"),
    )
    .expect("image.json is JSON");
    let env = spec["env"]
        .as_object()
        .expect("env")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_owned()))
        .collect();
    let entrypoint = serde_json::from_value(spec["entrypoint"].clone()).expect("entrypoint");
    let size_bytes = spec["size_bytes"].as_u64().expect("size_bytes");
    println!(
        "{dockerfile}: {size_bytes} bytes uncompressed, in {}",
        dir.display()
    );
    Image {
        root: dir.join("root"),
        dir,
        env,
        entrypoint,
        size_bytes,
    }
}

/// The service binary cargo built beside these tests, in the same profile (`make test` builds
/// the whole crate graph once, in its `ci` profile: optimized, as the images' own build is).
fn service_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_python-executor"))
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
