//! Attacks on isolation: the network, the host's identity, secrets and files, and the kernel.
//! Each script tries to break a property of docs/design.md section 3 and reports what happened;
//! the test checks that every attempt failed, then that the service still works.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Kind, Service};

/// Runs an attack script whose main() returns a dict of findings.
async fn findings(service: &Service, script: &str) -> Value {
    let reply = service.run(script).await;
    reply.expect_result().clone()
}

async fn no_network_by_any_route(kind: Kind) {
    let service = Service::start(kind).await;
    // A real listener on the host's loopback, for the script to try to reach.
    let listener = crate::common::ports::loopback_listener();
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        r#"
import socket, errno
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def main():
    return {{
        "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
        "inet6": attempt(lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)),
        "raw": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
        "packet": attempt(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),
        "netlink": attempt(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)),
        "connect": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
        "dns": attempt(lambda: socket.getaddrinfo("example.com", 80)),
        "unix": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()),
    }}
"#
    );
    let found = findings(&service, &script).await;
    for family in ["inet", "inet6", "raw", "packet", "netlink", "connect"] {
        assert_eq!(found[family], "EACCES", "{family}: {found}");
    }
    assert_ne!(found["dns"], "allowed", "{found}");
    // Local IPC stays available; it reaches nothing outside the sandbox.
    assert_eq!(found["unix"], "allowed", "{found}");
    assert!(listener.accept().is_err(), "nothing connected to the host");
    service.assert_still_healthy().await;
}

async fn runs_unprivileged_without_capabilities(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import os
def main():
    caps = {}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs"):
            caps[key] = value.strip()
    try:
        os.setuid(0)
        setuid = "allowed"
    except OSError as e:
        setuid = e.errno
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "caps": caps, "setuid": setuid}
"#;
    let found = findings(&service, script).await;
    match kind {
        Kind::Nsjail => assert_eq!(found["uid"], 65534, "{found}"),
        // compat runs each execution under a uid of its own (the service here is root).
        Kind::Compat => assert!(found["uid"].as_u64().is_some_and(|uid| uid > 0), "{found}"),
        // On Lambda the script shares the service's unprivileged uid.
        // SAFETY: getuid cannot fail.
        Kind::Lambda => assert_eq!(found["uid"], unsafe { libc::getuid() }, "{found}"),
    }
    assert_eq!(found["euid"], found["uid"], "{found}");
    assert_eq!(found["caps"]["CapEff"], "0000000000000000", "{found}");
    assert_eq!(found["caps"]["CapAmb"], "0000000000000000", "{found}");
    assert_eq!(found["caps"]["NoNewPrivs"], "1", "{found}");
    assert_ne!(found["setuid"], "allowed", "{found}");
    service.assert_still_healthy().await;
}

