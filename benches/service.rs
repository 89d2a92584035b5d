//! `make bench`: the release service's cold path (`TEMPLATES=0`: a fresh sandbox and
//! interpreter per request) beside its template path (the default: every request forks from a
//! template that has numpy and pandas imported), for the nsjail sandbox and for compat.
//!
//! For each sandbox and path: spaced latency of the seed's numpy/pandas script and of a hello
//! world; throughput and latency from 8 and 32 clients sending back to back; the memory of the
//! service and everything it started, idle and at its peak under load; and, through the Lambda
//! entry point under the Runtime Interface Emulator, spaced invocations with the whole process
//! tree frozen in between as Lambda freezes an idle environment; and what the MCP door adds to
//! the seed's script over `/execute`, in spaced pairs; and the first use of each package
//! preloaded on demand, beside its use once preloaded; and on the template path, what a session
//! holding a 1 MB DataFrame adds to a cell, with the memory store and with S3 (local). Figures are printed, never
//! asserted: timings on a shared machine are for reading, not for failing. On the template path
//! a last 8-client numpy/pandas load runs under `perf`: the CPU per request by stage, printed
//! after the tables, and a flame graph in target/bench/ (profile.rs).
//! `BENCH_SCALE=0.3 make bench` gives a quicker, noisier look.

#[path = "service/doors.rs"]
mod doors;
#[path = "service/first_use.rs"]
mod first_use;
#[path = "service/freezer.rs"]
mod freezer;
#[path = "service/http.rs"]
mod http;
#[path = "service/lambda.rs"]
mod lambda;
#[path = "../tests/platforms/lambda_support/mod.rs"]
mod lambda_support;
#[path = "service/memory.rs"]
mod memory;
#[path = "service/profile.rs"]
mod profile;
#[path = "service/report.rs"]
mod report;
#[path = "service/sessions.rs"]
mod sessions;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda::FrozenPlan;
use lambda_support::common;
use report::{percentile_ms, Figures, Kind, P50_P95_P99, P50_P99};

/// The seed's example: imports numpy and pandas, so it goes to the data template.
const SEED: &str = "def main():\n    import numpy as np\n    import pandas as pd\n    print(\"Processing data...\")\n    data = np.array([1, 2, 3, 4, 5])\n    return {\"mean\": float(np.mean(data)), \"sum\": int(np.sum(data))}";
/// Imports nothing, so it goes to the plain template.
const HELLO: &str = "def main():\n    print('hi')\n    return {'sum': 1 + 2}\n";

/// Counts and durations; `BENCH_SCALE` scales them (at least 5 requests, 2 s windows).
#[derive(Debug)]
struct Plan {
    /// Requests of each script before anything is measured (first-touch costs: page cache,
    /// a template's first forks).
    warm_up: usize,
    spaced_seed: usize,
    spaced_hello: usize,
    /// Between an answer and the next spaced request.
    spacing: Duration,
    /// How long each load phase sends.
    window: Duration,
    frozen: FrozenPlan,
}

