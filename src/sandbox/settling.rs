//! What executions still do after their answers, counted so it can be waited for. Where
//! executions take turns on shared places (compat on Lambda), the end of a turn (the script's
//! processes letting go, the scrub) runs after the answer is sent, off its path, but must
//! be over before Lambda freezes the environment: the Lambda entry point waits for it between
//! posting a response and asking for the next event, when the platform has the answer and
//! nothing is frozen yet.

use std::sync::Arc;

use tokio::sync::watch;

/// One service's count of executions still ending after their answers; cloning shares it.
#[derive(Clone, Debug)]
pub struct Settling(Arc<watch::Sender<usize>>);

impl Default for Settling {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Settling {
    /// Counts one execution as still ending until the returned guard is dropped.
    pub fn begin(&self) -> Unsettled {
        self.0.send_modify(|count| *count += 1);
        Unsettled(Arc::clone(&self.0))
    }

    /// Resolves once no execution is still ending after its answer.
    pub async fn settled(&self) {
        let mut receiver = self.0.subscribe();
        // An error means every sender is gone, which cannot happen while we hold one.
        let _ = receiver.wait_for(|count| *count == 0).await;
    }
}

/// Held by the task that ends an execution after its answer.
#[derive(Debug)]
pub struct Unsettled(Arc<watch::Sender<usize>>);

impl Drop for Unsettled {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_waits_for_every_guard() {
        let settling = Settling::default();
        settling.settled().await;
        let first = settling.begin();
        let second = settling.begin();
        let waiter = tokio::spawn({
            let settling = settling.clone();
            async move { settling.settled().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one execution is still ending");
        drop(second);
        waiter.await.expect("settled once both are dropped");
    }
}