async fn host_environment_and_secrets_are_invisible(kind: Kind) {
    // A secret in the service's own environment, as a deployer's credentials would be.
    std::env::set_var("PYEXEC_TEST_SECRET", "hunter2-in-env");
    let service = Service::start(kind).await;
    let script = r#"
import os
def readable(path):
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode("latin-1")
    except OSError as e:
        return "denied:" + type(e).__name__
def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
def main():
    procs = [p for p in listing("/proc") if p.isdigit()]
    return {
        "environ": dict(os.environ),
        "init_environ": readable("/proc/1/environ"),
        "passwd": readable("/etc/passwd"),
        "shadow": readable("/etc/shadow"),
        "root_home": readable("/root/.bashrc"),
        "root_listing": listing("/"),
        "pids": len(procs),
        "host_proc_1": readable("/proc/1/cmdline"),
    }
"#;
    let found = findings(&service, script).await;
    let text = found.to_string();
    assert!(!text.contains("hunter2"), "the secret leaked: {text}");
    let allowed = [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "PYTHONIOENCODING",
        "PYTHONDONTWRITEBYTECODE",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "LC_CTYPE",
        // matplotlib: Agg, and its prebuilt font cache in the read-only layer (MATPLOTLIBRC
        // is set by the harness, pointing at the same directory).
        "MPLBACKEND",
        "MPLCONFIGDIR",
        "MATPLOTLIBRC",
    ];
    for key in found["environ"].as_object().expect("environ").keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "unexpected variable {key}: {found}"
        );
    }
    // Without Landlock (Lambda) the image's world-readable files are readable, /etc/passwd
    // among them: an image holds nothing secret there. What its uid may not read stays shut.
    let secrets: &[&str] = match kind {
        Kind::Lambda => &["shadow", "root_home", "init_environ"],
        Kind::Nsjail | Kind::Compat => &["passwd", "shadow", "root_home", "init_environ"],
    };
    for secret_file in secrets {
        let content = found[secret_file].as_str().unwrap_or("");
        assert!(
            content.starts_with("denied:"),
            "{secret_file} readable: {found}"
        );
    }
    // Only the sandbox's own processes (supervisor and script) are visible, never the host's.
    // (compat, without a PID namespace, refuses to list /proc: pids is 0.)
    // (Lambda, without namespaces or Landlock, lists every pid: a documented limit; their
    // environments, memory and fds stay closed, see attacks_neighbours.)
    if kind != Kind::Lambda {
        assert!(found["pids"].as_u64().unwrap_or(99) <= 3, "{found}");
    }
    // compat cannot hide a process whose pid is guessed; its command line is world-readable
    // there as on any host, its environment (checked above) is not.
    assert!(
        kind != Kind::Nsjail
            || !found["host_proc_1"]
                .as_str()
                .unwrap_or("")
                .contains("systemd")
                && !found["host_proc_1"].as_str().unwrap_or("").contains("init"),
        "{found}"
    );
    let listing: Vec<String> = serde_json::from_value(found["root_listing"].clone()).expect("list");
    let hidden: &[&str] = match kind {
        // Lambda's root is the image's, readable as on any host (no Landlock, no mounts).
        Kind::Lambda => &[],
        Kind::Nsjail | Kind::Compat => &["etc", "home", "root", "var", "run", "sys", "boot", "srv"],
    };
    for host_dir in hidden {
        assert!(
            !listing.contains(&host_dir.to_string()),
            "/{host_dir} visible: {listing:?}"
        );
    }
    service.assert_still_healthy().await;
}

async fn the_runtime_and_root_are_read_only(kind: Kind) {
    let service = Service::start(kind).await;
    let script = r#"
import os, errno, sys, tempfile
def listing(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("owned")
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def openable_devices():
    found = []
    for name in listing("/dev"):
        path = "/dev/" + name
        if os.path.islink(path) or os.path.isdir(path):
            continue
        try:
            os.close(os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_NOCTTY))
            found.append(name)
        except OSError:
            pass
    return found
def main():
    site = [p for p in sys.path if p.endswith("site-packages")][0]
    return {
        "numpy": try_write(os.path.join(site, "numpy", "__init__.py")),
        "stdlib": try_write(os.path.join(os.path.dirname(os.__file__), "os.py")),
        "root": try_write("/evil"),
        "usr": try_write("/usr/evil"),
        "dev": listing("/dev"),
        "dev_openable": openable_devices(),
        "tmp": try_write(os.path.join(tempfile.gettempdir(), "fine")),
    }
"#;
    let found = findings(&service, script).await;
    for target in ["numpy", "stdlib", "root", "usr"] {
        assert_ne!(found[target], "allowed", "{target} writable: {found}");
    }
    assert_eq!(found["tmp"], "allowed", "{found}");
    // Lambda's /dev is the platform's (no mount namespace): what the script's uid can open
    // there must be harmless; elsewhere only the harmless devices exist at all.
    let (listed, allowed): (&str, &[&str]) = match kind {
        Kind::Lambda => (
            "dev_openable",
            &[
                "null", "zero", "full", "urandom", "random", "tty", "ptmx", "fuse",
            ],
        ),
        Kind::Nsjail | Kind::Compat => ("dev", &["null", "zero", "urandom", "random"]),
    };
    let devices: Vec<String> = serde_json::from_value(found[listed].clone()).expect("list");
    for device in &devices {
        assert!(
            allowed.contains(&device.as_str()),
            "unexpected device /dev/{device}: {devices:?}"
        );
    }
    service.assert_still_healthy().await;
}

