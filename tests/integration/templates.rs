//! Templates: nothing crosses from one request to the next (files, environment, monkeypatched
//! modules, random state, processes, the warm-up), limits count from hand-over, a template that
//! dies is replaced while requests keep getting answers, and bounded concurrency answers a burst
//! with results or OVERLOADED, never a wrong answer.

use std::time::Duration;

use serde_json::json;

use crate::support::{Kind, Service};

const POLLUTER: &str = r#"
import os, sys, subprocess, builtins, tempfile
import numpy, pandas
def main():
    open(os.path.join(tempfile.gettempdir(), "left-behind"), "w").write("secret")
    os.environ["POLLUTED"] = "yes"
    numpy.mean = lambda *a, **k: "tampered"
    pandas.polluted = True
    builtins.polluted = True
    sys.modules["polluter_marker"] = sys
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "pyexec-polluter-child"])
    return "polluted"
"#;

const INSPECTOR: &str = r#"
import os, sys, builtins, tempfile
import numpy, pandas
def main():
    try:
        processes = len([p for p in os.listdir("/proc") if p.isdigit()])
    except OSError:
        processes = 0  # compat refuses to list /proc
    return {
        "tmp": os.listdir(tempfile.gettempdir()),
        "env": "POLLUTED" in os.environ,
        "numpy_mean": float(numpy.mean([1, 2, 3])),
        "pandas": hasattr(pandas, "polluted"),
        "builtins": hasattr(builtins, "polluted"),
        "marker": "polluter_marker" in sys.modules,
        "processes": processes,
    }
"#;

