//! What operators see of the service, on each platform's own terms: log lines in the shape
//! its console reads ([`logs`]), the trace a request belongs to ([`trace`]), and the figures
//! (`GET /metrics`, or CloudWatch's Embedded Metric Format on Lambda: [`metrics`]).
//!
//! Below the front doors and the executor, which both record into it; it knows neither.

pub mod logs;
pub mod metrics;
pub mod trace;
