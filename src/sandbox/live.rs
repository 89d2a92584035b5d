//! The sandboxes running right now, and how to end them all.
//!
//! The pid registry is process-wide on purpose: reaping is (one reaper per process waits for
//! every child no one else waits for, whichever service started it), and it must leave the
//! exit statuses of tokio's own children to tokio. The abort, which ends one service's
//! executions at a shutdown past its grace period, is a handle ([`Abort`]) each service holds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// Pids of sandbox processes spawned by tokio and not yet waited for.
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Process groups of executions that have been handed their job and are not torn down yet.
static RUNNING: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// The process groups of the executions running now (see [`Running`]).
pub fn running_sessions() -> BTreeSet<i32> {
    RUNNING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Marks an execution's process group as running until dropped (after its teardown).
#[derive(Debug)]
pub struct Running(i32);

impl Running {
    pub fn new(session: i32) -> Self {
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session);
        Self(session)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
    }
}

/// Held while spawning a sandbox and recording its pid, and while the reaper looks for
/// orphans, so the reaper never sees one of ours before it is recorded.
pub fn lock() -> MutexGuard<'static, BTreeSet<u32>> {
    PIDS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets a pid once tokio has waited for it (or will, after a drop).
#[derive(Debug)]
pub struct Registration(u32);

impl Registration {
    /// Records `pid`; the caller holds `pids` (from [`lock`]) since before the spawn.
    pub fn new(pids: &mut BTreeSet<u32>, pid: u32) -> Self {
        pids.insert(pid);
        Self(pid)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock().remove(&self.0);
    }
}

/// Ends every execution of one service at once (a shutdown past its grace period): each
/// execution waits on it, kills its sandbox and cleans up. One per service, passed down with its
/// [`Runner`](super::Runner); cloning shares it.
#[derive(Clone, Debug)]
pub struct Abort(Arc<watch::Sender<bool>>);

impl Default for Abort {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl Abort {
    /// Ends every running execution, and every one that starts from now on.
    pub fn abort_all(&self) {
        self.0.send_replace(true);
    }

    /// Resolves when every execution must end now; never, until then.
    pub async fn aborted(&self) {
        let mut receiver = self.0.subscribe();
        // An error means every sender is gone, which cannot happen while we hold one.
        if receiver.wait_for(|abort| *abort).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
