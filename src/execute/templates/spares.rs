//! Executions forked ahead of their request. Each template keeps `SPARE_FORKS` children forked
//! and isolated, each waiting for a job: a fork and the isolation steps, never an import. A
//! request takes one and its replacement starts at once, while the taken one runs, so nothing
//! is started after a request ends (when Lambda may freeze the process and Cloud Run throttles
//! it); a replacement a freeze interrupted is finished by the next request, which waits for it.
//!
//! Why ahead of time at all: on a small VM, a request that forks for itself pays for the fork of
//! a 150 MB template, the copy-on-write faults that follow, several cross-CPU wake-ups and the
//! isolation steps; 5 to 20 ms, where handing a job to a waiting process costs a few. A spare
//! is an execution like any other: its own uid, cgroup, namespaces and scratch space, waiting
//! for the job on its stdin.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::task::JoinHandle;

use super::Serving;
use crate::limits::Limits;
use crate::sandbox::{SandboxError, Started};

type Forking = JoinHandle<Result<Started, SandboxError>>;

#[derive(Debug)]
pub struct Spares {
    wanted: usize,
    forking: Mutex<VecDeque<Forking>>,
}

impl Spares {
    pub fn new(wanted: usize) -> Self {
        Self {
            wanted,
            forking: Mutex::new(VecDeque::new()),
        }
    }

    /// Starts forks from `template` until `wanted` are kept (done or in progress).
    pub fn fill(&self, template: &Serving, limits: &Limits) {
        let mut forking = self.lock();
        while forking.len() < self.wanted {
            let template = template.clone();
            let limits = limits.clone();
            forking.push_back(tokio::spawn(async move { template.fork(&limits).await }));
        }
    }

    /// The oldest spare, once forked (waited for if it is still isolating itself), after
    /// starting its replacement; `None` when there is none or it died while it waited.
    pub async fn take(&self, template: &Serving, limits: &Limits) -> Option<Started> {
        let oldest = self.lock().pop_front();
        self.fill(template, limits);
        let forked = oldest?.await.ok()?;
        match forked {
            Ok(mut started) => started.is_alive().then_some(started),
            Err(error) => {
                tracing::warn!(%error, "a spare fork failed");
                None
            }
        }
    }

    /// Forgets every spare (their template died): dropped, each is killed.
    pub fn clear(&self) {
        for forking in self.lock().drain(..) {
            // A fork still in progress ends with its task; a finished one is killed when the
            // task's result is dropped.
            forking.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Forking>> {
        self.forking.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
