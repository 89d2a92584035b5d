//! Per-key quotas: what the caller of one key name may have in flight at once
//! (`KEY_MAX_CONCURRENCY`) and start per minute (`KEY_RATE_PER_MIN`). Beyond either, the
//! request is answered `429 QUOTA_EXCEEDED` with `Retry-After` before its body is read, while
//! other names' callers are served as usual.
//!
//! The counts are this instance's: each Cloud Run instance and each Lambda environment keeps
//! its own (a platform-wide cap is the platform's: max instances, reserved concurrency).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::KeyQuota;
use crate::execute::api::{ApiError, ErrorCode};

/// Every key name's quota state; names are the configured ones, so this never grows.
#[derive(Debug)]
pub struct Quotas {
    callers: HashMap<String, Caller>,
    quota: KeyQuota,
}

#[derive(Debug)]
struct Caller {
    slots: Option<Arc<Semaphore>>,
    bucket: Option<Mutex<Bucket>>,
}

/// Held while the request is served: its slot, when concurrency is limited.
#[derive(Debug)]
pub struct Admitted {
    _slot: Option<OwnedSemaphorePermit>,
}

/// Which quota refused a request, and when to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `concurrency` or `rate`.
    pub quota: &'static str,
    pub limit: u32,
    pub retry_after_s: u64,
}

impl Quotas {
    /// Quotas for these names, or `None` when `quota` limits nothing.
    pub fn new(names: &[&str], quota: KeyQuota) -> Option<Self> {
        if quota == KeyQuota::default() {
            return None;
        }
        let caller = || Caller {
            slots: quota
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n as usize))),
            bucket: quota
                .rate_per_min
                .map(|n| Mutex::new(Bucket::per_minute(n, Instant::now()))),
        };
        let callers = names
            .iter()
            .map(|name| (name.to_string(), caller()))
            .collect();
        Some(Self { callers, quota })
    }

    /// Admits one request of `name`'s caller, or says which quota refused it. Concurrency is
    /// asked first, so a request refused for it spends none of the rate.
    pub fn admit(&self, name: &str) -> Result<Admitted, Refusal> {
        let Some(caller) = self.callers.get(name) else {
            return Ok(Admitted { _slot: None });
        };
        let slot = match (&caller.slots, self.quota.max_concurrency) {
            (Some(slots), Some(limit)) => match Arc::clone(slots).try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    return Err(Refusal {
                        quota: "concurrency",
                        limit,
                        // Executions usually end within the second.
                        retry_after_s: 1,
                    });
                }
            },
            _ => None,
        };
        if let (Some(bucket), Some(limit)) = (&caller.bucket, self.quota.rate_per_min) {
            let mut bucket = bucket.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(wait) = bucket.take(Instant::now()) {
                return Err(Refusal {
                    quota: "rate",
                    limit,
                    retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
                });
            }
        }
        Ok(Admitted { _slot: slot })
    }
}

impl Refusal {
    pub fn into_error(self, name: &str) -> ApiError {
        let message = match self.quota {
            "concurrency" => format!(
                "the key {name:?} already has {} requests in flight, its limit; retry once one \
                 has been answered",
                self.limit
            ),
            _ => format!(
                "the key {name:?} has used its {} requests per minute; retry after Retry-After \
                 seconds",
                self.limit
            ),
        };
        let mut error = ApiError::new(ErrorCode::QuotaExceeded, message)
            .with("key", name)
            .with("quota", self.quota)
            .with("limit", self.limit);
        error.retry_after_s = Some(self.retry_after_s);
        error
    }
}

/// A token bucket holding a minute's worth of requests, refilled evenly.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    updated: Instant,
}

impl Bucket {
    fn per_minute(rate: u32, now: Instant) -> Self {
        let capacity = f64::from(rate.max(1));
        Self {
            tokens: capacity,
            capacity,
            per_second: capacity / 60.0,
            updated: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / self.per_second,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(max_concurrency: Option<u32>, rate_per_min: Option<u32>) -> KeyQuota {
        KeyQuota {
            max_concurrency,
            rate_per_min,
        }
    }

    #[test]
    fn no_limit_means_no_quotas() {
        assert!(Quotas::new(&["a"], KeyQuota::default()).is_none());
    }

    #[test]
    fn concurrency_is_per_name_and_freed_with_the_request() {
        let quotas = Quotas::new(&["a", "b"], quota(Some(1), None)).expect("quotas");
        let held = quotas.admit("a").expect("first");
        let refused = quotas.admit("a").expect_err("second at once");
        assert_eq!((refused.quota, refused.limit), ("concurrency", 1));
        assert!(quotas.admit("b").is_ok(), "another name is served");
        drop(held);
        assert!(quotas.admit("a").is_ok());
    }

    #[test]
    fn the_rate_refills_over_a_minute() {
        let start = Instant::now();
        let mut bucket = Bucket::per_minute(2, start);
        assert!(bucket.take(start).is_ok() && bucket.take(start).is_ok());
        let wait = bucket.take(start).expect_err("empty");
        assert!((29.9..=30.1).contains(&wait.as_secs_f64()), "{wait:?}");
        assert!(bucket.take(start + Duration::from_secs(31)).is_ok());
    }

    #[test]
    fn a_refusal_is_a_429_with_retry_after() {
        let quotas = Quotas::new(&["a"], quota(None, Some(1))).expect("quotas");
        assert!(quotas.admit("a").is_ok());
        let refusal = quotas.admit("a").expect_err("over the rate");
        assert_eq!(refusal.quota, "rate");
        assert!((59..=60).contains(&refusal.retry_after_s));
        let error = refusal.into_error("a");
        assert_eq!(error.code.status().as_u16(), 429);
        assert_eq!(error.body()["quota"], "rate");
        assert_eq!(error.retry_after_s, Some(refusal.retry_after_s));
    }
}
