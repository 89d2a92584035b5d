//! The release service over HTTP (the Cloud Run entry point): started on a free port with only
//! the settings a configuration gives, then driven by spaced requests or by clients sending
//! back to back.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::binary::{Launch, Output, Running};
use crate::common::ports::free_addr;
use crate::common::procs::descendants;
use crate::common::wait;
use crate::lambda_support::repo_root;

/// How long the release binary may take to listen (its sandbox self-test included).
const LISTENING_WITHIN: Duration = Duration::from_secs(30);
/// How long the templates, when on, may take to import their modules.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Longer than any answer can take (the queue's 10 s wait plus the script's own limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the teardown of the last requests may take before memory is read anyway.
const IDLE_WITHIN: Duration = Duration::from_secs(10);

/// The release binary this benchmark was built with, or the one `BENCH_SERVICE_BINARY` names:
/// another build to set beside it (an A/B: with `BENCH_SERVICE_ENV=LAYER_DIR=...`, over the
/// layer that build needs).
fn service_launch() -> Launch {
    match std::env::var_os("BENCH_SERVICE_BINARY") {
        Some(binary) => Launch::new("python-executor (BENCH_SERVICE_BINARY)", binary),
        None => Launch::service(),
    }
}

/// The release binary, killed with everything it started on drop.
pub struct Service {
    process: Running,
    base: String,
    client: reqwest::Client,
}

/// What clients sending back to back for a fixed window achieved.
#[derive(Debug)]
pub struct Load {
    pub per_second: f64,
    /// Latency of each 200 answer.
    pub latencies: Vec<Duration>,
    /// Answers other than 200, and requests that got no answer.
    pub errors: usize,
}

impl Service {
    /// Starts the service with a cleared environment plus `env` (so nothing set in the shell
    /// that runs the benchmark changes what is measured) and waits until it can serve: /health
    /// ok and, with templates on, both templates ready. `Err` says why it cannot serve.
    pub async fn start(env: &[(&str, &str)]) -> Result<Self, String> {
        let addr = free_addr();
        let process = service_launch()
            .current_dir(repo_root())
            .clear_env()
            .env("PORT", addr.port().to_string())
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .output(Output::StderrShown)
            .start_listening(addr, LISTENING_WITHIN);
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let service = Self {
            process,
            base: format!("http://{addr}"),
            client,
        };
        service.wait_until_ready().await?;
        Ok(service)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The client every request is sent with (one connection pool for every front door).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn health(&self) -> Option<Value> {
        let reply = self.client.get(format!("{}/health", self.base)).send();
        reply.await.ok()?.json().await.ok()
    }

    async fn wait_until_ready(&self) -> Result<(), String> {
        let health = wait::until_async(READY_WITHIN, || async {
            let health = self.health().await?;
            let templates = &health["templates"];
            let ready = |name: &str| templates[name]["ready"] == true;
            let settled =
                health["ok"] != true || templates.is_null() || (ready("plain") && ready("data"));
            settled.then_some(health)
        })
        .await;
        match health {
            Some(health) if health["ok"] == true => Ok(()),
            Some(health) => Err(format!("the service cannot run scripts: {health}")),
            None => Err(format!("not ready within {READY_WITHIN:?}")),
        }
    }

    /// Waits until no execution runs and the set of processes below the service stays the same
    /// for a sampling interval: the background teardown of the last requests is over.
    pub async fn wait_until_idle(&self) {
        let deadline = Instant::now() + IDLE_WITHIN;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            let mut now = descendants(self.pid());
            now.sort_unstable();
            let running = self
                .health()
                .await
                .map(|h| h["executions"]["running"].as_u64());
            if running == Some(Some(0)) && now == last {
                return;
            }
            last = now;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the service's process has ended (it is a zombie until the drop reaps it).
    fn exited(&self) -> bool {
        crate::common::procs::has_ended(self.pid())
    }

    /// Runs `script`: the status (0 when no answer came) and the body.
    pub async fn execute(&self, script: &str) -> (u16, Value) {
        let reply = self
            .client
            .post(format!("{}/execute", self.base))
            .json(&json!({ "script": script }))
            .send()
            .await;
        match reply {
            Ok(reply) => {
                let status = reply.status().as_u16();
                (status, reply.json().await.unwrap_or(Value::Null))
            }
            // Debug, not Display: it carries the cause (a reset, a timeout).
            Err(error) => (0, Value::from(format!("{error:?}"))),
        }
    }

    /// `count` requests one after another, `spacing` apart: each one's latency. A failure
    /// ends the benchmark: the figures of a broken service mean nothing.
    pub async fn spaced(&self, script: &str, count: usize, spacing: Duration) -> Vec<Duration> {
        self.spaced_requests(count, spacing, || self.execute(script))
            .await
    }

    /// `GET /health` the same way: the round trip with no sandbox in it, the floor under the
    /// spaced figures on this machine.
    pub async fn spaced_health(&self, count: usize, spacing: Duration) -> Vec<Duration> {
        self.spaced_requests(count, spacing, || async {
            let reply = self.client.get(format!("{}/health", self.base)).send();
            match reply.await {
                Ok(reply) => (reply.status().as_u16(), Value::Null),
                Err(error) => (0, Value::from(format!("{error:?}"))),
            }
        })
        .await
    }

    async fn spaced_requests<F, R>(
        &self,
        count: usize,
        spacing: Duration,
        request: F,
    ) -> Vec<Duration>
    where
        F: Fn() -> R,
        R: std::future::Future<Output = (u16, Value)>,
    {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let started = Instant::now();
            let (status, body) = request().await;
            samples.push(started.elapsed());
            if status != 200 {
                let state = if self.exited() {
                    "has exited"
                } else {
                    "still runs"
                };
                panic!("a benchmark request failed ({status}; the service {state}): {body}");
            }
            // Deliberate: the pause is part of the scenario (requests arriving one at a time
            // with idle time between them), not a wait for anything.
            tokio::time::sleep(spacing).await;
        }
        samples
    }

    /// `clients` clients, each sending `script` as soon as its previous answer arrived, until
    /// `window` has passed. Every request sent within the window counts, answered within it or
    /// after: counting only those answered in time would drop the slowest (at 32 clients on
    /// the cold path a request waits seconds in the queue) and flatter the latencies. The rate
    /// is the 200 answers over the time from the first request to the last answer.
    pub async fn load(&self, script: &str, clients: usize, window: Duration) -> Load {
        let started = Instant::now();
        let deadline = started + window;
        let loops = (0..clients).map(|_| async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let sent = Instant::now();
                match self.execute(script).await {
                    (200, _) => latencies.push(sent.elapsed()),
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        });
        let results = futures::future::join_all(loops).await;
        let elapsed = started.elapsed();
        let mut load = Load {
            per_second: 0.0,
            latencies: Vec::new(),
            errors: 0,
        };
        for (latencies, errors) in results {
            load.latencies.extend(latencies);
            load.errors += errors;
        }
        load.per_second = load.latencies.len() as f64 / elapsed.as_secs_f64();
        load
    }
}
