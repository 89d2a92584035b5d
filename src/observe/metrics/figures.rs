//! What is measured, as plain values: one request, one execution, the service's state at a
//! moment, and what happened since the last Embedded Metric Format line ([`Window`]). The
//! layers that measure fill these in; [`super::Metrics`] turns them into Prometheus families.

use std::time::Duration;

/// One answered request, whatever its route.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestFigures {
    /// The route it matched (`/execute`), or `unmatched`.
    pub route: String,
    /// `OK`, or the error code it was answered with.
    pub code: &'static str,
    /// The name of the key it showed; empty when none was asked for or none matched.
    pub key: String,
    pub duration: Duration,
    pub request_id: String,
}

/// One execution that got a slot (or waited for one in vain), from either front door.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionFigures {
    /// `OK`, or the error code of its answer.
    pub code: &'static str,
    /// `nsjail` or `compat`.
    pub sandbox: &'static str,
    pub queue_wait: Duration,
    /// From its slot to its answer.
    pub run: Duration,
    /// The script's CPU time and peak memory, where the platform measured them.
    pub cpu: Option<Duration>,
    pub peak_memory_bytes: Option<u64>,
    /// How its sandbox came to be; `None` when it never got one (no slot, refused).
    pub start: Option<Start>,
}

/// Where an execution's sandbox came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Forked from the named template (`plain`, `data`); `spare`: forked ahead of the request.
    Template { name: &'static str, spare: bool },
    /// Started cold, with a fresh interpreter.
    Cold(ColdReason),
}

/// Why an execution started cold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColdReason {
    /// `TEMPLATES=0`.
    Disabled,
    /// Its template was not serving (starting, restarting, or past its span).
    TemplateDown,
    /// Forking from its template failed.
    ForkFailed,
}

impl ColdReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "templates_off",
            Self::TemplateDown => "template_down",
            Self::ForkFailed => "fork_failed",
        }
    }
}

/// The service's state at one moment, asked of the executor when figures are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub in_flight: usize,
    pub capacity: usize,
    pub templates: Vec<TemplateState>,
}

/// One template set's counts since the service started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateState {
    pub name: &'static str,
    /// Times its template died and was started again.
    pub restarts: u64,
    /// Times it was replaced at the end of its span.
    pub recycles: u64,
    /// Whether it has grown by `PRELOAD_ON_DEMAND` (or tried to).
    pub grown: bool,
}

impl State {
    pub fn restarts(&self) -> u64 {
        self.templates.iter().map(|t| t.restarts).sum()
    }

    pub fn growths(&self) -> u64 {
        self.templates.iter().filter(|t| t.grown).count() as u64
    }
}

/// Everything recorded since the last Embedded Metric Format line: on Lambda, one invocation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    pub requests: Vec<RequestFigures>,
    pub executions: Vec<ExecutionFigures>,
    pub overloaded: u64,
    pub quota_refusals: u64,
    pub offloads: u64,
    pub offload_failures: u64,
}
