//! Helpers shared by the Lambda and offload tests: the sample events and their expectations,
//! the repository's built pieces (failing loudly when one is missing), and child processes
//! (the service, the Runtime Interface Emulator, a local S3), started by `common::binary` and
//! always killed when a test ends; and a function URL in front of the emulator, for real HTTP
//! clients.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

#[path = "../common/mod.rs"]
pub mod common;
pub mod events;
pub mod function_url;
pub mod http;
pub mod moto;
pub mod rie;

use std::path::PathBuf;
use std::sync::Arc;

use python_executor::config::Config;
use python_executor::execute::Unavailable;
use python_executor::http::{router, App};
use python_executor::startup;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The repository's built layer; a test that needs it fails, never skips, when it is missing.
pub fn require_layer() -> PathBuf {
    let dir = repo_root().join("layer/out");
    assert!(
        dir.join("nsjail/bin/nsjail").is_file() && dir.join("python/bin/python3").is_file(),
        "the sandbox layer is not built at {}: run `make layer` (these tests run real nsjail)",
        dir.display()
    );
    dir
}

/// A tool installed by `tools/install.sh` under `.tools/`; fails loudly when it is missing.
pub fn require_tool(relative: &str) -> PathBuf {
    let path = repo_root().join(".tools").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `make tools` (tools/install.sh installs it)",
        path.display()
    );
    path
}

/// The service's router, built exactly as `main` builds it, from `pairs` as its environment
/// (the layer is found the way the release binary finds it, without LAYER_DIR).
pub async fn router_with(pairs: &[(&str, &str)]) -> axum::Router {
    require_layer();
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("valid test configuration");
    let app = startup::build(config).await.expect("the service starts");
    router(Arc::new(app))
}

/// A router whose sandbox is unavailable for `reason`, as on a platform refusing namespaces.
pub fn router_without_sandbox(reason: Unavailable) -> axum::Router {
    let app = App {
        config: Config::default(),
        executor: Err(reason),
        packages: Default::default(),
    };
    router(Arc::new(app))
}
