//! Helpers shared by the Lambda and offload tests: the sample events and their expectations,
//! the repository's built pieces (failing loudly when one is missing), and child processes
//! (the service, the Runtime Interface Emulator, a local S3), started by `common::binary` and
//! always killed when a test ends; and a function URL in front of the emulator, for real HTTP
//! clients.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

#[path = "../../common/mod.rs"]
pub mod common;
pub mod events;
pub mod function_url;
pub mod http;
pub mod moto;
pub mod rie;
pub mod runtime_api;

use python_executor::config::Config;
use python_executor::execute::Unavailable;
use python_executor::http::App;

pub use common::repo::{layer_dir as require_layer, repo_root, tool as require_tool};

/// The service's router, built exactly as `main` builds it, from `pairs` as its environment
/// (the layer is found the way the release binary finds it, without LAYER_DIR).
pub async fn router_with(pairs: &[(&str, &str)]) -> axum::Router {
    require_layer();
    common::app::router_for(common::app::config_with(pairs)).await
}

/// A router whose sandbox is unavailable for `reason`, as on a platform refusing namespaces.
pub fn router_without_sandbox(reason: Unavailable) -> axum::Router {
    common::app::router_of(App::unavailable(Config::default(), reason))
}
