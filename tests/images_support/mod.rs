//! The images' filesystems, built by tools/images/build-root.sh from the Dockerfiles themselves,
//! and what the tests need to know about each (its ENV, ENTRYPOINT and size).

pub mod cloudrun;
pub mod lambda;
pub mod template;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

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

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds (or finds in the cache) the runtime filesystem of `dockerfile`, with the release
/// binary in it; fails loudly when anything it needs is missing.
pub fn build(dockerfile: &str) -> Image {
    let repo = repo_root();
    let binary = release_binary();
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

/// cargo's release build, which the images carry; it must be newer than every source file
/// (`make build` makes it; `make test` runs that first).
fn release_binary() -> PathBuf {
    let repo = repo_root();
    let binary = repo.join("target/release/python-executor");
    let built = modified(&binary)
        .unwrap_or_else(|| panic!("{} is missing: run `make build`", binary.display()));
    let sources = ["src", "Cargo.toml", "Cargo.lock"].map(|path| repo.join(path));
    let newest = sources.iter().filter_map(|path| newest_below(path)).max();
    assert!(
        newest.is_none_or(|newest| newest <= built),
        "{} is older than the sources: run `make build`",
        binary.display()
    );
    binary
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).ok()?.modified().ok()
}

fn newest_below(path: &Path) -> Option<SystemTime> {
    let Ok(entries) = std::fs::read_dir(path) else {
        return modified(path);
    };
    entries
        .flatten()
        .filter_map(|entry| newest_below(&entry.path()))
        .max()
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
