//! What executions leave in the cgroup hierarchy: nothing, once each is over, whatever it did
//! (returned, left a process running, ran out of time), on the cold path and forked from a
//! template alike, under nsjail and compat as root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::wait;
use crate::process::Binary;

/// How long teardown may take after the last answer (it runs in the background).
const TEARDOWN_WITHIN: Duration = Duration::from_secs(10);

const SCRIPTS: &[&str] = &[
    "def main():\n    return 1\n",
    "import subprocess, sys\ndef main():\n    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n    return 2\n",
    "import time\ndef main():\n    time.sleep(60)\n",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_leave_no_cgroup_behind() {
    // Both sandboxes that use cgroups (Lambda's conditions have none).
    for (sandbox, templates) in [
        ("nsjail", "0"),
        ("nsjail", "1"),
        ("compat", "0"),
        ("compat", "1"),
    ] {
        let env = [
            ("SANDBOX", sandbox),
            ("TEMPLATES", templates),
            // Spares wait in cgroups of their own; without them every cgroup is a request's.
            ("SPARE_FORKS", "0"),
            ("MAX_TIMEOUT_S", "2"),
        ];
        let service = Binary::start(&env, None);
        assert_eq!(
            service.health().await["cgroup"],
            "v1",
            "this test expects the development machine's cgroup v1 (the v2 VM check covers v2)"
        );
        let prefix = format!("exec-{}-", service.pid());
        for script in SCRIPTS {
            let (status, body) = service.execute(script, None).await;
            assert!(
                status == 200 || body["code"] == "TIMEOUT",
                "{status}: {body}"
            );
        }
        let left = wait::until(TEARDOWN_WITHIN, || {
            let left = execution_cgroups(Path::new("/sys/fs/cgroup"), &prefix, 3);
            left.is_empty().then_some(())
        });
        assert!(
            left.is_some(),
            "{sandbox}, TEMPLATES={templates}: cgroups left after every execution ended: {:?}\n{}",
            execution_cgroups(Path::new("/sys/fs/cgroup"), &prefix, 3),
            service.log()
        );
    }
}

/// A spare dropped because its template was replaced (the data template growing by
/// matplotlib) takes its cgroup with it: once the old template has retired, the only execution
/// cgroups left are those of the two spares waiting, one per template.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_templates_spare_leaves_no_cgroup() {
    for sandbox in ["nsjail", "compat"] {
        let service = Binary::start(&[("SANDBOX", sandbox), ("TEMPLATES", "1")], None);
        let plots = "import matplotlib.pyplot\ndef main():\n    return 1\n";
        let (status, body) = service.execute(plots, None).await;
        assert_eq!(status, 200, "{body}");
        let grown = wait::until_async(Duration::from_secs(30), || async {
            let health = service.health().await;
            let preload = &health["templates"]["data"]["preload"];
            let ready = health["templates"]["data"]["ready"] == true;
            (ready && preload.to_string().contains("matplotlib")).then_some(())
        })
        .await;
        assert!(grown.is_some(), "{sandbox}: the data template did not grow");
        let prefix = format!("exec-{}-", service.pid());
        let spares_only = wait::until(TEARDOWN_WITHIN, || {
            let names = execution_cgroup_names(&prefix);
            (names.len() == 2).then_some(())
        });
        assert!(
            spares_only.is_some(),
            "{sandbox}: execution cgroups other than the two spares': {:?}\n{}",
            execution_cgroup_names(&prefix),
            service.log()
        );
    }
}

/// The distinct names of the execution cgroups named `prefix...`, in every hierarchy.
fn execution_cgroup_names(prefix: &str) -> std::collections::BTreeSet<String> {
    execution_cgroups(Path::new("/sys/fs/cgroup"), prefix, 3)
        .iter()
        .filter_map(|path| Some(path.file_name()?.to_string_lossy().into_owned()))
        .collect()
}

/// Directories named `prefix...` below `dir`, `depth` levels down at most.
fn execution_cgroups(dir: &Path, prefix: &str, depth: usize) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if entry.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path);
        } else if depth > 0 {
            found.extend(execution_cgroups(&path, prefix, depth - 1));
        }
    }
    found
}
