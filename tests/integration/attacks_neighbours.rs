//! Attacks on whoever comes next: the sandboxes waiting for later callers, the service itself
//! and its threads, and anything a script could leave behind for the next execution. On Lambda
//! all of them share the script's uid, so these are the tests that matter most there.
//!
//! The test process finds the real targets (its own pid and threads, the pool's waiting
//! sandboxes) and hands them to the attacking script; every attempt must fail, and then the
//! next callers, with their own arguments, must get exactly their own answers.

use serde_json::json;

use crate::support::{Kind, Service};

/// Every process descended from this one (the service runs in-process): the pool's sandboxes.
fn descendants_of_this_process() -> Vec<i32> {
    crate::common::procs::descendants(std::process::id())
        .into_iter()
        .map(|pid| pid as i32)
        .collect()
}

fn own_threads() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

const NEIGHBOUR_ATTACK: &str = r#"
import ctypes, errno, fcntl, os, resource, signal
libc = ctypes.CDLL(None, use_errno=True)
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def raw(nr, *args):
    ctypes.set_errno(0)
    if libc.syscall(nr, *[ctypes.c_long(a) for a in args]) < 0:
        raise OSError(ctypes.get_errno(), "")
def open_fd(pid, fd, mode):
    def run():
        f = open(f"/proc/{pid}/fd/{fd}", mode)
        if "w" in mode:
            f.write(b'{"status":"ok","result":"FORGED"}')
        else:
            f.read(1)
    return run
def sigqueue(pid):
    info = ctypes.create_string_buffer(128)
    ctypes.c_int.from_buffer(info, 8).value = -1   # si_code = SI_QUEUE
    ctypes.set_errno(0)
    if libc.syscall(129, ctypes.c_long(pid), ctypes.c_long(0), info) < 0:
        raise OSError(ctypes.get_errno(), "")
def setown(pid):
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETOWN, pid)
def attacks(pid):
    return {
        "stdin": attempt(open_fd(pid, 0, "rb")),
        "stdout": attempt(open_fd(pid, 1, "wb")),
        "channel": attempt(open_fd(pid, 3, "wb")),
        "fds": attempt(lambda: os.listdir(f"/proc/{pid}/fd")),
        "mem": attempt(lambda: open(f"/proc/{pid}/mem", "rb").read(1)),
        "environ": attempt(lambda: open(f"/proc/{pid}/environ", "rb").read(1)),
        "prlimit": attempt(lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (8, 8))),
        "setpriority": attempt(lambda: os.setpriority(os.PRIO_PROCESS, pid, 19)),
        "affinity": attempt(lambda: os.sched_setaffinity(pid, {0})),
        "scheduler": attempt(lambda: os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))),
        "ioprio": attempt(lambda: raw(251, 1, pid, (3 << 13) | 7)),
        "kill": attempt(lambda: os.kill(pid, 0)),
        "tgkill": attempt(lambda: raw(234, pid, pid, 0)),
        "tkill": attempt(lambda: raw(200, pid, 0)),
        "sigqueue": attempt(lambda: sigqueue(pid)),
        "setown": attempt(lambda: setown(pid)),
    }
def main(targets):
    mine = os.getpgrp()
    found = {}
    for pid in targets:
        try:
            if os.getpgid(pid) == mine:
                continue   # this execution's own processes
        except OSError:
            pass
        found[str(pid)] = attacks(pid)
    # The script's own supervisor (its parent): signals are its own business, but its limits,
    # scheduling, fds and memory are not.
    supervisor = attacks(os.getppid())
    for signal_attack in ("kill", "tgkill", "tkill", "sigqueue"):
        supervisor.pop(signal_attack)
    found["supervisor"] = supervisor
    found["everyone"] = {
        "kill_all": attempt(lambda: os.kill(-1, 0)),
        "renice_user": attempt(lambda: os.setpriority(os.PRIO_USER, 0, 19)),
        "ioprio_user": attempt(lambda: raw(251, 3, 0, (3 << 13) | 7)),
    }
    # What a script may do to itself and its own children stays possible.
    child = os.fork()
    if child == 0:
        signal.pause()
        os._exit(0)
    own = {
        "kill_child": attempt(lambda: os.kill(child, signal.SIGTERM)),
        "own_limits": attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))),
        "own_priority": attempt(lambda: os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0))),
        "group": attempt(lambda: os.killpg(0, 0)),
    }
    os.waitpid(child, 0)
    return {"neighbours": found, "own": own}
