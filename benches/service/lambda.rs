//! The Lambda entry point under the AWS Lambda Runtime Interface Emulator, frozen between
//! invocations as Lambda freezes an idle execution environment: what a spaced invocation costs
//! when nothing of the service (its templates, its background teardown) could run in between.
//!
//! The emulator starts the service itself; the emulator and every process below it go into a
//! freezer cgroup. After each answer (and a short settle, as Lambda freezes once the response
//! is out) the tree is frozen, left frozen for a while, and thawed right before the next
//! invocation is sent; the latency is measured by the client from the thaw to the answer. The
//! same sequence of `/health` invocations, which run nothing, gives the floor under it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::freezer::Freezer;
use crate::lambda_support::events;
use crate::lambda_support::rie::Rie;
use crate::report::{percentile_ms, Figures, Kind};

/// Between the answer and the freeze: Lambda freezes once the response is sent, not at the
/// instant the client has it.
const SETTLE: Duration = Duration::from_millis(5);
/// Between an answer and the next spaced invocation (as the HTTP figures are spaced).
const SPACING: Duration = Duration::from_millis(250);

/// What the frozen sequence is run with.
#[derive(Debug)]
pub struct FrozenPlan {
    pub invocations: usize,
    pub frozen_for: Duration,
}

/// Where the emulator and the service run: as root on this machine, or under Lambda's
/// conditions (an unprivileged uid, no user namespaces, no Landlock, no cgroups), as the
/// compat sandbox meets them on AWS Lambda.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conditions {
    Host,
    Lambda,
}

/// An unprivileged uid that owns nothing, for the service under Lambda's conditions.
const LAMBDA_UID: u32 = 29_994;

impl Conditions {
    fn prefix(self) -> &'static str {
        match self {
            Self::Host => "Lambda",
            Self::Lambda => "Lambda's conditions",
        }
    }
}

/// The figures of one configuration (`env` for the service, `label` naming it in notes), or
/// dashes with a note saying why.
pub async fn measure(
    label: &str,
    (env, conditions): (&[(&str, &str)], Conditions),
    plan: &FrozenPlan,
    script: &str,
    out: &mut Figures,
) {
    let names = [
        "frozen: first invocation, init incl. (ms)",
        "spaced, not frozen: numpy/pandas p50 (ms)",
        "frozen: numpy/pandas p50 (ms)",
        "frozen: numpy/pandas p95 (ms)",
        "frozen: warm_start true (count)",
        "frozen: invocations",
        "frozen: GET /health p50 (ms) (floor)",
        "frozen: of numpy/pandas, the thaw p50 (ms)",
    ]
    .map(|name| format!("{} {name}", conditions.prefix()));
    match run(env, conditions, plan, script).await {
        Ok(run) => {
            let first = run.first.as_secs_f64() * 1000.0;
            out.push(&names[0], Kind::Lower, Some(first));
            out.push(&names[1], Kind::Lower, percentile_ms(&run.spaced, 0.50));
            let p50 = percentile_ms(&run.latencies, 0.50);
            out.push(&names[2], Kind::Lower, p50);
            let p95 = percentile_ms(&run.latencies, 0.95);
            out.push(&names[3], Kind::Lower, p95);
            out.push(&names[4], Kind::Count, Some(run.warm as f64));
            out.push(&names[5], Kind::Count, Some(run.latencies.len() as f64));
            let floor = percentile_ms(&run.health, 0.50);
            out.push(&names[6], Kind::Lower, floor);
            out.push(&names[7], Kind::Lower, percentile_ms(&run.thaws, 0.50));
            if run.not_frozen > 0 {
                let n = run.not_frozen;
                out.notes
                    .push(format!("{label}: {n} freezes took over 2 s to complete"));
            }
        }
        Err(reason) => {
            for name in &names {
                out.push(name, Kind::Lower, None);
            }
            out.notes
                .push(format!("{} rows skipped: {reason}", conditions.prefix()));
        }
    }
}

#[derive(Debug)]
struct Run {
    first: Duration,
    /// Invocations a spacing apart, nothing frozen: the warm path itself.
    spaced: Vec<Duration>,
    latencies: Vec<Duration>,
    /// Of each latency, how long the freezer took to thaw the tree: the emulation's own cost,
    /// which Lambda's thaw (of a whole VM) does not have in this form.
    thaws: Vec<Duration>,
    /// The same sequence for `/health`.
    health: Vec<Duration>,
    warm: usize,
    not_frozen: usize,
}

