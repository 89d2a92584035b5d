//! Bounded concurrency: at most N executions at once, a bounded wait for a slot, then
//! `OVERLOADED` with `Retry-After` instead of an unbounded queue. A service shutting down past
//! its grace answers the requests still waiting at once, the same way: another instance can
//! serve them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::execute::api::{ApiError, ErrorCode};
use crate::sandbox::Abort;

#[derive(Clone, Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    capacity: usize,
    queue_wait: Duration,
    /// The service's shutdown past its grace.
    abort: Abort,
}

impl Admission {
    pub fn new(capacity: usize, queue_wait: Duration, abort: Abort) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue_wait,
            abort,
        }
    }

    /// A slot, held for as long as the permit lives, or `OVERLOADED` after the queue wait (or
    /// at once when the service is ending every execution).
    pub async fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let waiting = Arc::clone(&self.slots).acquire_owned();
        tokio::select! {
            waited = tokio::time::timeout(self.queue_wait, waiting) => match waited {
                Ok(Ok(permit)) => Ok(permit),
                _ => Err(self.overloaded()),
            },
            () = self.abort.aborted() => Err(self.shutting_down()),
        }
    }

    fn shutting_down(&self) -> ApiError {
        let mut error = ApiError::new(
            ErrorCode::Overloaded,
            "the service is shutting down; retry, and another instance will answer",
        );
        error.retry_after_s = Some(1);
        error
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
        let admission = Admission::new(1, Duration::from_millis(20), Abort::default());
        let held = admission.admit().await.expect("first slot");
        let refused = admission.admit().await.expect_err("no slot left");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert_eq!(refused.retry_after_s, Some(1));
        drop(held);
        assert!(admission.admit().await.is_ok());
    }

    #[tokio::test]
    async fn a_request_still_waiting_when_the_service_ends_is_answered_at_once() {
        let abort = Abort::default();
        let admission = Admission::new(1, Duration::from_secs(60), abort.clone());
        let _held = admission.admit().await.expect("first slot");
        let waiting = tokio::spawn({
            let admission = admission.clone();
            async move { admission.admit().await }
        });
        abort.abort_all();
        let refused = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered at once")
            .expect("joined")
            .expect_err("no slot");
        assert_eq!(refused.code, ErrorCode::Overloaded);
        assert!(refused.message.contains("shutting down"));
    }
}
