//! Building the service from its configuration: find the layer, prepare cgroups, pick the
//! sandbox. Decided once, before the first request.

use std::path::Path;
use std::sync::Arc;

use thiserror::Error;

use crate::app::App;
use crate::config::{Config, SandboxChoice};
use crate::executor::Executor;
use crate::layer::{Layer, LayerError};
use crate::sandbox::cgroup::CgroupRoot;
use crate::sandbox::nsjail::NsjailSandbox;
use crate::sandbox::{Sandbox, SandboxError};

const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

#[derive(Debug, Error)]
pub enum StartupError {
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

/// The service, ready to serve.
pub fn build(config: Config) -> Result<App, StartupError> {
    let layer = Layer::locate(config.layer_dir.as_deref())?;
    let cgroups = match CgroupRoot::detect(Path::new(CGROUP_MOUNT)) {
        Ok(root) => Some(root),
        Err(error) => {
            tracing::warn!(%error, "no per-execution cgroups: memory and process limits fall back to rlimits");
            None
        }
    };
    let sandbox: Arc<dyn Sandbox> = match config.sandbox {
        SandboxChoice::Auto | SandboxChoice::Nsjail => {
            Arc::new(NsjailSandbox::new(&layer, cgroups.is_some())?)
        }
        SandboxChoice::Compat => {
            return Err(
                SandboxError::Unavailable("the compat sandbox is not built yet".into()).into(),
            )
        }
    };
    tracing::info!(
        layer = %layer.root.display(),
        sandbox = sandbox.kind().as_str(),
        cgroup = cgroups.as_ref().map_or("none", CgroupRoot::version),
        "sandbox ready"
    );
    let executor = Executor::start(sandbox, cgroups, &config);
    Ok(App {
        config,
        executor: Ok(executor),
    })
}