async fn run(
    env: &[(&str, &str)],
    conditions: Conditions,
    plan: &FrozenPlan,
    script: &str,
) -> Result<Run, String> {
    let rie_path = crate::lambda_support::repo_root().join(".tools/bin/aws-lambda-rie");
    if !rie_path.is_file() {
        return Err(format!("{} is missing (make tools)", rie_path.display()));
    }
    // Before the emulator, so a missing hierarchy is said without starting anything.
    let freezer = Freezer::create(&format!("pyexec-bench-{}", std::process::id()))?;
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let rie = match conditions {
        Conditions::Host => Rie::start(&env),
        Conditions::Lambda => Rie::start_under_lambda(&env, LAMBDA_UID),
    };
    // Declared after `rie`, dropped before it: the tree is thawed and moved out before the
    // emulator's drop kills it (a frozen process cannot die until thawed).
    let freezer = freezer;
    let event = events::with_body(
        "function-url-execute-numpy.json",
        &json!({ "script": script }),
    );
    let pid = rie.process().pid();
    // The emulator starts the service on the first invocation, so moving it now puts the whole
    // tree inside from birth; moved again after that invocation in case it did not.
    freezer.adopt_tree(pid).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (status, body) = events::decode_response(&rie.invoke(&event).await);
    let first = started.elapsed();
    assert_eq!(status, 200, "the first invocation failed: {body}");
    let late = freezer.adopt_tree(pid).map_err(|e| e.to_string())?;
    if late > 0 {
        eprintln!("   {late} processes were moved into the freezer after the first invocation");
    }
    let mut run = Run {
        first,
        spaced: Vec::with_capacity(plan.invocations),
        latencies: Vec::with_capacity(plan.invocations),
        thaws: Vec::with_capacity(plan.invocations),
        health: Vec::with_capacity(plan.invocations),
        warm: 0,
        not_frozen: 0,
    };
    for _ in 0..plan.invocations {
        tokio::time::sleep(SPACING).await;
        let started = Instant::now();
        let (status, body) = events::decode_response(&rie.invoke(&event).await);
        assert_eq!(status, 200, "a spaced invocation failed: {body}");
        run.spaced.push(started.elapsed());
    }
    for _ in 0..plan.invocations {
        let (latency, thaw, body) =
            frozen_invocation(&rie, &freezer, &event, plan, &mut run).await?;
        run.latencies.push(latency);
        run.thaws.push(thaw);
        if body["usage"]["warm_start"] == true {
            run.warm += 1;
        }
    }
    // The same sequence for /health, which runs nothing: the floor this machine sets under
    // the figures above (a thawed VM's slow start, the emulator's own round trip).
    let health = events::read("function-url-health.json");
    for _ in 0..plan.invocations {
        let (latency, _, _) = frozen_invocation(&rie, &freezer, &health, plan, &mut run).await?;
        run.health.push(latency);
    }
    drop(freezer);
    if std::env::var_os("BENCH_RUST_LOG").is_some() {
        eprintln!("{}", rie.process().log());
    }
    Ok(run)
}

/// Freezes the tree (after the settle), leaves it frozen, thaws it and invokes the function
/// with `event`: the latency from the thaw to the answer, the thaw's share of it, and the
/// decoded answer's body.
async fn frozen_invocation(
    rie: &Rie,
    freezer: &Freezer,
    event: &str,
    plan: &FrozenPlan,
    run: &mut Run,
) -> Result<(Duration, Duration, serde_json::Value), String> {
    tokio::time::sleep(SETTLE).await;
    if !freezer.freeze().await.map_err(|e| e.to_string())? {
        run.not_frozen += 1;
    }
    // Deliberate: the time frozen is the scenario (an idle execution environment), not a wait
    // for anything.
    tokio::time::sleep(plan.frozen_for).await;
    let thawed = Instant::now();
    freezer.thaw().map_err(|e| e.to_string())?;
    let thaw = thawed.elapsed();
    let payload = rie.invoke(event).await;
    let latency = thawed.elapsed();
    let (status, body) = events::decode_response(&payload);
    assert_eq!(status, 200, "a frozen-sequence invocation failed: {body}");
    Ok((latency, thaw, body))
}
