//! `make bench`: the release service measured with the pool on and off, side by side.
//!
//! Sequential latency (p50/p95/p99) of the seed's numpy/pandas script and of a hello world,
//! spaced so the pool can refill; hello-world requests per second under 8 and 32 concurrent
//! clients; and the peak resident memory of the service with all its sandboxes. Figures are
//! printed, never asserted: timings on a shared machine are for reading, not for failing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::binary::{Launch, Output, Running};
use common::ports::free_addr;
use common::procs::descendants;
use common::wait;
use serde_json::{json, Value};

const SEED: &str = "def main():\n    import numpy as np\n    import pandas as pd\n    print(\"Processing data...\")\n    data = np.array([1, 2, 3, 4, 5])\n    return {\"mean\": float(np.mean(data)), \"sum\": int(np.sum(data))}";
const HELLO: &str = "def main():\n    print('hi')\n    return {'sum': 1 + 2}\n";

/// Request counts and spacing, overridable for a quicker look (`BENCH_SCALE=0.3 make bench`).
struct Plan {
    seed_requests: usize,
    seed_spacing: Duration,
    hello_requests: usize,
    hello_spacing: Duration,
    load_duration: Duration,
}

impl Plan {
    fn from_env() -> Self {
        let scale: f64 = std::env::var("BENCH_SCALE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0);
        let count = |n: f64| ((n * scale).round() as usize).max(5);
        Self {
            seed_requests: count(40.0),
            seed_spacing: Duration::from_millis(900),
            hello_requests: count(60.0),
            hello_spacing: Duration::from_millis(200),
            load_duration: Duration::from_secs_f64((10.0 * scale).max(3.0)),
        }
    }
}

/// One configuration's figures, by metric name.
type Figures = Vec<(String, f64)>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, and
    // a benchmark has no place in a test run.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("the benchmark runs under `cargo bench` only (make bench)");
        return;
    }
    let plan = Plan::from_env();
    let off = measure("pool off", &[("TEMPLATES", "0")], &plan).await;
    let on = measure("pool on", &[], &plan).await;
    print_table(&off, &on);
}

async fn measure(label: &str, env: &[(&str, &str)], plan: &Plan) -> Figures {
    eprintln!("== {label}: starting the release service");
    let service = Service::start(env).await;
    let mut figures = Figures::new();
    let memory = MemoryWatch::start(service.pid());

    eprintln!(
        "== {label}: numpy/pandas seed, {} sequential requests",
        plan.seed_requests
    );
    let seed = service
        .sequential(SEED, plan.seed_requests, plan.seed_spacing)
        .await;
    push_percentiles(&mut figures, "numpy/pandas latency", &seed);
    eprintln!(
        "== {label}: hello world, {} sequential requests",
        plan.hello_requests
    );
    let hello = service
        .sequential(HELLO, plan.hello_requests, plan.hello_spacing)
        .await;
    push_percentiles(&mut figures, "hello latency", &hello);
    for clients in [8, 32] {
        eprintln!("== {label}: hello world, {clients} concurrent clients");
        let (rate, overloaded) = service.throughput(clients, plan.load_duration).await;
        figures.push((format!("hello req/s, {clients} clients"), rate));
        figures.push((
            format!("  OVERLOADED answers, {clients} clients"),
            overloaded as f64,
        ));
    }
    figures.push((
        "peak RSS, service + sandboxes (MiB)".into(),
        memory.stop().await,
    ));
    drop(service);
    figures
}

fn push_percentiles(figures: &mut Figures, name: &str, samples: &[Duration]) {
    let mut millis: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    millis.sort_by(f64::total_cmp);
    for (label, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
        let index = ((millis.len() as f64 - 1.0) * q).round() as usize;
        figures.push((format!("{name} {label} (ms)"), millis[index]));
    }
}

fn print_table(off: &Figures, on: &Figures) {
    let on: HashMap<&str, f64> = on.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    println!();
    println!(
        "{:<42} {:>12} {:>12} {:>14}",
        "metric", "pool off", "pool on", "off/on"
    );
    println!("{}", "-".repeat(83));
    for (name, off_value) in off {
        let on_value = on.get(name.as_str()).copied().unwrap_or(f64::NAN);
        let ratio = if on_value > 0.0 {
            off_value / on_value
        } else {
            f64::NAN
        };
        println!("{name:<42} {off_value:>12.1} {on_value:>12.1} {ratio:>13.2}x");
    }
    println!();
    println!("latency: lower is better, so off/on is the speed-up; req/s: higher is better,");
    println!("so off/on below 1 means the pool serves more. Targets: numpy/pandas p50 >= 20x,");
    println!("hello p50 >= 3x, req/s under load no worse with the pool (off/on <= 1).");
}

