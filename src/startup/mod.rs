//! Building the service from its configuration: find the layer, prepare cgroups, probe the
//! platform, pick the sandbox and prove it works. Decided once, before the first request.
//!
//! A platform that cannot give the configured minimum of isolation still gets a service: one
//! that answers every execution with `SANDBOX_ERROR` and says why in `/health`, rather than one
//! that runs scripts unconfined or dies without explanation.

pub mod cli;
pub mod platform;
pub mod probe;
pub mod telemetry;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Map;
use thiserror::Error;

use crate::config::{Config, SandboxChoice};
use crate::execute::answer::interpret;
use crate::execute::api::ExecuteRequest;
use crate::execute::sessions::Sessions;
use crate::execute::Executor;
use crate::execute::{Category, Unavailable};
use crate::http::App;
use crate::observe::metrics::emf::Emf;
use crate::observe::metrics::Metrics;
use crate::packages::{Packages, PackagesError};
use crate::sandbox::{
    AtStart, CgroupError, CgroupRoot, Layer, LayerError, Runner, SandboxError, SandboxKind,
};
use crate::startup::probe::Report;
use platform::{Choice, Platform, SystemProbes};

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// The start-up self-test: the smallest script that proves the sandbox runs Python end to end.
const SELF_TEST_SCRIPT: &str = "def main():\n    return 'ok'\n";
const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("sessions cannot work as configured: {0}")]
    Sessions(String),
    #[error(transparent)]
    Packages(#[from] PackagesError),
}

/// What start-up found and proved: the platform's layers and the sandbox that passed its
/// self-test, or why none did. [`build`] turns it into the service; the `probe` subcommand
/// into a report. One path for both, so the probe says exactly what serving would do.
#[derive(Debug)]
pub struct Probed {
    pub layer: Layer,
    pub platform: Platform,
    /// The cgroup hierarchy executions get their own cgroup in, or why there is none.
    pub cgroups: Result<CgroupRoot, CgroupError>,
    /// The sandbox scripts will run in, or why no script may run here.
    pub sandbox: Result<Runner, Unavailable>,
    /// Why nsjail was passed over for compat under SANDBOX=auto, when it was.
    pub fallback: Option<String>,
}

/// Finds the layer, prepares cgroups, probes the platform, picks the sandbox and self-tests it.
pub async fn probe(config: &Config) -> Result<Probed, StartupError> {
    let layer = Layer::locate(config.layer_dir.as_deref())?;
    let cgroups = usable_cgroups(config).await;
    let platform = Platform::probe(&SystemProbes, cgroups.is_ok());
    tracing::debug!(?platform, "platform probed");
    let (sandbox, fallback) =
        match platform::choose(config.sandbox, &platform, &config.min_isolation) {
            Ok(choice) => {
                proven_sandbox(config, &layer, cgroups.as_ref().ok(), &platform, choice).await
            }
            Err(refusal) => (Err(refusal.into()), None),
        };
    Ok(Probed {
        layer,
        platform,
        cgroups,
        sandbox,
        fallback,
    })
}

/// The service, ready to serve. Logs the same summary `probe` prints, so a platform's answer
/// shows in the start-up log too (on Lambda, in the init log).
pub async fn build(config: Config) -> Result<App, StartupError> {
    let sessions =
        Sessions::new(&config.sessions, &config.offload).map_err(StartupError::Sessions)?;
    let probed = probe(&config).await?;
    Report::new(&probed, &config).log();
    let metrics = Arc::new(Metrics::new(config.metrics.emf));
    // Once, before serving: a few milliseconds of reading metadata files (on Lambda, in the
    // init phase), never again on a request.
    let packages = Packages::read(&probed.layer.python_dir())?;
    tracing::debug!(python = %packages.python, count = packages.packages.len(), "runtime packages read");
    let executor = probed
        .sandbox
        .map(|runner| Executor::start(runner, &config, &packages, sessions, Arc::clone(&metrics)));
    // Before serving: on Lambda this is the init phase, which is not frozen, so the imports are
    // paid for here rather than by the first invocation.
    if let Ok(executor) = &executor {
        let observed = executor.clone();
        metrics.observe_state(move || observed.state());
        executor.wait_for_templates().await;
    }
    let settings = &config.metrics;
    let emf = settings.emf.then(|| {
        let (namespace, function) = (&settings.emf_namespace, &settings.emf_function);
        Emf::new(Arc::clone(&metrics), namespace, function)
    });
    Ok(App {
        config,
        executor,
        metrics,
        emf,
        packages,
    })
}

