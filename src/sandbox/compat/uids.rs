//! The uids compat executions run under when the service is root: one per execution, handed
//! out again only after the teardown of its previous execution saw none of its processes left.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::child::Identity;
use super::{UID_BASE, UID_SPAN};

/// One pool for the whole process: two compat sandboxes in one service (a self-test's and the
/// real one, or a test's several services) must never hand out the same uid at once.
pub(super) static UIDS: std::sync::LazyLock<Arc<UidPool>> = std::sync::LazyLock::new(Arc::default);

/// Hands out the per-execution uids in turn, never one still held by an execution.
#[derive(Debug, Default)]
pub(super) struct UidPool {
    state: Mutex<UidState>,
}

#[derive(Debug, Default)]
struct UidState {
    next: u32,
    held: HashSet<u32>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct HeldUid {
    pub identity: Identity,
}

impl UidPool {
    pub fn take(&self) -> HeldUid {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // More executions than uids in the span cannot run at once (MAX_CONCURRENCY and the
        // pool are far below it), so a free uid is always found.
        for _ in 0..UID_SPAN {
            let id = UID_BASE + state.next % UID_SPAN;
            state.next = state.next.wrapping_add(1);
            if state.held.insert(id) {
                return HeldUid {
                    identity: Identity { uid: id, gid: id },
                };
            }
        }
        let id = UID_BASE + state.next % UID_SPAN;
        HeldUid {
            identity: Identity { uid: id, gid: id },
        }
    }

    fn release(&self, uid: u32) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.held.remove(&uid);
    }
}

/// Gives a uid back when the execution's teardown drops it: after the sandbox was killed and
/// reaped, and (see `process::teardown`) its process group was seen empty.
#[derive(Debug)]
pub(super) struct UidRelease {
    pub uids: Arc<UidPool>,
    pub uid: u32,
}

impl Drop for UidRelease {
    fn drop(&mut self) {
        self.uids.release(self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_rotate_and_a_held_uid_is_never_handed_out_again() {
        let pool = UidPool::default();
        let first = pool.take().identity.uid;
        assert_eq!(first, UID_BASE);
        assert_eq!(pool.take().identity.uid, UID_BASE + 1);
        pool.state.lock().expect("lock").next = UID_SPAN;
        // UID_BASE is still held: the pool skips it.
        assert_eq!(pool.take().identity.uid, UID_BASE + 2);
        pool.release(first);
        pool.state.lock().expect("lock").next = UID_SPAN;
        assert_eq!(pool.take().identity.uid, UID_BASE);
    }
}
