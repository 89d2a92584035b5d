//! CloudWatch Embedded Metric Format: on Lambda nothing scrapes `/metrics`, so after each
//! invocation the figures recorded during it are written as one JSON line, which CloudWatch
//! Logs turns into metrics (namespace `METRICS_EMF_NAMESPACE`):
//!
//! - `Requests` and `RequestTime` by `FunctionName`, and by `FunctionName`, `Route`, `Code`;
//! - `Executions`, `QueueWait`, `ExecutionTime`, `ScriptCpu`, `ScriptPeakMemory` by
//!   `FunctionName`, `Sandbox`, `ExecutionCode` (only when the invocation ran a script);
//! - by `FunctionName` alone: `TemplateServes`, `ColdStarts`, `Overloaded`, `QuotaRefusals`,
//!   `Offloads`, `OffloadFailures`, `InFlight`, `Capacity`, `TemplateRestarts` and
//!   `TemplateGrowths` (since the previous line), and `FirstInvocation` (1 on an environment's
//!   first invocation: Lambda's cold start).
//!
//! `Key` (the key's name) and `request_id` ride along as properties, searchable in Logs
//! Insights without becoming dimensions. Lambda runs one invocation at a time per environment,
//! so a line is exactly one invocation; where several overlap (EMF forced on off Lambda), a
//! line per distinct route and outcome carries the values of each as arrays.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{ExecutionFigures, Metrics, RequestFigures, Start, State, Window};

/// Writes one line per invocation from a service's [`Metrics`].
#[derive(Debug)]
pub struct Emf {
    metrics: Arc<Metrics>,
    namespace: String,
    function: String,
    first: AtomicBool,
    /// Template restarts and growths already reported, so each line says what is new.
    reported: Mutex<(u64, u64)>,
}

impl Emf {
    /// `function`: the `FunctionName` dimension (Lambda's `AWS_LAMBDA_FUNCTION_NAME`).
    pub fn new(metrics: Arc<Metrics>, namespace: &str, function: &str) -> Self {
        Self {
            metrics,
            namespace: namespace.to_owned(),
            function: function.to_owned(),
            first: AtomicBool::new(true),
            reported: Mutex::new((0, 0)),
        }
    }

    /// The lines for everything recorded since the previous call.
    pub fn lines(&self) -> Vec<String> {
        let window = self.metrics.take_window();
        let state = self.metrics.state();
        let (restarts, growths) = {
            let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
            let new = (state.restarts(), state.growths());
            let delta = (
                new.0.saturating_sub(reported.0),
                new.1.saturating_sub(reported.1),
            );
            *reported = new;
            delta
        };
        let service = Service {
            state,
            restarts,
            growths,
            first: self.first.swap(false, Ordering::Relaxed),
        };
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        let head = Head {
            namespace: &self.namespace,
            function: &self.function,
            timestamp_ms: millis,
        };
        render(&head, &window, &service)
            .into_iter()
            .map(|line| line.to_string())
            .collect()
    }

    /// Writes [`Self::lines`] to `out`, each with one `write` so lines never interleave.
    pub fn write(&self, out: &mut impl Write) {
        for line in self.lines() {
            let _ = out.write_all(format!("{line}\n").as_bytes());
        }
        let _ = out.flush();
    }
}

/// What every line of one flush shares.
#[derive(Debug)]
pub struct Head<'a> {
    pub namespace: &'a str,
    pub function: &'a str,
    pub timestamp_ms: u64,
}

/// The service's own figures for one flush.
#[derive(Debug, Default)]
pub struct Service {
    pub state: State,
    pub restarts: u64,
    pub growths: u64,
    pub first: bool,
}

/// The lines for one window: the first carries the service's figures.
pub fn render(head: &Head, window: &Window, service: &Service) -> Vec<Value> {
    let requests = group(&window.requests, |r| (r.route.clone(), r.code));
    let executions = group(&window.executions, |e| (e.sandbox.to_owned(), e.code));
    let count = requests.len().max(executions.len()).max(1);
    (0..count)
        .map(|index| {
            let mut line = Line::new(head);
            if let Some(((route, code), group)) = requests.get(index) {
                line.requests(route, code, group);
            }
            if let Some(((sandbox, code), group)) = executions.get(index) {
                line.executions(sandbox, code, group);
            }
            if index == 0 {
                line.service(window, service);
            }
            line.finish()
        })
        .collect()
}