/// How long the release binary may take to listen (its sandbox self-test included).
const LISTENING_WITHIN: Duration = Duration::from_secs(30);
/// How long the pool, when on, may take to fill before the measuring starts.
const WARM_WITHIN: Duration = Duration::from_secs(60);

/// The release binary, serving on a free port, killed with its sandboxes on drop.
struct Service {
    process: Running,
    base: String,
    client: reqwest::Client,
}

impl Service {
    async fn start(env: &[(&str, &str)]) -> Self {
        let addr = free_addr();
        let process = Launch::service()
            .env("PORT", addr.port().to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .output(Output::StderrShown)
            .start_listening(addr, LISTENING_WITHIN);
        let service = Self {
            process,
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        };
        service.wait_until_warm().await;
        service
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Waits until /health is ok and the pool, if on, has a warm sandbox of each kind, as it
    /// would have in service.
    async fn wait_until_warm(&self) {
        let warm = wait::until_async(WARM_WITHIN, || async {
            let health: Value = self
                .client
                .get(format!("{}/health", self.base))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            let pool = &health["pool"];
            let filled = pool.is_null()
                || (pool["plain"].as_u64() >= Some(1) && pool["data"].as_u64() >= Some(1));
            (health["ok"] == true && filled).then_some(())
        })
        .await;
        assert!(
            warm.is_some(),
            "the service was not ready within {WARM_WITHIN:?}; is the layer built (make layer)?"
        );
    }

    async fn execute(&self, script: &str) -> (u16, Value) {
        let reply = self
            .client
            .post(format!("{}/execute", self.base))
            .json(&json!({ "script": script }))
            .send()
            .await
            .expect("the service answers");
        let status = reply.status().as_u16();
        (status, reply.json().await.expect("JSON body"))
    }

    async fn sequential(&self, script: &str, count: usize, spacing: Duration) -> Vec<Duration> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let (status, body) = self.execute(script).await;
            samples.push(started.elapsed());
            assert_eq!(status, 200, "benchmark request failed: {body}");
            // Deliberate: the spacing is part of what is measured (the latency of a request
            // that finds the pool refilled), not a wait for anything.
            tokio::time::sleep(spacing).await;
        }
        samples
    }

    /// Requests per second answered 200 by `clients` looping clients, and OVERLOADED count.
    async fn throughput(&self, clients: usize, duration: Duration) -> (f64, usize) {
        let deadline = Instant::now() + duration;
        let loops = (0..clients).map(|_| async move {
            let (mut ok, mut overloaded) = (0usize, 0usize);
            while Instant::now() < deadline {
                match self.execute(HELLO).await {
                    (200, _) => ok += 1,
                    (503, _) => overloaded += 1,
                    (status, body) => panic!("unexpected answer {status}: {body}"),
                }
            }
            (ok, overloaded)
        });
        let started = Instant::now();
        let results = futures::future::join_all(loops).await;
        let elapsed = started.elapsed().as_secs_f64();
        let ok: usize = results.iter().map(|r| r.0).sum();
        (ok as f64 / elapsed, results.iter().map(|r| r.1).sum())
    }
}

/// Samples the resident memory of a process and all its descendants every 200 ms (a scan of
/// /proc costs CPU the service would otherwise have; sampled too often, it skews the latencies).
struct MemoryWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl MemoryWatch {
    fn start(root: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            loop {
                peak = peak.max(tree_rss_kib(root));
                // The sampling interval, not a wait for anything: between two samples the
                // stop signal ends the watch at once.
                tokio::select! {
                    _ = &mut stopped => return peak,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(0) as f64 / 1024.0
    }
}

/// Sum of VmRSS (KiB) over `root` and its descendants. Shared pages count once per process,
/// so this overstates a little; the same way for both configurations.
fn tree_rss_kib(root: u32) -> u64 {
    std::iter::once(root)
        .chain(descendants(root))
        .map(rss_kib)
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}