impl Plan {
    fn from_env() -> Self {
        let scale: f64 = std::env::var("BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s: &f64| *s > 0.0)
            .unwrap_or(1.0);
        let count = |n: f64| ((n * scale).round() as usize).max(5);
        Self {
            warm_up: 3,
            spaced_seed: count(30.0),
            spaced_hello: count(40.0),
            spacing: Duration::from_millis(250),
            window: Duration::from_secs_f64((8.0 * scale).max(2.0)),
            frozen: FrozenPlan {
                invocations: count(20.0),
                frozen_for: Duration::from_secs(1),
            },
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // a benchmark has no place in a test run.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("the benchmark runs under `cargo bench` only (make bench)");
        return;
    }
    let plan = Arc::new(Plan::from_env());
    let began = Instant::now();
    eprintln!("plan: {plan:?}");
    eprintln!("load average at start: {}", load_average());
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("lambda") => return lambda_only(&plan).await,
        Ok("memory") => return memory_only(&plan).await,
        _ => {}
    }
    let mut tables = Vec::new();
    for sandbox in ["nsjail", "compat"] {
        let cold = measure(sandbox, false, &plan).await;
        let template = measure(sandbox, true, &plan).await;
        tables.push((sandbox, cold, template));
    }
    for (sandbox, cold, template) in &tables {
        let title = format!("sandbox: {sandbox} (SANDBOX={sandbox})");
        report::print_table(&title, cold, template);
    }
    for (sandbox, _, template) in &tables {
        if let Some(cpu) = &template.cpu {
            report::print_cpu(sandbox, cpu);
        }
    }
    println!();
    println!(
        "{} spaced numpy/pandas and {} hello requests, {:?} apart; load phases of {:?}; \
         {} frozen invocations, {:?} frozen before each.",
        plan.spaced_seed,
        plan.spaced_hello,
        plan.spacing,
        plan.window,
        plan.frozen.invocations,
        plan.frozen.frozen_for
    );
    println!(
        "took {:.0} s; load average at the end: {}",
        began.elapsed().as_secs_f64(),
        load_average()
    );
}

/// `BENCH_ONLY=lambda`: the Lambda figures of the template path alone (nsjail through the
/// emulator, compat under Lambda's conditions), in a minute rather than a quarter of an hour,
/// for work on that path. `BENCH_RUST_LOG` sets the service's log filter and prints its log;
/// `BENCH_SERVICE_ENV` adds settings (`NAME=value`, space-separated) to try against the defaults.
async fn lambda_only(plan: &Plan) {
    let log = std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    let extra = std::env::var("BENCH_SERVICE_ENV").unwrap_or_default();
    let extra = settings(&extra);
    for (sandbox, conditions) in [
        ("nsjail", lambda::Conditions::Host),
        ("compat", lambda::Conditions::Lambda),
    ] {
        let mut env = vec![
            ("SANDBOX", sandbox),
            ("TEMPLATES", "1"),
            ("MAX_CONCURRENCY", "1"),
            ("RUST_LOG", log.as_str()),
        ];
        env.extend(&extra);
        let mut figures = Figures::default();
        let label = format!("{sandbox} template");
        lambda::measure(&label, (&env, conditions), &plan.frozen, SEED, &mut figures).await;
        report::print_table(&label, &Figures::default(), &figures);
    }
}

/// `BENCH_ONLY=memory`: the template path's idle and peak memory alone, for both sandboxes, in
/// a minute, for work on memory. `BENCH_SERVICE_ENV` adds settings as for `BENCH_ONLY=lambda`
/// (`LAYER_DIR=...` measures another layer), and `BENCH_SERVICE_BINARY` runs another build
/// (http.rs): the two together set an older build beside this one.
async fn memory_only(plan: &Plan) {
    let extra = std::env::var("BENCH_SERVICE_ENV").unwrap_or_default();
    for sandbox in ["nsjail", "compat"] {
        let mut env = vec![("SANDBOX", sandbox), ("TEMPLATES", "1")];
        env.extend(settings(&extra));
        let service = match http::Service::start(&env).await {
            Ok(service) => service,
            Err(reason) => panic!("{sandbox}: the service cannot serve: {reason}"),
        };
        let idle = idle_memory(&service, plan).await;
        let peak = peak_memory(&service, plan).await;
        let mut figures = Figures::default();
        push_memory(&mut figures, idle, peak);
        report::print_table(
            &format!("{sandbox} template"),
            &Figures::default(),
            &figures,
        );
    }
}

/// `NAME=value` pairs, space-separated.
fn settings(pairs: &str) -> Vec<(&str, &str)> {
    pairs
        .split_whitespace()
        .filter_map(|setting| setting.split_once('='))
        .collect()
}

/// One sandbox on one path: the HTTP figures, then the frozen Lambda ones.
async fn measure(sandbox: &'static str, templates: bool, plan: &Arc<Plan>) -> Figures {
    let path = if templates { "template" } else { "cold" };
    let label = format!("{sandbox} {path}");
    let env = [
        ("SANDBOX", sandbox),
        ("TEMPLATES", if templates { "1" } else { "0" }),
    ];
    eprintln!("== {label}: HTTP");
    let (for_http, http_label) = (Arc::clone(plan), label.clone());
    let mut figures = guarded(&label, async move {
        let mut figures = Figures::default();
        match http::Service::start(&env).await {
            Ok(service) => {
                let profiled = templates.then_some(sandbox);
                measure_http(&service, &for_http, profiled, &mut figures).await;
                first_use::measure(&service, templates, &mut figures).await;
                if templates {
                    eprintln!("   spaced: pairs of cells with and without a session (memory)");
                    let pairs = (for_http.spaced_seed, for_http.spacing);
                    sessions::overhead(&service, "memory", pairs, &mut figures).await;
                }
            }
            Err(reason) => figures.notes.push(format!("{http_label}: {reason}")),
        }
        if templates {
            eprintln!("   spaced: pairs of cells with and without a session (S3, local)");
            let pairs = (for_http.spaced_seed, for_http.spacing);
            sessions::overhead_s3(&env, pairs, &mut figures).await;
        }
        figures
    })
    .await;
    eprintln!("== {label}: Lambda, frozen between invocations");
    // template.yaml's settings: one event at a time per execution environment.
    let lambda_env = [
        env[0],
        env[1],
        ("MAX_CONCURRENCY", "1"),
        ("RUST_LOG", "warn"),
    ];
    let (for_lambda, lambda_label) = (Arc::clone(plan), label.clone());
    let lambda = guarded(&label, async move {
        let mut figures = Figures::default();
        let frozen = &for_lambda.frozen;
        let host = (&lambda_env[..], lambda::Conditions::Host);
        lambda::measure(&lambda_label, host, frozen, SEED, &mut figures).await;
        if sandbox == "compat" {
            // Where compat really runs on Lambda: the same, under Lambda's conditions.
            let lambda = (&lambda_env[..], lambda::Conditions::Lambda);
            lambda::measure(&lambda_label, lambda, frozen, SEED, &mut figures).await;
        }
        figures
    })
    .await;
    figures.rows.extend(lambda.rows);
    figures.notes.extend(lambda.notes);
    figures
}

/// Runs one part of a configuration in a task of its own: should it fail (a service that
/// died under it, a request answered wrongly), its rows show dashes, a note says why, and the
/// rest of the run goes on. The service it started is killed as the task unwinds.
async fn guarded(label: &str, part: impl Future<Output = Figures> + Send + 'static) -> Figures {
    match tokio::spawn(part).await {
        Ok(figures) => figures,
        Err(error) => {
            let reason = match error.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
                Err(error) => error.to_string(),
            };
            let reason: String = reason.chars().take(400).collect();
            let mut figures = Figures::default();
            figures
                .notes
                .push(format!("{label}: failed, not measured: {reason}"));
            figures
        }
    }
}

