//! Wiring only: read the configuration, build the service, serve it.

use std::sync::Arc;

use anyhow::Context;
use python_executor::{app, config::Config, server, startup, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("invalid configuration")?;
    telemetry::init(config.log_format);
    let port = config.port;
    let app = startup::build(config).context("could not start the service")?;
    let router = app::router(Arc::new(app));
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("could not listen on port {port}"))?;
    tracing::info!(port, "listening");
    server::serve(listener, router, server::shutdown_signal()).await?;
    Ok(())
}