async fn kernel_attack_surface_is_denied(kind: Kind) {
    let service = Service::start(kind).await;
    // Raw syscalls through ctypes, the way an exploit would make them (x86_64 numbers).
    let script = r#"
import ctypes, errno, os, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def sys_call(nr, *args):
    ctypes.set_errno(0)
    result = libc.syscall(nr, *args)
    return "allowed" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")
def main():
    found = {
        "ptrace": sys_call(101, 16, 1, 0, 0),             # PTRACE_ATTACH to pid 1
        "unshare_user": sys_call(272, 0x10000000),       # unshare(CLONE_NEWUSER)
        "unshare_net": sys_call(272, 0x40000000),
        "setns": sys_call(308, 0, 0),
        "mount": sys_call(165, b"none", b"/tmp", b"tmpfs", 0, 0),
        "bpf": sys_call(321, 0, 0, 0),
        "perf_event_open": sys_call(298, 0, 0, -1, -1, 0),
        "userfaultfd": sys_call(323, 0),
        "io_uring_setup": sys_call(425, 1, 0),
        "keyctl": sys_call(250, 0, 0, 0, 0, 0),
        "add_key": sys_call(248, b"user", b"k", b"v", 1, -3),
        "init_module": sys_call(175, 0, 0, b""),
        "kexec_load": sys_call(246, 0, 0, 0, 0),
        "clone_newuser": sys_call(56, 0x10000000 | 17, 0, 0, 0, 0),
        "clone3": sys_call(435, 0, 0),
        "process_vm_readv": sys_call(310, 1, 0, 0, 0, 0, 0),
    }
    # Ordinary process creation must keep working despite the clone rules.
    found["subprocess"] = subprocess.run([sys.executable, "-c", "print(7)"], capture_output=True, text=True).stdout
    found["fork"] = "ok"
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return found
"#;
    let found = findings(&service, script).await;
    for call in [
        "ptrace",
        "unshare_user",
        "unshare_net",
        "setns",
        "mount",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",
        "keyctl",
        "add_key",
        "init_module",
        "kexec_load",
        "clone_newuser",
        "process_vm_readv",
    ] {
        assert_eq!(found[call], "EPERM", "{call}: {found}");
    }
    assert_eq!(found["clone3"], "ENOSYS", "{found}");
    assert_eq!(found["subprocess"], "7\n", "{found}");
    assert_eq!(found["fork"], "ok");
    service.assert_still_healthy().await;
}

async fn tmp_is_private_and_vanishes(kind: Kind) {
    // Before the service starts: afterwards its own executions (the self-test) use /tmp too.
    let before = crate::support::tmp_entries_before(kind);
    let service = Service::start(kind).await;
    let marker = format!("/tmp/pyexec-host-marker-{}", std::process::id());
    std::fs::write(&marker, "host").expect("host marker");
    // A file the host keeps to itself. Under compat as root the literal /tmp is the host's,
    // shared under Unix permissions: what the host leaves there world-readable, any local
    // user (and so a script) can read (docs/sandboxes.md); nsjail hides even that.
    std::fs::set_permissions(&marker, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("host marker is private");
    let first = service
        .execute(json!({
            "script": "import os, tempfile\ndef readable(path):\n    try:\n        return open(path).read() == 'host'\n    except OSError:\n        return False\ndef main(marker):\n    tmp = tempfile.gettempdir()\n    open(os.path.join(tmp, 'left-behind'), 'w').write('secret')\n    return {'host_visible': readable(marker), 'listing': sorted(os.listdir(tmp)), 'tmp': tmp}\n",
            "args": {"marker": marker},
        }))
        .await;
    let found = first.expect_result();
    assert_eq!(found["host_visible"], false, "{found}");
    // outputs/ is the harness's, made for every script (see docs/api.md, Files in and out).
    assert_eq!(
        crate::support::without(&found["listing"], &before),
        json!(["left-behind", "outputs"]),
        "{found}"
    );
    let first_tmp = found["tmp"].as_str().unwrap_or("/tmp").to_owned();
    let second = service
        .run("import os, tempfile\ndef main():\n    return os.listdir(tempfile.gettempdir())\n")
        .await;
    assert_eq!(
        crate::support::without(second.expect_result(), &before),
        json!(["outputs"]),
        "nothing survives an execution but a fresh, empty outputs/"
    );
    assert!(!std::path::Path::new("/tmp/left-behind").exists());
    // compat's scratch directory is a real host directory: it must be gone once the first
    // execution's teardown is over, which may finish after its answer (and so after the
    // second's).
    let left_behind = std::path::Path::new(&first_tmp).join("left-behind");
    let gone = crate::common::wait::until_async(Duration::from_secs(10), || async {
        (!left_behind.exists()).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "{} outlived its execution",
        left_behind.display()
    );
    let _ = std::fs::remove_file(marker);
}

for_each_sandbox!(
    no_network_by_any_route,
    runs_unprivileged_without_capabilities,
    host_environment_and_secrets_are_invisible,
    the_runtime_and_root_are_read_only,
    kernel_attack_surface_is_denied,
    tmp_is_private_and_vanishes,
);
