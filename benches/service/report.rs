//! The figures of one configuration, and the table that sets the cold path beside the template
//! path for one sandbox.

use std::time::Duration;

use crate::profile::Breakdown;

/// How a row's two figures compare.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Latency, memory: lower is better, so cold/template above 1 means the templates win.
    Lower,
    /// Throughput: higher is better, so the ratio is template/cold (above 1: templates win).
    Higher,
    /// A count (errors, warm starts): no ratio.
    Count,
}

/// One metric's value in one configuration; `None` where it could not be measured.
#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub kind: Kind,
    pub value: Option<f64>,
}

/// One configuration's figures, in the order they are printed.
#[derive(Debug, Default)]
pub struct Figures {
    pub rows: Vec<Row>,
    /// Said under the table: why rows are missing, and anything odd in a run.
    pub notes: Vec<String>,
    /// Where the CPU went per request under perf (the template path only), printed on its own.
    pub cpu: Option<Breakdown>,
}

impl Figures {
    pub fn push(&mut self, name: impl Into<String>, kind: Kind, value: Option<f64>) {
        self.rows.push(Row {
            name: name.into(),
            kind,
            value,
        });
    }

    fn value(&self, name: &str) -> Option<f64> {
        let row = self.rows.iter().find(|row| row.name == name)?;
        row.value
    }

    /// A row per quantile of `samples`, in milliseconds.
    pub fn percentiles(&mut self, name: &str, samples: &[Duration], quantiles: &[(&str, f64)]) {
        for (label, q) in quantiles {
            let value = percentile_ms(samples, *q);
            self.push(format!("{name} {label} (ms)"), Kind::Lower, value);
        }
    }
}

pub const P50_P95_P99: &[(&str, f64)] = &[("p50", 0.50), ("p95", 0.95), ("p99", 0.99)];
pub const P50_P99: &[(&str, f64)] = &[("p50", 0.50), ("p99", 0.99)];

/// The sample at quantile `q` (nearest rank, no interpolation: with a few dozen samples p99 is
/// the slowest one, and should read as such).
pub fn percentile_ms(samples: &[Duration], q: f64) -> Option<f64> {
    let mut millis: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    millis.sort_by(f64::total_cmp);
    let last = millis.len().checked_sub(1)?;
    millis.get(((last as f64) * q).round() as usize).copied()
}

/// The table for one sandbox: its cold figures beside its template figures, row by row. Rows
/// are matched by name, so a configuration that could not be measured shows dashes.
pub fn print_table(title: &str, cold: &Figures, template: &Figures) {
    println!();
    println!("{title}");
    println!(
        "{:<50} {:>10} {:>10} {:>14}",
        "metric", "cold", "template", "cold/template"
    );
    println!("{}", "-".repeat(87));
    // In the order of the fuller of the two (one may have failed part-way).
    let (fuller, other) = if cold.rows.len() >= template.rows.len() {
        (cold, template)
    } else {
        (template, cold)
    };
    let mut names: Vec<(&str, Kind)> = Vec::new();
    for row in fuller.rows.iter().chain(&other.rows) {
        if !names.iter().any(|(name, _)| *name == row.name) {
            names.push((&row.name, row.kind));
        }
    }
    for (name, kind) in names {
        let (c, t) = (cold.value(name), template.value(name));
        let ratio = match (kind, c, t) {
            (Kind::Lower, Some(c), Some(t)) if t > 0.0 => format!("{:.2}x", c / t),
            (Kind::Higher, Some(c), Some(t)) if c > 0.0 => format!("{:.2}x *", t / c),
            _ => String::new(),
        };
        println!(
            "{name:<50} {:>10} {:>10} {ratio:>14}",
            show(c, kind),
            show(t, kind)
        );
    }
    println!("* req/s rows give template/cold instead: above 1x, the templates serve more.");
    let mut notes: Vec<&String> = Vec::new();
    for note in cold.notes.iter().chain(&template.notes) {
        if !notes.contains(&note) {
            println!("note: {note}");
            notes.push(note);
        }
    }
}

/// One sandbox's CPU per request under perf, by stage (profile.rs), the costliest first.
pub fn print_cpu(sandbox: &str, cpu: &Breakdown) {
    println!();
    println!(
        "CPU per request by stage, {sandbox} template path, numpy/pandas from 8 clients under \
         perf ({} answered, {} errors, {} samples)",
        cpu.requests,
        cpu.errors,
        cpu.samples()
    );
    println!("{:<60} {:>14} {:>8}", "stage", "ms per request", "share");
    println!("{}", "-".repeat(84));
    for (stage, samples) in &cpu.stages {
        let ms = cpu.ms_per_request(*samples);
        let share = format!("{:.1}%", cpu.share(*samples));
        println!("{stage:<60} {:>14} {share:>8}", show(ms, Kind::Lower));
    }
    let total = cpu.ms_per_request(cpu.samples());
    println!(
        "{:<60} {:>14} {:>8}",
        "total",
        show(total, Kind::Lower),
        "100%"
    );
    println!("flame graph: {}", cpu.flamegraph.display());
}

fn show(value: Option<f64>, kind: Kind) -> String {
    match (value, kind) {
        (None, _) => "-".into(),
        (Some(v), Kind::Count) => format!("{v:.0}"),
        (Some(v), _) => format!("{v:.1}"),
    }
}
