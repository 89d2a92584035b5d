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
pub mod figures;

use std::sync::{Mutex, OnceLock, PoisonError};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

pub use figures::{
    ColdReason, ExecutionFigures, RequestFigures, Start, State, TemplateState, Window,
};

/// Every family's name starts with this.
const PREFIX: &str = "python_executor";
/// Whole requests and executions: milliseconds for a template's fork, a minute at most.
const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Waiting for a slot: usually nothing, at most `QUEUE_WAIT_MS`.
const QUEUE_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
];
/// A script's CPU time, up to its limit.
const CPU_SECONDS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// A script's peak memory: 4 MiB, doubling, to 4 GiB.
const MEMORY_BYTES: (f64, f64, usize) = (4.0 * 1024.0 * 1024.0, 2.0, 11);

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

struct Families {
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    executions: IntCounterVec,
    queue_wait: Histogram,
    execution_seconds: HistogramVec,
    script_cpu: Histogram,
    script_memory: Histogram,
    template_serves: IntCounterVec,
    cold_starts: IntCounterVec,
    template_restarts: IntCounterVec,
    template_recycles: IntCounterVec,
    template_growths: IntCounterVec,
    in_flight: IntGauge,
    capacity: IntGauge,
    overloaded: IntCounter,
    quota_refusals: IntCounterVec,
    offloads: IntCounterVec,
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
        self.families.sync(&self.state());
        let mut text = Vec::new();
        // Encoding into memory fails only for a family the encoder cannot express, which
        // the families above never are.
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

impl Families {
    fn register(registry: &Registry) -> Self {
        let mut r = Registrar { registry };
        Self {
            requests: r.counters(
                "requests_total",
                "Requests answered, by route, outcome code and key name",
                &["route", "code", "key"],
            ),
            request_seconds: r.histograms(
                "request_duration_seconds",
                "Whole requests, from their headers to their answer",
                &["route"],
                SECONDS,
            ),
            executions: r.counters(
                "executions_total",
                "Executions, by outcome code and sandbox",
                &["code", "sandbox"],
            ),
            queue_wait: r.histogram(
                "queue_wait_seconds",
                "Time executions waited for a slot",
                QUEUE_SECONDS,
            ),
            execution_seconds: r.histograms(
                "execution_duration_seconds",
                "Executions, from their slot to their answer",
                &["sandbox"],
                SECONDS,
            ),
            script_cpu: r.histogram(
                "script_cpu_seconds",
                "CPU time of each script, where measured",
                CPU_SECONDS,
            ),
            script_memory: r.histogram(
                "script_peak_memory_bytes",
                "Peak memory of each script, where measured",
                &memory_buckets(),
            ),
            template_serves: r.counters(
                "template_serves_total",
                "Executions forked from a template, by template and whether forked ahead (spare)",
                &["template", "spare"],
            ),
            cold_starts: r.counters(
                "cold_starts_total",
                "Executions started cold, with a fresh interpreter, by reason",
                &["reason"],
            ),
            template_restarts: r.counters(
                "template_restarts_total",
                "Templates that died and were started again",
                &["template"],
            ),
            template_recycles: r.counters(
                "template_recycles_total",
                "Templates replaced at the end of their span",
                &["template"],
            ),
            template_growths: r.counters(
                "template_growths_total",
                "Templates grown by PRELOAD_ON_DEMAND",
                &["template"],
            ),
            in_flight: r.gauge("executions_in_flight", "Executions holding a slot now"),
            capacity: r.gauge(
                "execution_capacity",
                "Execution slots (MAX_CONCURRENCY, or 1 where executions share a uid)",
            ),
            overloaded: r.counter("overloaded_total", "Requests answered OVERLOADED"),
            quota_refusals: r.counters(
                "quota_refusals_total",
                "Requests refused by their key's quota, by key name and quota",
                &["key", "quota"],
            ),
            offloads: r.counters(
                "offloads_total",
                "Responses too large to return inline, by outcome (stored in S3, or failed)",
                &["outcome"],
            ),
        }
    }

    /// The families that mirror the executor's own counts catch up with them.
    fn sync(&self, state: &State) {
        self.in_flight.set(state.in_flight as i64);
        self.capacity.set(state.capacity as i64);
        for template in &state.templates {
            let label = [template.name];
            catch_up(
                &self.template_restarts.with_label_values(&label),
                template.restarts,
            );
            catch_up(
                &self.template_recycles.with_label_values(&label),
                template.recycles,
            );
            catch_up(
                &self.template_growths.with_label_values(&label),
                u64::from(template.grown),
            );
        }
    }
}

/// A counter brought up to `total`, which only grows.
fn catch_up(counter: &IntCounter, total: u64) {
    let behind = total.saturating_sub(counter.get());
    if behind > 0 {
        counter.inc_by(behind);
    }
}

fn memory_buckets() -> Vec<f64> {
    let (start, factor, count) = MEMORY_BYTES;
    (0..count).map(|i| start * factor.powi(i as i32)).collect()
}

/// Creates and registers families. Names and labels are constants of this module, so a
/// failure here is a bug in it, caught by its tests.
struct Registrar<'a> {
    registry: &'a Registry,
}

impl Registrar<'_> {
    fn name(name: &str) -> String {
        format!("{PREFIX}_{name}")
    }

    fn add<C: prometheus::core::Collector + Clone + 'static>(&mut self, family: C) -> C {
        self.registry
            .register(Box::new(family.clone()))
            .expect("a family is registered once");
        family
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        let family = IntCounter::new(Self::name(name), help).expect("a valid counter");
        self.add(family)
    }

    fn counters(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let opts = Opts::new(Self::name(name), help);
        self.add(IntCounterVec::new(opts, labels).expect("valid counters"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(Self::name(name), help).expect("a valid gauge"))
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(Self::name(name), help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("a valid histogram"))
    }

    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: &[f64],
    ) -> HistogramVec {
        let opts = HistogramOpts::new(Self::name(name), help).buckets(buckets.to_vec());
        self.add(HistogramVec::new(opts, labels).expect("valid histograms"))
    }
}

#[cfg(test)]
mod tests;
