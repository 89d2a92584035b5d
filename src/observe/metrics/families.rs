//! The Prometheus families themselves: their names, help lines, labels and buckets, registered
//! once per service. Those that mirror the executor's own counts ([`StateFamilies`]) catch up
//! with its state each time the figures are read.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::State;

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

/// The families events are recorded into, and those read from the state.
pub(super) struct Families {
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub executions: IntCounterVec,
    pub queue_wait: Histogram,
    pub execution_seconds: HistogramVec,
    pub script_cpu: Histogram,
    pub script_memory: Histogram,
    pub template_serves: IntCounterVec,
    pub cold_starts: IntCounterVec,
    pub overloaded: IntCounter,
    pub quota_refusals: IntCounterVec,
    pub offloads: IntCounterVec,
    pub state: StateFamilies,
}

/// The families that mirror the executor's state.
pub(super) struct StateFamilies {
    template_restarts: IntCounterVec,
    template_recycles: IntCounterVec,
    template_growths: IntCounterVec,
    in_flight: IntGauge,
    capacity: IntGauge,
}

impl Families {
    pub fn register(registry: &Registry) -> Self {
        let mut r = Registrar { registry };
        let (route, code_key) = (&["route"][..], &["route", "code", "key"][..]);
        Self {
            requests: r.counters(
                "requests_total",
                "Requests answered, by route, outcome code and key name",
                code_key,
            ),
            request_seconds: r.histograms(
                "request_duration_seconds",
                "Whole requests, from their headers to their answer",
                route,
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
            state: StateFamilies::register(&mut r),
        }
    }
}

impl StateFamilies {
    fn register(r: &mut Registrar) -> Self {
        let template = &["template"][..];
        Self {
            template_restarts: r.counters(
                "template_restarts_total",
                "Templates that died and were started again",
                template,
            ),
            template_recycles: r.counters(
                "template_recycles_total",
                "Templates replaced at the end of their span",
                template,
            ),
            template_growths: r.counters(
                "template_growths_total",
                "Templates grown by PRELOAD_ON_DEMAND",
                template,
            ),
            in_flight: r.gauge("executions_in_flight", "Executions holding a slot now"),
            capacity: r.gauge(
                "execution_capacity",
                "Execution slots (MAX_CONCURRENCY, or 1 where executions share a uid)",
            ),
        }
    }

    /// Catches up with the executor's own counts.
    pub fn sync(&self, state: &State) {
        self.in_flight.set(state.in_flight as i64);
        self.capacity.set(state.capacity as i64);
        for template in &state.templates {
            let label = [template.name];
            let counts = [
                (&self.template_restarts, template.restarts),
                (&self.template_recycles, template.recycles),
                (&self.template_growths, u64::from(template.grown)),
            ];
            for (family, total) in counts {
                catch_up(&family.with_label_values(&label), total);
            }
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
