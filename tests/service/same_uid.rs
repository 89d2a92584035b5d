//! compat as on Lambda: the service runs unprivileged and the script under the same uid. The
//! script must still not reach the service's secrets, signal it, or reach loopback services.

use serde_json::Value;

use crate::common::ports::loopback_listener;
use crate::common::procs::survivors;
use crate::process::Binary;

/// An unprivileged uid for the service, as Lambda's sbx_user.
const SERVICE_UID: u32 = 4242;

/// The service's API key, given as Lambda gives it (in its environment): a secret too.
const KEY: &str = "hunter2-as-an-api-key";

fn unprivileged_compat_service() -> Binary {
    Binary::start(
        &[
            ("SANDBOX", "compat"),
            ("PYEXEC_TEST_SECRET", "hunter2-in-env"),
            ("API_KEYS", &format!("lambda={KEY}")),
        ],
        Some(SERVICE_UID),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_compat_and_its_layers() {
    let service = unprivileged_compat_service();
    let health = service.health().await;
    assert_eq!(health["sandbox"], "compat", "{health}");
    let layers: Vec<String> = serde_json::from_value(health["isolation"].clone()).expect("list");
    assert!(layers.contains(&"seccomp".to_string()), "{health}");
    assert!(layers.contains(&"no_new_privs".to_string()), "{health}");
    assert!(!layers.contains(&"namespaces".to_string()), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_keeps_its_secrets_from_a_same_uid_script() {
    let service = unprivileged_compat_service();
    let listener = loopback_listener();
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        r#"
import ctypes, errno, os, signal, socket
libc = ctypes.CDLL(None, use_errno=True)
def attempt(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
def read(path):
    return lambda: open(path, "rb").read()
def main(service={service}):
    ptrace = libc.ptrace(16, service, 0, 0)  # PTRACE_ATTACH
    return {{
        "uid": os.getuid(),
        "environ": attempt(read(f"/proc/{{service}}/environ")),
        "mem": attempt(read(f"/proc/{{service}}/mem")),
        "kill": attempt(lambda: os.kill(service, 0)),
        "kill_group": attempt(lambda: os.killpg(os.getpgid(service), signal.SIGTERM)),
        "kill_all": attempt(lambda: os.kill(-1, signal.SIGKILL)),
        "ptrace": "allowed" if ptrace == 0 else errno.errorcode.get(ctypes.get_errno(), "?"),
        "loopback": attempt(lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2)),
        "own_env": dict(os.environ),
    }}
"#,
        service = service.pid(),
    );
    let (status, body) = service.execute(&script, Some(KEY)).await;
    assert_eq!(status, 200, "{body}");
    let found = &body["result"];
    assert_eq!(
        found["uid"], SERVICE_UID,
        "the script shares the service's uid: {found}"
    );
    assert!(
        !body.to_string().contains("hunter2"),
        "the secret leaked: {body}"
    );
    for attack in ["environ", "mem", "kill", "kill_group", "kill_all", "ptrace"] {
        assert_ne!(found[attack], "allowed", "{attack}: {found}");
    }
    assert_eq!(found["loopback"], "EACCES", "{found}");
    assert!(
        listener.accept().is_err(),
        "nothing reached the loopback listener"
    );
    assert_env_is_the_sandboxs_own(&found["own_env"]);
    let (status, body) = service
        .execute("def main():\n    return 'alive'\n", Some(KEY))
        .await;
    assert_eq!(
        (status, &body["result"]),
        (200, &Value::from("alive")),
        "{body}"
    );
}

fn assert_env_is_the_sandboxs_own(env: &Value) {
    for key in env.as_object().expect("environ").keys() {
        assert!(
            !key.starts_with("AWS_") && !key.starts_with("API_KEY") && key != "PYEXEC_TEST_SECRET",
            "{key} reached the script"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_kills_its_supervisor_leaves_nothing_behind() {
    let service = unprivileged_compat_service();
    let marker = format!("pyexec-supervisor-{}", std::process::id());
    let script = format!(
        r#"
import os, signal, subprocess, sys
def main():
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "{marker}"])
    os.kill(os.getppid(), signal.SIGKILL)
    return "unreachable?"
"#
    );
    let (status, body) = service.execute(&script, Some(KEY)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("EMPTY_OUTPUT")),
        "{body}"
    );
    assert_eq!(survivors(&marker).await, Vec::<String>::new());
    let (status, _) = service
        .execute("def main():\n    return 1\n", Some(KEY))
        .await;
    assert_eq!(status, 200);
}
