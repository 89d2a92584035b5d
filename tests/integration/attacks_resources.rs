//! Attacks on resource limits: memory and processes across every process a script starts,
//! file size, open files, /tmp, output floods, and processes left running after main().

use serde_json::json;

use crate::common::procs::survivors;
use crate::support::{Kind, Service};

async fn memory_limit_holds_across_processes(kind: Kind) {
    let service = Service::start_with(kind, &[("MEMORY_LIMIT_MIB", "256")]).await;
    // Each child stays under the per-process limit; together they are far over the whole
    // execution's limit, which must hold anyway.
    let script = r#"
import os, time
def main():
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            block = bytearray(120 * 1024 * 1024)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(5)
            os._exit(0)
        pids.append(pid)
    block = bytearray(120 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    for pid in pids:
        os.waitpid(pid, 0)
    return "all allocated"
"#;
    let reply = service.run(script).await;
    assert_ne!(
        reply.status, 200,
        "over-limit allocations succeeded: {}",
        reply.body
    );
    reply.expect_error(422, "MEMORY_LIMIT");
    service.assert_still_healthy().await;
}

/// RLIMIT_CPU counts one process at a time; the execution's CPU limit holds across all of them.
async fn cpu_limit_holds_across_processes(kind: Kind) {
    let service = Service::start_with(kind, &[("CPU_LIMIT_S", "2")]).await;
    let script = r#"
import os, time
def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
def main():
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            spin(1.5)
            os._exit(0)
        pids.append(pid)
    spin(1.5)
    for pid in pids:
        os.waitpid(pid, 0)
    return "7.5 s of CPU in 2 s allowed"
"#;
    let reply = service.run(script).await;
    let body = reply.expect_error(422, "TIMEOUT");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("CPU")),
        "{body}"
    );
    service.assert_still_healthy().await;
}

async fn process_limit_stops_a_fork_bomb(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_PROCESSES", "16")]).await;
    let script = r#"
import os, time, errno
def main():
    children, refusal = 0, None
    for _ in range(200):
        try:
            pid = os.fork()
        except OSError as e:
            refusal = errno.errorcode.get(e.errno, str(e.errno))
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    return {"children": children, "refusal": refusal}
"#;
    let found = service.run(script).await.expect_result().clone();
    assert_eq!(found["refusal"], "EAGAIN", "{found}");
    assert!(found["children"].as_u64().unwrap_or(999) <= 16, "{found}");
    service.assert_still_healthy().await;
}

async fn file_size_and_open_files_are_capped(kind: Kind) {
    let service = Service::start_with(kind, &[("MAX_OPEN_FILES", "32")]).await;
    let script = r#"
import errno, os, tempfile
def main():
    found = {}
    try:
        with open(os.path.join(tempfile.gettempdir(), "big"), "wb") as f:
            f.write(b"x" * (3 * 1024 * 1024))
        found["big_file"] = "allowed"
    except OSError as e:
        found["big_file"] = errno.errorcode.get(e.errno, str(e.errno))
    handles = []
    try:
        for i in range(100):
            handles.append(open("/dev/null"))
        found["files"] = "allowed"
    except OSError as e:
        found["files"] = errno.errorcode.get(e.errno, str(e.errno))
    found["opened"] = len(handles)
    return found
"#;
    let found = service.run(script).await.expect_result().clone();
    assert_eq!(found["big_file"], "EFBIG", "{found}");
    assert_eq!(found["files"], "EMFILE", "{found}");
    assert!(found["opened"].as_u64().unwrap_or(999) < 32, "{found}");
    service.assert_still_healthy().await;
}

async fn output_floods_are_bounded(kind: Kind) {
    let service = Service::start(kind).await;
    let script = "import sys, os\ndef main():\n    chunk = 'A' * 65536\n    for _ in range(400):\n        sys.stdout.write(chunk)\n        os.write(2, chunk.encode())\n    return 'flooded'\n";
    let reply = service.run(script).await;
    assert_eq!(reply.expect_result(), &json!("flooded"));
    assert_eq!(
        reply.body["truncated"],
        json!({"stdout": true, "stderr": true})
    );
    assert_eq!(reply.body["stdout"].as_str().map(str::len), Some(1 << 20));
    assert_eq!(reply.body["stderr"].as_str().map(str::len), Some(1 << 20));
    service.assert_still_healthy().await;
}

