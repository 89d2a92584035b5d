//! Waiting for something to happen: a condition checked until it holds or a deadline passes.
//! Tests synchronize this way, never by sleeping for a time chosen to be long enough (too short
//! on a busy machine, wasted on an idle one).

// Each crate that mounts this module uses only part of it.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// How long to pause between two checks: short next to every deadline here, long enough that
/// the checking itself costs next to nothing.
const BETWEEN_CHECKS: Duration = Duration::from_millis(50);

/// Checks `condition` until it gives a value or `within` has passed (it is checked once more at
/// the deadline); the value, if it came. Blocks the thread: for code outside an async runtime,
/// or starting a process before anything else runs.
pub fn until<T>(within: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        let found = condition();
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(BETWEEN_CHECKS);
    }
}

/// [`until`] for an async condition, pausing without blocking the runtime.
pub async fn until_async<T, F, Fut>(within: Duration, mut condition: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        let found = condition().await;
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        tokio::time::sleep(BETWEEN_CHECKS).await;
    }
}