/// The spaced and loaded figures and the memory; on the template path (`profiled` names the
/// sandbox), the CPU per request under perf too.
async fn measure_http(
    service: &http::Service,
    plan: &Plan,
    profiled: Option<&str>,
    figures: &mut Figures,
) {
    let idle = idle_memory(service, plan).await;

    measure_spaced(service, plan, figures).await;

    for (name, script) in [("numpy/pandas", SEED), ("hello", HELLO)] {
        for clients in [8, 32] {
            eprintln!("   load: {name}, {clients} clients, {:?}", plan.window);
            service.wait_until_idle().await;
            let load = service.load(script, clients, plan.window).await;
            let label = format!("{name}, {clients} clients");
            figures.push(
                format!("{label}: req/s"),
                Kind::Higher,
                Some(load.per_second),
            );
            for (q, value) in P50_P99 {
                let ms = percentile_ms(&load.latencies, *value);
                figures.push(format!("{label}: {q} (ms)"), Kind::Lower, ms);
            }
            let errors = Some(load.errors as f64);
            figures.push(format!("{label}: errors"), Kind::Count, errors);
        }
    }
    let peak = peak_memory(service, plan).await;
    if let Some(sandbox) = profiled {
        // A load phase of its own, after the others: perf's cost is in no other figure.
        eprintln!(
            "   load under perf: numpy/pandas, 8 clients, {:?}",
            plan.window
        );
        service.wait_until_idle().await;
        let load = service.load(SEED, 8, plan.window);
        profile::measure(service.pid(), sandbox, load, figures).await;
    }
    push_memory(figures, idle, peak);
}

