//! What the other front doors cost over `POST /execute`: the same script sent both ways, in
//! pairs on the same connection pool (the order alternating, each request spaced as the other
//! spaced figures), so drift on a shared machine hits both sides alike. The figure to read is the
//! median of the paired differences (target: under 2 ms); the medians of each side are printed
//! beside it.
//!
//! The MCP side is one stateless `tools/call` as an MCP client sends it after its handshake
//! (no handshake is needed by a stateless server, and a client makes it once per connection,
//! not per call): the JSON-RPC envelope, the transport, the tool's request and its result
//! (summary, structured content) are what it adds. The streamed side is `POST /execute` with
//! `Accept: text/event-stream`, read to its final event: the events' framing and the watch on
//! the output are what it adds.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::Service;
use crate::report::{percentile_ms, Figures, Kind, P50_P95_P99};

/// The protocol version the bench's requests declare (what the Python SDK negotiates with an
/// initialize handshake).
const PROTOCOL_VERSION: &str = "2025-11-25";

/// A front door measured against `POST /execute`.
#[derive(Clone, Copy, Debug)]
pub enum Door {
    Mcp,
    Streamed,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Self::Mcp => "MCP",
            Self::Streamed => "streamed",
        }
    }

    fn row(self) -> &'static str {
        match self {
            Self::Mcp => "numpy/pandas via MCP tools/call",
            Self::Streamed => "numpy/pandas via streamed /execute",
        }
    }

    async fn run(self, service: &Service, script: &str) -> Value {
        match self {
            Self::Mcp => call_tool(service, script).await,
            Self::Streamed => streamed(service, script).await,
        }
    }
}

/// Spaced pairs of `/execute` and `door` requests running `script`; rows for both and for
/// their difference. `expected` is the result both must answer.
pub async fn overhead(
    service: &Service,
    door: Door,
    (script, expected): (&str, &Value),
    (pairs, spacing): (usize, Duration),
    figures: &mut Figures,
) {
    let (mut direct, mut via_mcp, mut differences) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let mut timings = [Duration::ZERO; 2];
        // Alternate which goes first: the second of a pair may find caches warmer.
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let started = Instant::now();
            let result = if side == 0 {
                execute(service, script).await
            } else {
                door.run(service, script).await
            };
            timings[side] = started.elapsed();
            assert_eq!(&result, expected, "a benchmark request answered wrongly");
            // Deliberate: the requests are spaced, as the other spaced figures.
            tokio::time::sleep(spacing).await;
        }
        direct.push(timings[0]);
        via_mcp.push(timings[1]);
        differences.push(timings[1].as_secs_f64() * 1000.0 - timings[0].as_secs_f64() * 1000.0);
    }
    figures.percentiles("numpy/pandas via POST /execute", &direct, &P50_P95_P99[..1]);
    figures.percentiles(door.row(), &via_mcp, &P50_P95_P99[..1]);
    differences.sort_by(f64::total_cmp);
    let quantile = |q: f64| differences.get(((differences.len() - 1) as f64 * q) as usize);
    let median = quantile(0.5).copied();
    let name = door.name();
    figures.push(
        format!("{name} overhead, median of pairs (ms)"),
        Kind::Lower,
        median,
    );
    let p50 = percentile_ms(&via_mcp, 0.5).zip(percentile_ms(&direct, 0.5));
    if let (Some(overhead), Some((mcp, execute)), Some(low), Some(high)) =
        (median, p50, quantile(0.25), quantile(0.75))
    {
        let verdict = if overhead < 2.0 { "under" } else { "over" };
        // The spread says whether the median can be read at all: on the cold path, a fresh
        // interpreter's start varies by far more than the door costs.
        figures.notes.push(format!(
            "{name} overhead {overhead:.2} ms at the median of {pairs} pairs ({verdict} the 2 ms \
             target; the middle half of the differences spans {low:.1} to {high:.1} ms; p50 \
             {mcp:.1} ms {name}, {execute:.1} ms via /execute)"
        ));
    }
}

async fn execute(service: &Service, script: &str) -> Value {
    let reply = service
        .client()
        .post(service.url("/execute"))
        .json(&json!({ "script": script }))
        .send()
        .await
        .expect("/execute answers");
    assert_eq!(reply.status(), 200, "/execute failed");
    let body: Value = reply.json().await.expect("a JSON body");
    body["result"].clone()
}

async fn call_tool(service: &Service, script: &str) -> Value {
    let request = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "run_python", "arguments": {"code": script}},
    });
    let reply = service
        .client()
        .post(service.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .json(&request)
        .send()
        .await
        .expect("/mcp answers");
    assert_eq!(reply.status(), 200, "/mcp failed");
    let body: Value = reply.json().await.expect("a JSON-RPC body");
    let result = &body["result"];
    assert_eq!(result["isError"], false, "the tool call failed: {body}");
    result["structuredContent"]["result"].clone()
}

/// `POST /execute` as a stream of events, read to its end; the final event's result.
async fn streamed(service: &Service, script: &str) -> Value {
    let reply = service
        .client()
        .post(service.url("/execute"))
        .header("accept", "text/event-stream")
        .json(&json!({ "script": script }))
        .send()
        .await
        .expect("/execute answers");
    assert_eq!(reply.status(), 200, "the streamed /execute failed");
    let text = reply.text().await.expect("an event stream");
    let data = text
        .split("\n\n")
        .filter_map(|event| event.strip_prefix("event: result\ndata: "))
        .last()
        .expect("a final result event");
    let envelope: Value = serde_json::from_str(data).expect("a JSON envelope");
    envelope["result"].clone()
}
