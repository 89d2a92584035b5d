//! The sandboxes running right now, so two service-wide duties can find them: the orphan
//! reaper must leave their exit statuses to tokio (which waits for its own children), and a
//! shutdown past its grace period must end every one of them.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

/// Pids of sandbox processes spawned by tokio and not yet waited for.
static PIDS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Turns true once, when the service must end every execution now.
static ABORT: LazyLock<watch::Sender<bool>> = LazyLock::new(|| watch::Sender::new(false));

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

/// Resolves when every execution must end now; never, until then.
pub async fn aborted() {
    let mut receiver = ABORT.subscribe();
    // An error means the sender is gone, which a static never is; wait forever then.
    if receiver.wait_for(|abort| *abort).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Ends every running execution (each kills and cleans up its own sandbox) and every one that
/// starts from now on.
pub fn abort_all() {
    ABORT.send_replace(true);
}

pub fn is_aborting() -> bool {
    *ABORT.borrow()
}
