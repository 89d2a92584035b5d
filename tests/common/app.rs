//! The service as `main` builds it, in-process, from settings given as an environment: its
//! configuration and its router, for tests that drive the router themselves (Lambda's events)
//! or serve it over real HTTP (the integration suite).

use std::sync::Arc;

use python_executor::config::Config;
use python_executor::http::{router, App};
use python_executor::startup;

/// The configuration `pairs` give, read by the same declarations as the binary's environment.
pub fn config_with(pairs: &[(&str, &str)]) -> Config {
    Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    })
    .expect("valid test configuration")
}

/// The router of the service `config` builds (its sandbox probed, proven and started).
pub async fn router_for(config: Config) -> axum::Router {
    let app = startup::build(config).await.expect("the service starts");
    router(Arc::new(app))
}

/// A router whose executor is `app`'s, for tests that build an `App` by hand.
pub fn router_of(app: App) -> axum::Router {
    router(Arc::new(app))
}
