//! Bounded concurrency: at most N executions at once, a bounded wait for a slot, then
//! `OVERLOADED` with `Retry-After` instead of an unbounded queue.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::execute::api::{ApiError, ErrorCode};

#[derive(Clone, Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    queue_wait: Duration,
}

impl Admission {
    pub fn new(capacity: usize, queue_wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue_wait,
        }
    }

    /// A slot, held for as long as the permit lives, or `OVERLOADED` after the queue wait.
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let waiting = Arc::clone(&self.slots).acquire_owned();
        match tokio::time::timeout(self.queue_wait, waiting).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(self.overloaded()),
        }
    }

    fn overloaded(&self) -> ApiError {
        let mut error = ApiError::new(
            ErrorCode::Overloaded,
            format!(
                "all {} execution slots stayed busy for {} ms; retry shortly",
                self.capacity,
                self.queue_wait.as_millis()
            ),
        );
        // Executions usually take well under a second; one second is a fair first retry.
        error.retry_after_s = Some(1);
        error
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_service_answers_overloaded_with_retry_after() {
        let admission = Admission::new(1, Duration::from_millis(20));
        let held = admission.admit().await.expect("first slot");
        let refused = admission.admit().await.expect_err("no slot left");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert_eq!(refused.retry_after_s, Some(1));
        drop(held);
        assert!(admission.admit().await.is_ok());
    }
}