/// The cgroup hierarchy, if this process can really create an execution's cgroup in it: the
/// service's parent directory may exist (made by an earlier run as root) yet not be writable.
async fn usable_cgroups(config: &Config) -> Result<CgroupRoot, CgroupError> {
    let trial = CgroupRoot::detect(Path::new(CGROUP_MOUNT))
        .and_then(|root| root.create(&config.limits).map(|cgroup| (root, cgroup)));
    match trial {
        Ok((root, cgroup)) => {
            cgroup.destroy().await;
            Ok(root)
        }
        Err(error) => {
            tracing::warn!(%error, "no per-execution cgroups: memory and process limits fall back to rlimits");
            Err(error)
        }
    }
}

/// The sandbox for `choice`, self-tested, and why nsjail was passed over if it was: under
/// SANDBOX=auto a failing nsjail (a container that allows user namespaces but masks /proc,
/// say) falls back to compat when that still meets the minimum.
async fn proven_sandbox(
    config: &Config,
    layer: &Layer,
    cgroups: Option<&CgroupRoot>,
    platform: &Platform,
    choice: Choice,
) -> (Result<Runner, Unavailable>, Option<String>) {
    // A Lambda reset starts the runtime again in the same environment, /tmp as it was left.
    let at_start = if config.on_lambda() {
        AtStart::EarlierRunsPossible
    } else {
        AtStart::HostsOnly
    };
    let open = |choice: Choice| {
        Runner::open(
            choice.kind,
            layer,
            choice.isolation,
            cgroups.cloned(),
            at_start,
        )
    };
    let sandbox = self_tested(open(choice), config).await;
    let reason = match (sandbox, config.sandbox, choice.kind) {
        (Err(reason), SandboxChoice::Auto, SandboxKind::Nsjail) => reason,
        (sandbox, ..) => return (sandbox, None),
    };
    tracing::warn!(%reason, "nsjail failed its self-test; trying compat");
    let mut platform = *platform;
    platform.user_namespaces = false;
    let fallback = match platform::choose(SandboxChoice::Auto, &platform, &config.min_isolation) {
        Ok(fallback) => self_tested(open(fallback), config).await,
        Err(refusal) => Err(refusal.into()),
    };
    (fallback, Some(reason.detail))
}

/// Runs the smallest script that proves the sandbox runs Python end to end.
async fn self_tested(
    runner: Result<Runner, SandboxError>,
    config: &Config,
) -> Result<Runner, Unavailable> {
    let setup = |detail: String| Unavailable::new(Category::Setup, detail);
    let failed = |detail: String| Unavailable::new(Category::SelfTest, detail);
    let runner = runner.map_err(|error| setup(error.to_string()))?;
    let name = runner.kind().as_str();
    let request = ExecuteRequest {
        script: SELF_TEST_SCRIPT.into(),
        args: Map::new(),
        timeout: None,
        files: Vec::new(),
        mode: crate::execute::api::Mode::Script,
        save_figures: false,
        session: None,
        caller: crate::execute::api::ANONYMOUS.to_owned(),
    };
    let limits = config.limits.with_wall_at_most(Some(SELF_TEST_TIMEOUT));
    let job = crate::execute::job::for_request(&request, limits, None);
    let started = runner
        .start(&job.limits)
        .map_err(|error| setup(format!("the {name} sandbox does not start: {error}")))?;
    let execution = started.run(&job).await;
    match interpret(&execution, &job.limits) {
        Ok(response) if response.result.get() == "\"ok\"" => Ok(runner),
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