async fn forked_executions_share_nothing(kind: Kind) {
    // Before the service starts: afterwards its own executions (the self-test) use /tmp too.
    let before = crate::support::tmp_entries_before(kind);
    let service = Service::start(kind).await;
    service.wait_for_templates().await;
    let polluted = service.run(POLLUTER).await;
    assert_eq!(polluted.expect_result(), &json!("polluted"));
    assert_eq!(
        polluted.body["usage"]["warm_start"], true,
        "{}",
        polluted.body
    );
    service.wait_for_templates().await;
    let inspected = service.run(INSPECTOR).await;
    assert_eq!(
        inspected.body["usage"]["warm_start"], true,
        "{}",
        inspected.body
    );
    let found = inspected.expect_result();
    // Only the fresh outputs/ the harness makes for every script.
    let tmp = crate::support::without(&found["tmp"], &before);
    assert_eq!(tmp, json!(["outputs"]), "{found}");
    assert_eq!(found["env"], false, "{found}");
    assert_eq!(found["numpy_mean"], 2.0, "{found}");
    assert_eq!(found["pandas"], false, "{found}");
    assert_eq!(found["builtins"], false, "{found}");
    assert_eq!(found["marker"], false, "{found}");
    // The supervisor and the script: nothing left by the previous request. (Without a PID
    // namespace the listing is the host's: compat as root refuses it, Lambda's shows every
    // pid, a documented limit; there the host-side check below is what counts.)
    if kind == Kind::Nsjail {
        assert!(found["processes"].as_u64() <= Some(2), "{found}");
    }
    let survivors = crate::common::procs::survivors("pyexec-polluter-child").await;
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

async fn deadline_counts_from_hand_over(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_TIMEOUT_S", "2")]).await;
    service.wait_for_templates().await;
    // The templates have now existed longer than the deadline; a job that needs most of it
    // must still get all of it. (Waiting out the time is the point here, not a way to
    // synchronize: nothing else to wait for.)
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reply = service
        .run("import time, numpy\ndef main():\n    time.sleep(1)\n    return 'in time'\n")
        .await;
    assert_eq!(reply.expect_result(), &json!("in time"));
    assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
    let reply = service
        .run("import time\ndef main():\n    time.sleep(5)\n")
        .await;
    reply.expect_error(422, "TIMEOUT");
}

async fn limits_hold_in_forked_executions(kind: Kind) {
    let service =
        Service::start_with(kind, &[("MEMORY_LIMIT_MIB", "300"), ("CPU_LIMIT_S", "1")]).await;
    service.wait_for_templates().await;
    let memory = "import numpy as np\ndef main():\n    return int(np.ones(80_000_000).sum())\n";
    let reply = service.run(memory).await;
    assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
    reply.expect_error(422, "MEMORY_LIMIT");
    service.wait_for_templates().await;
    let reply = service.run("def main():\n    while True: pass\n").await;
    assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
    reply.expect_error(422, "TIMEOUT");
    service.assert_still_healthy().await;
}

async fn a_burst_gets_answers_or_overloaded(kind: Kind) {
    let service =
        Service::start_with(kind, &[("MAX_CONCURRENCY", "2"), ("QUEUE_WAIT_MS", "300")]).await;
    let script = "import time\ndef main(n):\n    time.sleep(0.4)\n    return n * 2\n";
    let requests = (0..30).map(|n| {
        let service = &service;
        async move {
            (
                n,
                service
                    .execute(json!({"script": script, "args": {"n": n}}))
                    .await,
            )
        }
    });
    let replies = futures::future::join_all(requests).await;
    let (mut answered, mut refused) = (0, 0);
    for (n, reply) in replies {
        if reply.status == 200 {
            assert_eq!(
                reply.expect_result(),
                &json!(n * 2),
                "request {n} got another's answer"
            );
            answered += 1;
        } else {
            reply.expect_error(503, "OVERLOADED");
            assert_eq!(reply.retry_after.as_deref(), Some("1"), "{:?}", reply.body);
            refused += 1;
        }
    }
    // Lambda's profile runs one execution at a time, whatever MAX_CONCURRENCY says.
    let capacity = if kind == Kind::Lambda { 1 } else { 2 };
    assert!(answered >= capacity, "some requests are served: {answered}");
    assert!(
        refused >= 1,
        "a burst far above capacity is refused in part: {refused}"
    );
    service.assert_still_healthy().await;
}

const DRAWS: &str = r#"
import random, secrets
import numpy
def main():
    return [random.random(), float(numpy.random.random()), int(numpy.random.randint(1 << 30)),
            float(numpy.random.default_rng().random())]
"#;

async fn every_execution_draws_its_own_random_numbers(kind: Kind) {
    let service = Service::start(kind).await;
    service.wait_for_templates().await;
    let first = service.run(DRAWS).await;
    let second = service.run(DRAWS).await;
    for reply in [&first, &second] {
        assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
    }
    let (first, second) = (first.expect_result(), second.expect_result());
    let draws = first.as_array().expect("draws").len();
    for index in 0..draws {
        assert_ne!(
            first[index], second[index],
            "two executions drew alike: {first} and {second}"
        );
    }
}

/// Looks for anything the harness's warm-up (layer/harness_warm_up.py) could have left: its
/// functions, its namespace, its source.
const WARM_UP_FINDER: &str = r#"
import gc, linecache
def main():
    objects = gc.get_objects()
    functions = [o for o in objects if callable(o)
                 and getattr(getattr(o, "__code__", None), "co_filename", "") == "<warm-up>"]
    namespaces = [o for o in objects if isinstance(o, dict) and o.get("__name__") == "__warm_up__"]
    return {"functions": len(functions), "namespaces": len(namespaces),
            "source": "<warm-up>" in linecache.cache}
"#;

async fn the_warm_up_leaves_nothing_behind(kind: Kind) {
    let service = Service::start(kind).await;
    service.wait_for_templates().await;
    for script in [
        WARM_UP_FINDER.to_owned(),
        format!("import numpy\n{WARM_UP_FINDER}"),
    ] {
        let reply = service.run(&script).await;
        assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
        let nothing = json!({"functions": 0, "namespaces": 0, "source": false});
        assert_eq!(reply.expect_result(), &nothing, "{script}");
    }
}

/// The pids of this process's descendants whose command line has every one of `words`.
fn descendants_running(words: &[&str]) -> Vec<i32> {
    crate::common::procs::descendants(std::process::id())
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            words.iter().all(|word| cmdline.contains(word))
        })
        .map(|pid| pid as i32)
        .collect()
}

/// The data template that imports exactly `preload`: the topmost process running it (its
/// children, forked executions, have the same command line), and under nsjail the template
/// inside the jail as well. Tests that look for their service's template give it a preload set
/// of its own (a harmless standard module added), since services of other tests run beside it
/// in this process.
/// Every process running a template's command line with `preload`: the template, its forked
/// executions and their script's processes.
fn running_template_command(preload: &str) -> Vec<i32> {
    // Every argument is followed by a NUL, shown as a space: the whole argument matches.
    let argument = format!("{preload} ");
    descendants_running(&["--template", "--preload", &argument])
}

pub(crate) fn data_template_processes(preload: &str) -> Vec<i32> {
    let matching = running_template_command(preload);
    let parent = |pid: i32| crate::common::procs::parent_of(pid as u32).map(|ppid| ppid as i32);
    let comm = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    // A spare's script process runs the same command line one process lower, under the
    // spare's supervisor (a program of its own): no ancestor of the template matches.
    let has_matching_ancestor = |pid: i32| {
        std::iter::successors(parent(pid), |ppid| parent(*ppid))
            .take_while(|ppid| *ppid > 1)
            .any(|ppid| matching.contains(&ppid))
    };
    let top: Vec<i32> = matching
        .iter()
        .copied()
        .filter(|pid| !has_matching_ancestor(*pid))
        .collect();
    let jailed = matching.iter().copied().filter(|pid| {
        parent(*pid).is_some_and(|ppid| top.contains(&ppid) && comm(ppid).trim() == "nsjail")
    });
    top.iter().copied().chain(jailed).collect()
}

