//! Wiring only: protect the service, read the configuration, build the service, serve it over
//! HTTP on `$PORT`, or to the Lambda Runtime API when `AWS_LAMBDA_RUNTIME_API` is set. One
//! router, two entry points.

use std::sync::Arc;

use anyhow::Context;
use python_executor::{app, config::Config, lambda, platform, reaper, server, startup, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, before any secret is read: scripts may run under this same uid (compat mode).
    platform::protect_service().context("could not make the service undumpable")?;
    let config = Config::from_env().context("invalid configuration")?;
    telemetry::init(config.log_format);
    reaper::spawn().context("could not start the orphan reaper")?;
    let on_lambda = config.lambda;
    let port = config.port;
    let grace = config.shutdown_grace;
    let http = config.http.clone();
    let app = startup::build(config)
        .await
        .context("could not start the service")?;
    let router = app::router(Arc::new(app));
    if on_lambda {
        tracing::info!("serving the Lambda Runtime API");
        return lambda::run(router)
            .await
            .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"));
    }
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("could not listen on port {port}"))?;
    tracing::info!(port, "listening");
    server::serve_with_grace(listener, router, http, server::shutdown_signal(), grace).await?;
    tracing::info!("stopped");
    Ok(())
}
