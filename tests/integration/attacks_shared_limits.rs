//! Attacks on what one caller could take from the callers beside or after it: the process
//! quota (shared by every execution of a template where there are no cgroups), the shared
//! `/tmp` on Lambda (whose leftovers someone must remove), and CPU spent in processes that are
//! gone before the service's watch sees them.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Kind, Service};

/// Forks until refused, each child renamed `marker` and holding on, then holds on itself.
const HOLDS_ITS_WHOLE_QUOTA: &str = r#"
import ctypes, os, time
def main(marker):
    libc = ctypes.CDLL(None)
    held = 0
    while True:
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            libc.prctl(15, marker.encode(), 0, 0, 0)  # PR_SET_NAME
            time.sleep(60)
            os._exit(0)
        held += 1
    time.sleep(60)
    return held
"#;

/// Forks four processes and starts a thread: what any caller must be able to do.
const FORKS_FOUR: &str = r#"
import os, threading
def main():
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    return len(pids)
"#;

/// Processes on this machine named `marker` (the neighbour's, whatever namespace they are in).
fn named(marker: &str) -> usize {
    crate::common::procs::pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == marker)
        })
        .count()
}

/// A neighbour holding every process its quota allows leaves a concurrent caller (where
/// executions overlap), the template, its spares and the next caller able to fork.
async fn a_neighbour_holding_its_quota_takes_nothing_from_others(kind: Kind) {
    // Two spares: the caller beside the neighbour gets one forked before the neighbour took
    // its processes (a fork after it might fail and start cold, in a quota of its own).
    let settings = [("MAX_PROCESSES", "16"), ("SPARE_FORKS", "2")];
    let service = Service::start_with(kind, &settings).await;
    service.wait_for_templates().await;
    let marker = format!("nb{}", std::process::id() % 100_000);
    let neighbour = service.execute(json!({
        "script": HOLDS_ITS_WHOLE_QUOTA,
        "args": {"marker": marker},
        "timeout_s": 8,
    }));
    let beside = async {
        // Executions never overlap under Lambda's conditions: there the next caller is the test.
        if kind == Kind::Lambda {
            return None;
        }
        let holding = crate::common::wait::until_async(Duration::from_secs(6), || async {
            (named(&marker) >= 5).then_some(())
        })
        .await;
        assert!(holding.is_some(), "the neighbour never held its processes");
        Some(service.run(FORKS_FOUR).await)
    };
    let (neighbour, beside) = tokio::join!(neighbour, beside);
    neighbour.expect_error(422, "TIMEOUT");
    if let Some(beside) = beside {
        assert_eq!(beside.expect_result(), &json!(4), "{}", beside.body);
    }
    let after = service.run(FORKS_FOUR).await;
    assert_eq!(after.expect_result(), &json!(4), "{}", after.body);
    service.assert_still_healthy().await;
}

/// Children that burn CPU and are gone before the next sample, reaped by the kernel (their
/// parent ignores SIGCHLD) or orphaned: their time still counts against the CPU limit.
async fn cpu_of_processes_gone_still_counts(kind: Kind) {
    let service = Service::start_with(kind, &[("CPU_LIMIT_S", "1")]).await;
    for how in ["auto_reaped", "orphaned"] {
        let script = r#"
import os, signal, time
def burn(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
def main(how):
    if how == "auto_reaped":
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for _ in range(12):
        pid = os.fork()
        if pid == 0:
            if how == "orphaned" and os.fork() != 0:
                os._exit(0)
            burn(0.3)
            os._exit(0)
        if how == "orphaned":
            os.waitpid(pid, 0)
        time.sleep(0.35)
    return "3.6 s of CPU in 1 s allowed"
"#;
        let reply = service
            .execute(json!({"script": script, "args": {"how": how}}))
            .await;
        let body = reply.expect_error(422, "TIMEOUT");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("CPU")),
            "{how}: {body}"
        );
    }
    service.assert_still_healthy().await;
}

/// Under memory pressure the kernel's OOM killer picks a script before its template or the
/// service, and the script cannot change that. On Lambda no one may raise it: the script's
/// process is undumpable under an unprivileged uid, so its /proc files are root's (see
/// docs/sandboxes.md); its score stays the platform's, and it cannot lower it either.
async fn scripts_are_the_oom_killers_first_pick(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import errno
def score():
    with open("/proc/self/oom_score_adj") as f:
        return int(f.read())
def main():
    before = score()
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
        lowered = "allowed"
    except OSError as e:
        lowered = errno.errorcode.get(e.errno, str(e.errno))
    return {"score": before, "lowered": lowered, "after": score()}
"#;
    let found = service.run(script).await.expect_result().clone();
    let expected = if kind == Kind::Lambda { 0 } else { 1000 };
    assert_eq!(found["score"], expected, "{found}");
    assert_eq!(found["after"], expected, "{found}");
    assert_ne!(found["lowered"], "allowed", "{found}");
}

/// Entries in the service's /tmp that were not there at `before` (Lambda: the script's /tmp is
/// the service's own; elsewhere it is private, and the service's holds nothing of it).
fn new_tmp_entries(before: &[String]) -> usize {
    std::fs::read_dir("/tmp")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    !before.contains(&name) && !name.starts_with("python-executor-")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A script that fills /tmp with entries for its whole time limit pays for their removal
/// itself, at the end of its turn (after its answer): the next caller sees nothing of it.
async fn a_mess_in_tmp_is_gone_before_the_next_caller(kind: Kind) {
    let service = Service::start(kind).await;
    service.wait_for_templates().await;
    let seed = crate::seeds::NUMPY_PANDAS_SEED;
    let usual = timed(|| service.run(seed)).await;
    let before = crate::support::tmp_entries_before(kind);
    let mess = r#"
import os
def main():
    os.makedirs("/tmp/mess", exist_ok=True)
    open("/tmp/mess/0", "w").close()
    n = 1
    while True:
        for name in (f"/tmp/mess/{n}", f"/tmp/top-{n}"):
            os.link("/tmp/mess/0", name)
        n += 1
"#;
    let filled = service
        .execute(json!({"script": mess, "timeout_s": 3}))
        .await;
    assert_ne!(filled.status, 200, "{}", filled.body);
    if kind == Kind::Lambda {
        // The script's /tmp is the service's: the next script would see what is left there.
        let list = "import os\ndef main():\n    return sorted(os.listdir('/tmp'))\n";
        let listing = service.run(list).await;
        let seen = crate::support::without(listing.expect_result(), &before);
        assert_eq!(seen, json!([]), "the next caller saw the mess");
        let left = new_tmp_entries(&before);
        assert_eq!(
            left, 0,
            "the mess outlived the next execution: {left} entries"
        );
    }
    let next = timed(|| service.run(seed)).await;
    println!("seed example: {usual:?} before the mess, {next:?} after it");
    service.assert_still_healthy().await;
}

async fn timed<F: std::future::Future<Output = crate::support::Reply>>(
    request: impl FnOnce() -> F,
) -> Duration {
    let started = Instant::now();
    let reply = request().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    started.elapsed()
}

for_each_limits_profile!(
    a_neighbour_holding_its_quota_takes_nothing_from_others,
    cpu_of_processes_gone_still_counts,
    a_mess_in_tmp_is_gone_before_the_next_caller,
    scripts_are_the_oom_killers_first_pick,
);
