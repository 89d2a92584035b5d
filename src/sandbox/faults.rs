//! A sandbox with faults put in, for the tests of what drives sandboxes (the templates'
//! lifecycle): compat's own plans with no isolation layer that needs root or a recent kernel,
//! except that templates fail to start when told to, as a template whose imports crash does.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::compat::CompatSandbox;
use super::plan::{Claim, ForkPlan, LaunchPlan, Sandbox};
use super::{Abort, AtStart, Isolation, Layer, Runner, SandboxError, SandboxKind};
use crate::limits::Limits;

/// What goes wrong, and what was asked for.
#[derive(Debug, Default)]
pub struct Faults {
    /// How many of the next templates fail to start, whatever they preload.
    pub failing_starts: AtomicU32,
    /// A template preloading any of these fails to start, every time.
    pub failing_modules: Mutex<Vec<String>>,
    /// The preload of every template asked for, in order.
    pub templates_asked: Mutex<Vec<Vec<String>>>,
}

impl Faults {
    /// Whether the template preloading `preload` should fail, counting it as asked for.
    fn fails(&self, preload: &[String]) -> bool {
        lock(&self.templates_asked).push(preload.to_vec());
        let failing = lock(&self.failing_modules);
        if preload.iter().any(|module| failing.contains(module)) {
            return true;
        }
        let take_one = |left: u32| left.checked_sub(1);
        self.failing_starts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take_one)
            .is_ok()
    }
}

#[derive(Debug)]
struct FaultySandbox {
    inner: CompatSandbox,
    faults: Arc<Faults>,
}

impl Sandbox for FaultySandbox {
    fn kind(&self) -> SandboxKind {
        self.inner.kind()
    }

    fn isolation(&self) -> Isolation {
        self.inner.isolation()
    }

    fn plan(&self, limits: &Limits) -> Result<LaunchPlan, SandboxError> {
        self.inner.plan(limits)
    }

    fn template_plan(
        &self,
        limits: &Limits,
        preload: &[String],
    ) -> Result<LaunchPlan, SandboxError> {
        if !self.faults.fails(preload) {
            return self.inner.template_plan(limits, preload);
        }
        // Exits at once, before it could say it is ready: a template that failed to start.
        Ok(LaunchPlan {
            program: "/bin/false".into(),
            args: Vec::new(),
            env: Vec::new(),
            hardening: None,
            after_spawn: None,
            claim: Claim::default(),
        })
    }

    fn fork_plan(&self, limits: &Limits) -> Result<ForkPlan, SandboxError> {
        self.inner.fork_plan(limits)
    }
}

impl Runner {
    /// compat with only no_new_privs, from `layer`, failing as `faults` say.
    pub fn with_faults(layer: &Layer, faults: Arc<Faults>) -> Result<Self, SandboxError> {
        let isolation = Isolation {
            no_new_privs: true,
            ..Isolation::default()
        };
        let inner = CompatSandbox::new(layer, isolation, AtStart::HostsOnly)?;
        Ok(Self {
            sandbox: Arc::new(FaultySandbox { inner, faults }),
            cgroups: None,
            abort: Abort::default(),
            settling: super::Settling::default(),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