/// The tree's memory once warmed up (first-touch costs paid) and still.
async fn idle_memory(service: &http::Service, plan: &Plan) -> memory::Memory {
    for _ in 0..plan.warm_up {
        service.spaced(SEED, 1, Duration::ZERO).await;
        service.spaced(HELLO, 1, Duration::ZERO).await;
    }
    service.wait_until_idle().await;
    memory::tree(service.pid())
}

/// The peak under a load phase of its own (8 clients, numpy/pandas: one fixed load for both
/// paths, so the two peaks compare). Sampling the tree walks every process's page tables, CPU
/// the load wants too: under the 8-client phase above it took about a tenth off its rate.
async fn peak_memory(service: &http::Service, plan: &Plan) -> memory::Memory {
    eprintln!(
        "   load for the peak memory: numpy/pandas, 8 clients, {:?}",
        plan.window
    );
    service.wait_until_idle().await;
    let watch = memory::PeakWatch::start(service.pid());
    let _ = service.load(SEED, 8, plan.window).await;
    watch.stop()
}

fn push_memory(figures: &mut Figures, idle: memory::Memory, peak: memory::Memory) {
    figures.push("idle RSS sum (MiB)", Kind::Lower, Some(idle.rss_mib));
    figures.push("idle PSS sum (MiB)", Kind::Lower, Some(idle.pss_mib));
    let under = "numpy/pandas 8 clients";
    figures.push(
        format!("peak RSS sum, {under} (MiB)"),
        Kind::Lower,
        Some(peak.rss_mib),
    );
    figures.push(
        format!("peak PSS sum, {under} (MiB)"),
        Kind::Lower,
        Some(peak.pss_mib),
    );
    figures.push(
        "idle, each page once (MiB)",
        Kind::Lower,
        Some(idle.unique_mib),
    );
    figures.push(
        format!("peak, each page once, {under} (MiB)"),
        Kind::Lower,
        Some(peak.unique_mib),
    );
}

/// Requests one at a time, spaced: the seed's script, hello, the /health floor, and the seed's
/// script through the MCP door beside `/execute`.
async fn measure_spaced(service: &http::Service, plan: &Plan, figures: &mut Figures) {
    eprintln!("   spaced: {} numpy/pandas", plan.spaced_seed);
    let seed = service.spaced(SEED, plan.spaced_seed, plan.spacing).await;
    figures.percentiles("numpy/pandas spaced", &seed, P50_P95_P99);
    eprintln!("   spaced: {} hello", plan.spaced_hello);
    let hello = service.spaced(HELLO, plan.spaced_hello, plan.spacing).await;
    figures.percentiles("hello spaced", &hello, P50_P95_P99);
    eprintln!(
        "   spaced: {} GET /health (no sandbox: the floor)",
        plan.spaced_hello
    );
    let health = service.spaced_health(plan.spaced_hello, plan.spacing).await;
    figures.percentiles("GET /health spaced (floor)", &health, &P50_P95_P99[..1]);
    eprintln!(
        "   spaced: {} pairs of numpy/pandas via /execute and via MCP",
        plan.spaced_seed
    );
    let seed_result = serde_json::json!({"mean": 3.0, "sum": 15});
    let (pairs, spacing) = (plan.spaced_seed, plan.spacing);
    for door in [doors::Door::Mcp, doors::Door::Streamed] {
        let seed = (SEED, &seed_result);
        doors::overhead(service, door, seed, (pairs, spacing), figures).await;
    }
}

/// The 1, 5 and 15 minute load averages: whether something else competed for the two cores.
fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
