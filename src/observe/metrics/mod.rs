//! The service's figures: requests by route, outcome and key name, executions by outcome and
//! sandbox, the latencies (queue wait, execution, whole request), template serves and cold
//! starts, template restarts and growth, in-flight executions and capacity, OVERLOADED and
//! quota refusals, scripts' CPU and peak memory, offloads.
//!
//! Each is recorded once, where it happens, into Prometheus families (the `prometheus` crate)
//! that `GET /metrics` renders in the Prometheus text format. Where nothing scrapes (Lambda),
//! the same records also go into a [`Window`] that each invocation drains into one Embedded
//! Metric Format line ([`emf`]). State that is not an event (in flight, capacity, template
//! restarts) is asked of the executor when the figures are read ([`Metrics::observe_state`]).

pub mod emf;
mod families;
pub mod figures;

use std::sync::{Mutex, OnceLock, PoisonError};

use prometheus::{Encoder, Registry, TextEncoder};

use families::Families;

pub use figures::{
    ColdReason, ExecutionFigures, RequestFigures, Start, State, TemplateState, Window,
};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type StateSource = Box<dyn Fn() -> State + Send + Sync>;

/// The figures of one service.
pub struct Metrics {
    registry: Registry,
    families: Families,
    state: OnceLock<StateSource>,
    /// Only where EMF lines are written: otherwise nothing drains it.
    window: Option<Mutex<Window>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The families, registered; `window`: keep a [`Window`] for EMF lines too.
    pub fn new(window: bool) -> Self {
        let registry = Registry::new();
        let families = Families::register(&registry);
        Self {
            registry,
            families,
            state: OnceLock::new(),
            window: window.then(|| Mutex::new(Window::default())),
        }
    }

    /// Where the service's state is read from when figures are (the first call wins).
    pub fn observe_state(&self, source: impl Fn() -> State + Send + Sync + 'static) {
        let _ = self.state.set(Box::new(source));
    }

    /// The state now (empty before [`Self::observe_state`]).
    pub fn state(&self) -> State {
        self.state.get().map(|source| source()).unwrap_or_default()
    }

    pub fn request(&self, request: RequestFigures) {
        let f = &self.families;
        let labels = [request.route.as_str(), request.code, request.key.as_str()];
        f.requests.with_label_values(&labels).inc();
        let route = [request.route.as_str()];
        let seconds = request.duration.as_secs_f64();
        f.request_seconds.with_label_values(&route).observe(seconds);
        self.in_window(|window| window.requests.push(request));
    }

    pub fn execution(&self, execution: ExecutionFigures) {
        let f = &self.families;
        let labels = [execution.code, execution.sandbox];
        f.executions.with_label_values(&labels).inc();
        f.queue_wait.observe(execution.queue_wait.as_secs_f64());
        let sandbox = [execution.sandbox];
        let run = execution.run.as_secs_f64();
        f.execution_seconds.with_label_values(&sandbox).observe(run);
        if let Some(cpu) = execution.cpu {
            f.script_cpu.observe(cpu.as_secs_f64());
        }
        if let Some(bytes) = execution.peak_memory_bytes {
            f.script_memory.observe(bytes as f64);
        }
        match execution.start {
            Some(Start::Template { name, spare }) => {
                let labels = [name, if spare { "true" } else { "false" }];
                f.template_serves.with_label_values(&labels).inc();
            }
            Some(Start::Cold(reason)) => {
                f.cold_starts.with_label_values(&[reason.as_str()]).inc();
            }
            None => {}
        }
        self.in_window(|window| window.executions.push(execution));
    }

    /// A request refused `OVERLOADED` (no slot in time, or the shared places being cleaned).
    pub fn overloaded(&self) {
        self.families.overloaded.inc();
        self.in_window(|window| window.overloaded += 1);
    }

    /// A key's request refused by its quota (`concurrency` or `rate`).
    pub fn quota_refused(&self, key: &str, quota: &'static str) {
        let labels = [key, quota];
        self.families
            .quota_refusals
            .with_label_values(&labels)
            .inc();
        self.in_window(|window| window.quota_refusals += 1);
    }

    /// A response too large to return inline, written to S3 (or not: `ok` false).
    pub fn offload(&self, ok: bool) {
        let outcome = if ok { "stored" } else { "failed" };
        self.families.offloads.with_label_values(&[outcome]).inc();
        self.in_window(|window| match ok {
            true => window.offloads += 1,
            false => window.offload_failures += 1,
        });
    }

    /// What was recorded since the last call (empty where no window is kept).
    pub fn take_window(&self) -> Window {
        match &self.window {
            Some(window) => std::mem::take(&mut *lock(window)),
            None => Window::default(),
        }
    }

    /// Every family in the Prometheus text format, the state read just now.
    pub fn render(&self) -> String {
        self.families.state.sync(&self.state());
        let mut text = Vec::new();
        // Encoding into memory fails only for a family the encoder cannot express, which
        // these families never are.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut text);
        String::from_utf8_lossy(&text).into_owned()
    }

    fn in_window(&self, record: impl FnOnce(&mut Window)) {
        if let Some(window) = &self.window {
            record(&mut lock(window));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
