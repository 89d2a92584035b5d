//! Wiring only: protect the service, read the command line and environment, then either probe
//! the platform (`probe`) or build the service and serve it over HTTP on `$PORT`, or to the
//! Lambda Runtime API when `AWS_LAMBDA_RUNTIME_API` is set. One router, two entry points.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use python_executor::config::Config;
use python_executor::http::{lambda, server};
use python_executor::sandbox::spawn_reaper;
use python_executor::startup::cli::{Cli, Command};
use python_executor::startup::{self, platform, probe, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    // First, before any secret is read: scripts may run under this same uid (compat mode).
    platform::protect_service().context("could not make the service undumpable")?;
    // Prints help, the version, or what is wrong with a setting, and exits, as clap does.
    let cli = Cli::parse();
    let config = cli.config();
    telemetry::init(&config);
    spawn_reaper().context("could not start the orphan reaper")?;
    match cli.command {
        Some(Command::Probe { json }) => Ok(probe::run(&config, json).await),
        None => serve(config).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let on_lambda = config.on_lambda();
    let lambda_mode = config.lambda_invoke_mode;
    let port = config.port;
    let grace = config.shutdown;
    let http = config.http.clone();
    let app = startup::build(config)
        .await
        .context("could not start the service")?;
    let abort = app.executor.as_ref().ok().map(|executor| executor.abort());
    let executor = app.executor.as_ref().ok().cloned();
    let router = python_executor::http::router(Arc::new(app));
    if on_lambda {
        tracing::info!("serving the Lambda Runtime API");
        // Once the executions have settled (they end their turns after their answers), as
        // nothing runs once Lambda freezes the environment.
        let healthy = move || -> lambda::Settled {
            let executor = executor.clone();
            Box::pin(async move {
                let Some(executor) = executor else {
                    return true;
                };
                executor.settled().await;
                executor.healthy()
            })
        };
        return lambda::run(router, lambda_mode, healthy)
            .await
            .map_err(|error| anyhow::anyhow!("the Lambda runtime stopped: {error}"));
    }
    let listener = TcpListener::bind(("0.0.0.0", port))
        .await
        .with_context(|| format!("could not listen on port {port}"))?;
    tracing::info!(port, "listening");
    let shutdown = server::shutdown_signal();
    server::serve_with_grace(listener, router, http, shutdown, grace, abort).await?;
    tracing::info!("stopped");
    Ok(())
}