async fn a_killed_template_is_replaced(kind: Kind) {
    let preload = "numpy,pandas,colorsys";
    let service = Service::start_with(kind, &[("PRELOAD", preload)]).await;
    service.wait_for_templates().await;
    let data_template = data_template_processes(preload);
    assert!(!data_template.is_empty(), "no data template found");
    let slow = "import time, numpy\ndef main():\n    time.sleep(1.5)\n    return 'done'\n";
    let in_flight = service.run(slow);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for pid in &data_template {
            // SAFETY: kill(2) on a process this test started (through the service).
            unsafe { libc::kill(*pid, libc::SIGKILL) };
        }
    };
    let (reply, ()) = tokio::join!(in_flight, killer);
    // Under nsjail the execution dies with the jail its template led: a clear service error.
    // In compat it outlives its template and answers.
    if reply.status == 200 {
        assert_eq!(reply.expect_result(), &json!("done"));
    } else {
        reply.expect_error(500, "SANDBOX_ERROR");
    }
    let replaced = crate::common::wait::until_async(Duration::from_secs(30), || async {
        let health = service.get("/health").await.body;
        let data = &health["templates"]["data"];
        (data["restarts"].as_u64() >= Some(1) && data["ready"] == true).then_some(())
    })
    .await;
    assert!(replaced.is_some(), "the killed template was not replaced");
    let reply = service
        .run("import numpy\ndef main():\n    return int(numpy.arange(4).sum())\n")
        .await;
    assert_eq!(reply.expect_result(), &json!(6));
    assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
    service.assert_still_healthy().await;
}

async fn templates_can_be_turned_off(kind: Kind) {
    let service = Service::start_with(kind, &[("TEMPLATES", "0")]).await;
    let health = service.get("/health").await;
    assert_eq!(health.body["templates"], serde_json::Value::Null);
    let reply = service.run("def main():\n    return 'cold'\n").await;
    assert_eq!(reply.expect_result(), &json!("cold"));
    assert_eq!(reply.body["usage"]["warm_start"], false);
}

/// Forks share their template's hash seed (and memory layout); a template is replaced after
/// `TEMPLATE_MAX_FORKS`, so executions further apart than that see different ones.
async fn executions_a_span_apart_see_different_hash_seeds(kind: Kind) {
    let settings = [("TEMPLATE_MAX_FORKS", "8"), ("SPARE_FORKS", "0")];
    let service = Service::start_with(kind, &settings).await;
    service.wait_for_templates().await;
    let seed = "def main():\n    return hash('python-executor')\n";
    let first = service.run(seed).await.expect_result().clone();
    let second = service.run(seed).await.expect_result().clone();
    assert_eq!(first, second, "forks of one template share its hash seed");
    let mut differing = None;
    for _ in 0..40 {
        let reply = service.run(seed).await;
        if reply.expect_result() != &first {
            differing = Some(reply.body["result"].clone());
            break;
        }
    }
    assert!(
        differing.is_some(),
        "40 executions later, the hash seed is still {first}"
    );
    let health = service.get("/health").await;
    let recycles = &health.body["templates"]["plain"]["recycles"];
    assert!(recycles.as_u64().is_some_and(|n| n >= 1), "{}", health.body);
    service.assert_still_healthy().await;
}

fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .map(|value| value.split_whitespace().next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// A template runs every module it preloads (and grows by) for every caller after, so it is
/// confined before it imports anything: no_new_privs, its own system-call policy, no core
/// dumps, no capability but those that switch its children to their uids (compat as root),
/// an unprivileged uid, and an empty working directory no one can write.
async fn a_template_is_confined_before_it_imports_anything(kind: Kind) {
    // A preload set of its own, to find this service's data template among the tests' (the
    // Lambda profile's run below this process too).
    let own_module = match kind {
        Kind::Nsjail => "stringprep",
        Kind::Compat => "netrc",
        Kind::Lambda => "shlex",
    };
    let preload = format!("numpy,pandas,{own_module}");
    let service = Service::start_with(kind, &[("PRELOAD", &preload)]).await;
    service.wait_for_templates().await;
    // Its spare, split into a supervisor and a script's process running the template's
    // command line, must not count as a second template.
    let spare_split = crate::common::wait::until(Duration::from_secs(10), || {
        running_template_command(&preload)
            .into_iter()
            .filter_map(|pid| crate::common::procs::parent_of(pid as u32))
            .any(|ppid| {
                std::fs::read_to_string(format!("/proc/{ppid}/comm"))
                    .is_ok_and(|comm| comm.starts_with("pyexec-super"))
            })
            .then_some(())
    });
    assert!(
        spare_split.is_some(),
        "the data template's spare never split"
    );
    let is_python = |pid: &i32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.starts_with("python"))
    };
    let templates: Vec<i32> = data_template_processes(&preload)
        .into_iter()
        .filter(is_python)
        .collect();
    let describe = |pid: &i32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        format!(
            "{pid}: ppid {} uid {}",
            status_field(&status, "PPid:"),
            status_field(&status, "Uid:")
        )
    };
    let described: Vec<String> = templates.iter().map(describe).collect();
    assert_eq!(templates.len(), 1, "templates found: {described:?}");
    for pid in templates {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        assert_eq!(status_field(&status, "NoNewPrivs:"), "1", "{status}");
        assert_eq!(status_field(&status, "Seccomp:"), "2", "{status}");
        let (uid, capabilities) = match kind {
            Kind::Nsjail => ("65534".to_owned(), "0000000000000000"),
            Kind::Compat => ("60999".to_owned(), "00000000000000c0"),
            // SAFETY: getuid cannot fail.
            Kind::Lambda => (unsafe { libc::getuid() }.to_string(), "0000000000000000"),
        };
        assert_eq!(status_field(&status, "Uid:"), uid, "{status}");
        assert_eq!(status_field(&status, "CapEff:"), capabilities, "{status}");
        if kind == Kind::Compat {
            assert_eq!(status_field(&status, "CapBnd:"), capabilities, "{status}");
        }
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let core = limits
            .lines()
            .find(|line| line.starts_with("Max core file size"));
        assert!(
            core.is_some_and(|line| line.split_whitespace().nth(4) == Some("0")),
            "{limits}"
        );
        // Only root may look at an undumpable process's working directory.
        if kind != Kind::Lambda {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).expect("cwd");
            assert!(
                cwd.ends_with("harness/empty"),
                "{pid} works in {}",
                cwd.display()
            );
        }
    }
    service.assert_still_healthy().await;
}

/// What the script's process is after the split (layer/isolate/src/split.rs): glibc's idea of
/// its thread id is its own (a lock taken, a thread joined, pyarrow's filesystems, which take
/// a rwlock), and its parent is the supervisor's small program, not a copy of the template.
const WHOLE_PROCESS: &str = r#"
import ctypes, os, threading
import pyarrow.fs
def main():
    libc = ctypes.CDLL(None)
    joined = []
    worker = threading.Thread(target=lambda: joined.append(threading.get_native_id()))
    worker.start()
    worker.join()
    info = pyarrow.fs.LocalFileSystem().get_file_info(".")
    with open(f"/proc/{os.getppid()}/stat", "rb") as stat:
        parent = stat.read().split(b"(")[1].split(b")")[0].decode()
    return {"tid": libc.gettid() == os.getpid() == threading.get_native_id(),
            "joined": joined[0] != os.getpid(), "dir": info.type == pyarrow.fs.FileType.Directory,
            "parent": parent}
"#;

async fn the_scripts_process_is_whole_and_its_parent_small(kind: Kind) {
    let service = Service::start(kind).await;
    service.wait_for_templates().await;
    let reply = service.run(WHOLE_PROCESS).await;
    assert_eq!(reply.body["usage"]["warm_start"], true, "{}", reply.body);
    assert_eq!(
        reply.expect_result(),
        &json!({"tid": true, "joined": true, "dir": true, "parent": "pyexec-supervis"}),
        "{}",
        reply.body
    );
    // abort() signals the process itself: glibc's thread id is the process's own.
    let aborted = service
        .run("import os\ndef main():\n    os.abort()\n")
        .await;
    assert_eq!(aborted.body["signal"], 6, "{}", aborted.body);
    service.assert_still_healthy().await;
}

for_each_sandbox!(
    the_scripts_process_is_whole_and_its_parent_small,
    a_template_is_confined_before_it_imports_anything,
    executions_a_span_apart_see_different_hash_seeds,
    forked_executions_share_nothing,
    deadline_counts_from_hand_over,
    limits_hold_in_forked_executions,
    every_execution_draws_its_own_random_numbers,
    the_warm_up_leaves_nothing_behind,
    a_killed_template_is_replaced,
    a_burst_gets_answers_or_overloaded,
    templates_can_be_turned_off,
);
