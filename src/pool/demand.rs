//! Recent demand for one kind of warm sandbox, which sets how many to keep ready.
//!
//! Keeping a sandbox warm costs its start (for the data pool, about half a second of CPU to
//! import numpy and pandas); one that expires unused is pure waste. So each pool holds as many
//! as were asked for in the recent window, up to its size: none for a kind nobody uses, and
//! enough for a steady stream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Demand {
    window: Duration,
    requests: VecDeque<Instant>,
}

impl Demand {
    /// Starts as if one request had just come, so a new service begins with one warm sandbox
    /// of each kind instead of making the first requests pay.
    pub fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            requests: VecDeque::from([now]),
        }
    }

    pub fn record(&mut self, now: Instant) {
        self.forget_before(now);
        self.requests.push_back(now);
    }

    /// How many warm sandboxes to keep, at most `size`.
    pub fn target(&mut self, now: Instant, size: usize) -> usize {
        self.forget_before(now);
        self.requests.len().min(size)
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .requests
            .front()
            .is_some_and(|&seen| now.duration_since(seen) > self.window)
        {
            self.requests.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_one_and_decays_to_none() {
        let start = Instant::now();
        let mut demand = Demand::new(Duration::from_secs(60), start);
        assert_eq!(demand.target(start, 4), 1);
        assert_eq!(demand.target(start + Duration::from_secs(61), 4), 0);
    }

    #[test]
    fn grows_with_requests_up_to_the_size() {
        let start = Instant::now();
        let mut demand = Demand::new(Duration::from_secs(60), start);
        for second in 1..10 {
            demand.record(start + Duration::from_secs(second));
        }
        assert_eq!(demand.target(start + Duration::from_secs(10), 4), 4);
        assert_eq!(demand.target(start + Duration::from_secs(10), 0), 0);
    }
}