async fn nothing_outlives_its_execution(kind: Kind) {
    let service = Service::start(kind).await;
    let marker = format!("pyexec-orphan-{}-{}", kind.name(), std::process::id());
    let script = r#"
import os, subprocess, sys
def main(marker):
    code = "import time\ntime.sleep(60)"
    plain = subprocess.Popen([sys.executable, "-c", code, marker])
    try:
        detached = subprocess.Popen([sys.executable, "-c", code, marker], start_new_session=True)
    except OSError:
        pass  # compat refuses setsid: nothing may leave the sandbox's process group
    if os.fork() == 0:
        try:
            os.setsid()
        except OSError:
            pass
        os.execv(sys.executable, [sys.executable, "-c", code, marker])
    return "left three behind"
"#;
    let reply = service
        .execute(json!({"script": script, "args": {"marker": marker}}))
        .await;
    assert_eq!(reply.expect_result(), &json!("left three behind"));
    // The sandbox is killed before the response; allow the kernel a moment to reap it.
    let survivors = survivors(&marker).await;
    assert!(survivors.is_empty(), "still running: {survivors:?}");
    service.assert_still_healthy().await;
}

/// A script writing up to `files` files of 1 MiB named `<place>fill<n>`; it answers how many
/// it wrote and the errno that stopped it, if one did.
fn filling_script(place: &str, files: u32) -> String {
    format!(
        r#"
import errno
def main():
    written = 0
    try:
        for i in range({files}):
            with open(f"{place}fill{{i}}", "wb") as f:
                f.write(b"x" * (1024 * 1024))
            written += 1
        return {{"written_mib": written, "stopped": None}}
    except OSError as e:
        return {{"written_mib": written, "stopped": errno.errorcode.get(e.errno, str(e.errno))}}
"#
    )
}

async fn tmp_is_size_capped(kind: Kind) {
    let service = Service::start(kind).await;
    let found = service
        .run(&filling_script("/tmp/", 200))
        .await
        .expect_result()
        .clone();
    assert_eq!(found["stopped"], "ENOSPC", "{found}");
    assert!(
        found["written_mib"].as_u64().unwrap_or(999) <= 64,
        "{found}"
    );
    service.assert_still_healthy().await;
}

for_each_limits_profile!(
    memory_limit_holds_across_processes,
    cpu_limit_holds_across_processes,
    process_limit_stops_a_fork_bomb,
    file_size_and_open_files_are_capped,
    output_floods_are_bounded,
    nothing_outlives_its_execution,
);

// nsjail only: its /tmp is a size-capped tmpfs. compat's scratch directory lives on the host's
// disk with no quota (only each file is capped, by RLIMIT_FSIZE): a known gap, documented in
// docs/sandboxes.md, not a property compat claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsjail_tmp_is_size_capped() {
    tmp_is_size_capped(Kind::Nsjail).await
}

/// compat as root keeps each execution's working directory in memory (`/dev/shm`, where it is a
/// tmpfs of at least half the machine's memory, as on this machine and most hosts), so what a
/// script writes there is charged to its memory cgroup: its memory limit caps its files too,
/// and a script cannot fill the host's memory through its working directory. Either the
/// writes fail or the script is killed at the limit; the service stays healthy either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_working_directory_is_capped_by_the_memory_limit() {
    const LIMIT_MIB: u64 = 128;
    let limit = LIMIT_MIB.to_string();
    let service = Service::start_with(Kind::Compat, &[("MEMORY_LIMIT_MIB", &limit)]).await;
    let place = service
        .run("import os\ndef main():\n    return os.getcwd()")
        .await
        .expect_result()
        .clone();
    assert!(
        place
            .as_str()
            .is_some_and(|cwd| cwd.starts_with("/dev/shm/")),
        "this machine's /dev/shm is a large tmpfs, so compat's working directory is in it: {place}"
    );
    let reply = service.run(&filling_script("", 400)).await;
    if reply.status == 200 {
        let found = &reply.body["result"];
        assert!(
            found["stopped"].is_string(),
            "400 MiB were written: {found}"
        );
        assert!(
            found["written_mib"].as_u64().unwrap_or(u64::MAX) <= LIMIT_MIB,
            "more than the memory limit was written: {found}"
        );
    } else {
        reply.expect_error(422, "MEMORY_LIMIT");
    }
    service.assert_still_healthy().await;
    let after = service.run("def main():\n    return 'fine'").await;
    assert_eq!(after.expect_result(), "fine");
}