"#;

/// The next callers: each gets exactly its own result, output and arguments back.
async fn next_callers_get_their_own_answers(service: &Service) {
    let data = service
        .execute(json!({
            "script": "import numpy as np\ndef main(tag):\n    print('caller', tag)\n    return {'tag': tag, 'sum': int(np.sum([1, 2, 3]))}\n",
            "args": {"tag": "second"},
        }))
        .await;
    assert_eq!(
        data.expect_result(),
        &json!({"tag": "second", "sum": 6}),
        "{}",
        data.body
    );
    assert_eq!(data.body["stdout"], "caller second\n", "{}", data.body);
    service.assert_still_healthy().await;
}

async fn neighbours_are_out_of_reach(kind: Kind) {
    let service = Service::start(kind).await;
    service.wait_for_templates().await;
    let waiting = descendants_of_this_process();
    assert!(!waiting.is_empty(), "no waiting sandbox to attack");
    let mut targets = waiting;
    targets.extend(own_threads());
    let reply = service
        .execute(json!({"script": NEIGHBOUR_ATTACK, "args": {"targets": targets}}))
        .await;
    let found = reply.expect_result().clone();
    let neighbours = found["neighbours"].as_object().expect("findings");
    assert!(neighbours.len() > 2, "nothing was attacked: {found}");
    for (target, attempts) in neighbours {
        for (attack, outcome) in attempts.as_object().expect("attempts") {
            assert_ne!(
                outcome, "allowed",
                "{attack} on {target} was allowed: {found}"
            );
        }
    }
    for (what, outcome) in found["own"].as_object().expect("own") {
        assert_eq!(outcome, "allowed", "{what} on itself was refused: {found}");
    }
    next_callers_get_their_own_answers(&service).await;
}

/// What one execution writes where it can; the next must find none of it, and the places must
/// hold what they held before.
const LEAVE_BEHIND: &str = r#"
import os, stat, tempfile
def plant(base):
    try:
        os.makedirs(base + "/locked/inner", exist_ok=True)
        open(base + "/locked/inner/secret", "w").write("for the next caller")
        os.chmod(base + "/locked/inner", 0o500)
        os.chmod(base + "/locked", 0)
        deep = base + "/deep"
        os.makedirs(deep, exist_ok=True)
        here = os.open(deep, os.O_RDONLY)
        for _ in range(400):
            os.mkdir("d", dir_fd=here)
            nxt = os.open("d", os.O_RDONLY, dir_fd=here)
            os.close(here)
            here = nxt
        os.close(here)
        open(base + "/new\nline \x1b[31m", "w").write("odd")
        os.mkfifo(base + "/fifo")
        os.symlink("/etc", base + "/link")
        return "planted"
    except OSError as e:
        return f"refused: {e.strerror}"
def main():
    places = {}
    for base in dict.fromkeys((tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm")):
        places[base] = plant(base + "/pyexec-leftover")
    return places
"#;

const LOOK_FOR_LEFTOVERS: &str = r#"
import os, tempfile
def main():
    found = {}
    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"):
        try:
            found[base] = [n for n in os.listdir(base) if "pyexec-leftover" in n or "scrub" in n]
        except OSError:
            found[base] = []
    # Writing the literal /tmp works, as it does under nsjail.
    try:
        open("/tmp/mine", "w").write("x")
        found["literal_tmp"] = "writable"
    except OSError as e:
        found["literal_tmp"] = e.strerror
    return found
"#;

/// Blocks in use on the filesystem holding `path`.
fn used_blocks(path: &str) -> u64 {
    let path = std::ffi::CString::new(path).expect("path");
    // SAFETY: statvfs fills the struct for a NUL-terminated path.
    unsafe {
        let mut stats: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut stats), 0, "statvfs");
        stats.f_blocks - stats.f_bfree
    }
}