/// Items grouped by a key, in order of first appearance.
fn group<T, K: PartialEq>(items: &[T], key: impl Fn(&T) -> K) -> Vec<(K, Vec<&T>)> {
    let mut groups: Vec<(K, Vec<&T>)> = Vec::new();
    for item in items {
        let k = key(item);
        match groups.iter_mut().find(|(existing, _)| *existing == k) {
            Some((_, members)) => members.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups
}

/// One line being built: its members and its metric directives.
struct Line<'a> {
    head: &'a Head<'a>,
    root: Map<String, Value>,
    directives: Vec<Value>,
}

impl<'a> Line<'a> {
    fn new(head: &'a Head<'a>) -> Self {
        let mut root = Map::new();
        root.insert("FunctionName".into(), head.function.into());
        Self {
            head,
            root,
            directives: Vec::new(),
        }
    }

    fn requests(&mut self, route: &str, code: &str, group: &[&RequestFigures]) {
        self.root.insert("Route".into(), route.into());
        self.root.insert("Code".into(), code.into());
        if let Some(first) = group.first() {
            self.root.insert("Key".into(), first.key.clone().into());
            self.root
                .insert("request_id".into(), first.request_id.clone().into());
        }
        let times = group.iter().map(|r| millis(r.duration)).collect();
        let metrics = [
            ("Requests", "Count", Values::Total(group.len() as f64)),
            ("RequestTime", "Milliseconds", Values::Each(times)),
        ];
        let dimensions = json!([["FunctionName"], ["FunctionName", "Route", "Code"]]);
        self.directive(dimensions, metrics);
    }

    fn executions(&mut self, sandbox: &str, code: &str, group: &[&ExecutionFigures]) {
        self.root.insert("Sandbox".into(), sandbox.into());
        self.root.insert("ExecutionCode".into(), code.into());
        let each = |f: &dyn Fn(&ExecutionFigures) -> Option<f64>| {
            Values::Each(group.iter().filter_map(|e| f(e)).collect())
        };
        let metrics = [
            ("Executions", "Count", Values::Total(group.len() as f64)),
            (
                "QueueWait",
                "Milliseconds",
                each(&|e| Some(millis(e.queue_wait))),
            ),
            (
                "ExecutionTime",
                "Milliseconds",
                each(&|e| Some(millis(e.run))),
            ),
            ("ScriptCpu", "Milliseconds", each(&|e| e.cpu.map(millis))),
            (
                "ScriptPeakMemory",
                "Bytes",
                each(&|e| e.peak_memory_bytes.map(|b| b as f64)),
            ),
        ];
        self.directive(
            json!([["FunctionName", "Sandbox", "ExecutionCode"]]),
            metrics,
        );
    }

    fn service(&mut self, window: &Window, service: &Service) {
        let count = |n: u64| Values::Total(n as f64);
        let starts = |template: bool| {
            let matches = |e: &&ExecutionFigures| match e.start {
                Some(Start::Template { .. }) => template,
                Some(Start::Cold(_)) => !template,
                None => false,
            };
            count(window.executions.iter().filter(matches).count() as u64)
        };
        let metrics = [
            ("TemplateServes", "Count", starts(true)),
            ("ColdStarts", "Count", starts(false)),
            ("Overloaded", "Count", count(window.overloaded)),
            ("QuotaRefusals", "Count", count(window.quota_refusals)),
            ("Offloads", "Count", count(window.offloads)),
            ("OffloadFailures", "Count", count(window.offload_failures)),
            ("InFlight", "Count", count(service.state.in_flight as u64)),
            ("Capacity", "Count", count(service.state.capacity as u64)),
            ("TemplateRestarts", "Count", count(service.restarts)),
            ("TemplateGrowths", "Count", count(service.growths)),
            ("FirstInvocation", "Count", count(u64::from(service.first))),
        ];
        self.directive(json!([["FunctionName"]]), metrics);
    }

    /// A directive over the metrics that have values; each value goes into the root.
    fn directive<const N: usize>(&mut self, dimensions: Value, metrics: [(&str, &str, Values); N]) {
        let mut definitions = Vec::new();
        for (name, unit, values) in metrics {
            let Some(value) = values.into_json() else {
                continue;
            };
            self.root.insert(name.to_owned(), value);
            definitions.push(json!({ "Name": name, "Unit": unit }));
        }
        self.directives.push(json!({
            "Namespace": self.head.namespace,
            "Dimensions": dimensions,
            "Metrics": definitions,
        }));
    }

    fn finish(mut self) -> Value {
        let metadata = json!({
            "Timestamp": self.head.timestamp_ms,
            "CloudWatchMetrics": self.directives,
        });
        self.root.insert("_aws".into(), metadata);
        Value::Object(self.root)
    }
}

/// A metric's values: one total, or each observation (none: the metric is left out).
enum Values {
    Total(f64),
    Each(Vec<f64>),
}

impl Values {
    fn into_json(self) -> Option<Value> {
        match self {
            Self::Total(total) => Some(json!(total)),
            Self::Each(values) if values.is_empty() => None,
            Self::Each(values) if values.len() == 1 => Some(json!(values[0])),
            // EMF takes at most 100 values per metric in one document.
            Self::Each(values) => Some(json!(values.into_iter().take(100).collect::<Vec<_>>())),
        }
    }
}

fn millis(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
