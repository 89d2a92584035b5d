//! Building the service from its configuration: find the layer, prepare cgroups, probe the
//! platform, pick the sandbox and prove it works. Decided once, before the first request.
//!
//! A platform that cannot give the configured minimum of isolation still gets a service: one
//! that answers every execution with `SANDBOX_ERROR` and says why in `/health`, rather than one
//! that runs scripts unconfined or dies without explanation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use thiserror::Error;

use crate::app::App;
use crate::config::{Config, SandboxChoice};
use crate::executor::Executor;
use crate::layer::{Layer, LayerError};
use crate::platform::{self, Choice, Platform, SystemProbes};
use crate::sandbox::cgroup::CgroupRoot;
use crate::sandbox::compat::CompatSandbox;
use crate::sandbox::nsjail::NsjailSandbox;
use crate::sandbox::outcome::interpret;
use crate::sandbox::{process, Job, Sandbox, SandboxError, SandboxKind};
use crate::unavailable::{Category, Unavailable};

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// The start-up self-test: the smallest script that proves the sandbox runs Python end to end.
const SELF_TEST_SCRIPT: &str = "def main():\n    return 'ok'\n";
const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// The service, ready to serve.
pub async fn build(config: Config) -> Result<App, StartupError> {
    let layer = Layer::locate(config.layer_dir.as_deref())?;
    let cgroups = usable_cgroups(&config).await;
    let platform = Platform::probe(&SystemProbes, cgroups.is_some());
    tracing::info!(?platform, "platform probed");
    let executor = match platform::choose(config.sandbox, &platform, &config.min_isolation) {
        Ok(choice) => start_executor(&config, &layer, cgroups, &platform, choice).await,
        Err(reason) => Err(Unavailable::new(Category::Isolation, reason)),
    };
    match &executor {
        Ok(executor) => tracing::info!(
            layer = %layer.root.display(),
            sandbox = executor.kind().as_str(),
            isolation = %executor.isolation(),
            "sandbox ready"
        ),
        Err(reason) => tracing::error!(
            %reason,
            category = reason.category.as_str(),
            "no sandbox: every execution will be refused"
        ),
    }
    Ok(App { config, executor })
}

/// The cgroup hierarchy, if this process can really create an execution's cgroup in it: the
/// service's parent directory may exist (made by an earlier run as root) yet not be writable.
async fn usable_cgroups(config: &Config) -> Option<CgroupRoot> {
    let trial = CgroupRoot::detect(Path::new(CGROUP_MOUNT))
        .and_then(|root| root.create(&config.limits).map(|cgroup| (root, cgroup)));
    match trial {
        Ok((root, cgroup)) => {
            cgroup.destroy().await;
            Some(root)
        }
        Err(error) => {
            tracing::warn!(%error, "no per-execution cgroups: memory and process limits fall back to rlimits");
            None
        }
    }
}

/// The executor for `choice`, its sandbox self-tested before the pool starts. Under
/// SANDBOX=auto a failing nsjail (a container that allows user namespaces but masks /proc, say)
/// falls back to compat when that still meets the minimum.
async fn start_executor(
    config: &Config,
    layer: &Layer,
    cgroups: Option<CgroupRoot>,
    platform: &Platform,
    choice: Choice,
) -> Result<Executor, Unavailable> {
    let mut sandbox = self_tested(sandbox(layer, choice), cgroups.as_ref(), config).await;
    if let (Err(reason), SandboxChoice::Auto, SandboxKind::Nsjail) =
        (&sandbox, config.sandbox, choice.kind)
    {
        tracing::warn!(%reason, "nsjail failed its self-test; trying compat");
        let mut platform = *platform;
        platform.user_namespaces = false;
        let fallback = platform::choose(SandboxChoice::Auto, &platform, &config.min_isolation)
            .map_err(|reason| Unavailable::new(Category::Isolation, reason))?;
        sandbox = self_tested(self::sandbox(layer, fallback), cgroups.as_ref(), config).await;
    }
    Ok(Executor::start(sandbox?, cgroups, config))
}

fn sandbox(layer: &Layer, choice: Choice) -> Result<Arc<dyn Sandbox>, SandboxError> {
    Ok(match choice.kind {
        SandboxKind::Nsjail => Arc::new(NsjailSandbox::new(layer, choice.isolation)?),
        SandboxKind::Compat => Arc::new(CompatSandbox::new(layer, choice.isolation)?),
    })
}

/// Runs the smallest script that proves the sandbox runs Python end to end.
async fn self_tested(
    sandbox: Result<Arc<dyn Sandbox>, SandboxError>,
    cgroups: Option<&CgroupRoot>,
    config: &Config,
) -> Result<Arc<dyn Sandbox>, Unavailable> {
    let setup = |detail: String| Unavailable::new(Category::Setup, detail);
    let failed = |detail: String| Unavailable::new(Category::SelfTest, detail);
    let sandbox = sandbox.map_err(|error| setup(error.to_string()))?;
    let name = sandbox.kind().as_str();
    let job = Job {
        script: SELF_TEST_SCRIPT.into(),
        args: Map::new(),
        limits: config.limits.with_wall_at_most(Some(SELF_TEST_TIMEOUT)),
    };
    let started = process::start(&*sandbox, cgroups, &job.limits, &[])
        .map_err(|error| setup(format!("the {name} sandbox does not start: {error}")))?;
    let execution = started.run(&job).await;
    match interpret(&execution, &job.limits) {
        Ok(response) if response.result.get() == "\"ok\"" => Ok(sandbox),
        Ok(response) => Err(failed(format!(
            "the {name} sandbox's self-test returned {} instead of \"ok\"",
            response.result.get()
        ))),
        Err(error) => Err(failed(format!(
            "the {name} sandbox failed its self-test: {} ({})",
            error.message,
            error.code.as_str()
        ))),
    }
}