async fn nothing_written_survives_an_execution(kind: Kind) {
    let service = Service::start(kind).await;
    let tmp_before = used_blocks("/tmp");
    let planted = service.run(LEAVE_BEHIND).await;
    let planted = planted.expect_result().clone();
    // Somewhere was writable: the scratch directory (the script's TMPDIR) at least.
    assert!(
        planted
            .as_object()
            .expect("places")
            .values()
            .any(|v| v == "planted"),
        "{planted}"
    );
    let found = service
        .run(LOOK_FOR_LEFTOVERS)
        .await
        .expect_result()
        .clone();
    for (place, leftovers) in found.as_object().expect("places") {
        if place != "literal_tmp" {
            assert_eq!(leftovers, &json!([]), "left behind in {place}: {found}");
        }
    }
    // nsjail's /tmp is private; on Lambda executions take turns on the real /tmp; under compat
    // as root each execution writes it under a uid of its own.
    assert_eq!(found["literal_tmp"], "writable", "{found}");
    // On the host, too: nothing under the places the service uses.
    for host_place in ["/tmp", "/var/tmp", "/dev/shm"] {
        let leftovers: Vec<String> = std::fs::read_dir(host_place)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.contains("pyexec-leftover") || name.contains("scrub"))
                    .collect()
            })
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{host_place} holds {leftovers:?}");
    }
    next_callers_get_their_own_answers(&service).await;
    if kind == Kind::Lambda {
        // The disk as it was found: this profile's /tmp is its own, so its usage tells. (One
        // more execution first: each one waits for the previous one's cleanup.)
        service
            .run("def main():\n    return 1\n")
            .await
            .expect_result();
        assert_eq!(used_blocks("/tmp"), tmp_before, "/tmp's usage changed");
    }
}

/// What a script writes to the literal /tmp is its own while it runs (a concurrent neighbour
/// cannot read it) and gone once it has answered.
async fn literal_tmp_is_private_and_gone_after(kind: Kind) {
    let service = Service::start(kind).await;
    let name = format!("/tmp/pyexec-private-{}", std::process::id());
    let writer = r#"
import time
def main(name):
    with open(name, "w") as f:
        f.write("mine")
    time.sleep(3)
    return open(name).read()
"#;
    let reader = r#"
import errno, os
def main(name):
    try:
        return open(name).read()
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
"#;
    let read =
        |script: &'static str| service.execute(json!({"script": script, "args": {"name": &name}}));
    let (written, beside) = tokio::join!(read(writer), async {
        // Executions never overlap under Lambda's conditions: no neighbour to try there.
        if kind == Kind::Lambda {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        Some(read(reader).await)
    });
    assert_eq!(written.expect_result(), &json!("mine"), "{}", written.body);
    if let Some(beside) = beside {
        let expected = if kind == Kind::Nsjail {
            "ENOENT"
        } else {
            "EACCES"
        };
        assert_eq!(beside.expect_result(), &json!(expected), "{}", beside.body);
    }
    let after = read(reader).await;
    assert_eq!(after.expect_result(), &json!("ENOENT"), "{}", after.body);
}

async fn ipc_and_exotic_sockets_are_refused(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
def sys_call(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return "allowed" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
def pair(family):
    try:
        socket.socketpair(family, socket.SOCK_STREAM)
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def main():
    return {
        # System V IPC and POSIX message queues outlive the process that made them.
        "shmget": sys_call(29, 0x5045, 4096, 0o1000 | 0o600),
        "semget": sys_call(64, 0x5045, 1, 0o1000 | 0o600),
        "msgget": sys_call(68, 0x5045, 0o1000 | 0o600),
        "mq_open": sys_call(240, ctypes.cast(ctypes.c_char_p(b"pyexec"), ctypes.c_void_p).value, 0o100 | 2, 0o600, 0),
        "socketpair_vsock": pair(40),
        "socketpair_tipc": pair(30),
        "socketpair_unix": pair(socket.AF_UNIX),
        # x32 system calls (x86_64 numbers with bit 30 set): getpid, and x32's own ioctl.
        "x32_getpid": sys_call(0x40000000 | 39),
        "x32_ioctl": sys_call(0x40000000 | 514, 0, 0, 0),
    }
"#;
    let found = service.run(script).await.expect_result().clone();
    for call in ["shmget", "semget", "msgget", "mq_open"] {
        assert_eq!(found[call], "EPERM", "{call}: {found}");
    }
    assert_eq!(found["socketpair_vsock"], "EACCES", "{found}");
    assert_eq!(found["socketpair_tipc"], "EACCES", "{found}");
    assert_eq!(found["socketpair_unix"], "allowed", "{found}");
    assert_eq!(found["x32_getpid"], "ENOSYS", "{found}");
    assert_eq!(found["x32_ioctl"], "ENOSYS", "{found}");
    service.assert_still_healthy().await;
}

for_each_sandbox!(
    neighbours_are_out_of_reach,
    nothing_written_survives_an_execution,
    literal_tmp_is_private_and_gone_after,
    ipc_and_exotic_sockets_are_refused,
);
