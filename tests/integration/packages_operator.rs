//! An operator's own package, added as the docs say (docs/packages.md): one line in the list,
//! `make lock`'s resolver (tools/lock.py, uv from the registry) for the lock, and the layer
//! built from that lock. The layer is built over this checkout's (`LAYER_BASE`, which installs
//! only what the lock adds) so the test costs seconds, not a whole layer. A script importing the
//! package then answers in every profile, `GET /packages` lists it, and the templates' routing
//! learns from its metadata that it needs numpy, so it goes to the data template.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::packages::{canonical, lock_text, locked_pins};
use crate::support::{layer_dir, Kind, Service};

/// A small pure-Python package from the registry that needs numpy and nothing else, pinned as
/// exactly as an operator may bound it loosely: the test must not change with the registry.
const EXTRA: &str = "numpy-financial==1.0.0";

/// Says whether numpy was imported before the script's module code began (the data template).
const SCRIPT: &str = r#"
import sys
PRELOADED = "numpy" in sys.modules
import numpy_financial as npf
def main():
    return {"payment": round(float(npf.pmt(0.05 / 12, 60, 10000)), 2), "preloaded": PRELOADED}
"#;

async fn an_operators_package_answers_like_ours(kind: Kind) {
    let layer = operator_layer();
    let layer = layer.display().to_string();
    let service = Service::start_with(kind, &[("LAYER_DIR", &layer)]).await;
    service.wait_for_templates().await;
    let reply = service.run(SCRIPT).await;
    assert_eq!(
        reply.expect_result(),
        &json!({"payment": -188.71, "preloaded": true}),
        "{}",
        reply.body
    );
    let packages = service.get("/packages").await.body;
    let listed = packages["packages"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "numpy-financial"))
        .unwrap_or_else(|| panic!("numpy-financial is not listed: {packages}"));
    assert_eq!(listed["modules"], json!(["numpy_financial"]));
    let lock = fs::read_to_string(work_dir().join("requirements.txt")).expect("the lock");
    assert_eq!(
        Some(&listed["version"].as_str().expect("a version").to_owned()),
        locked_pins(&lock).get("numpy-financial")
    );
    service.assert_still_healthy().await;
}

/// The layer with [`EXTRA`] added through the list and the lock, built once per test run by
/// whichever test gets here first (the others wait on a lock file). Under Lambda's conditions
/// the file system is read-only: the layer is built before, by the test's parent.
fn operator_layer() -> PathBuf {
    let work = work_dir();
    let layer = work.join("layer");
    let key = inputs_key();
    let done = work.join("complete");
    if fs::read_to_string(&done).is_ok_and(|built| built == key) {
        return layer;
    }
    fs::create_dir_all(&work).expect("the work directory");
    let lock_file = File::create(work.with_extension("lock")).expect("a lock file");
    // SAFETY: flock on a descriptor this function owns; released when the file is dropped.
    let locked = unsafe { libc::flock(lock_file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(locked, 0, "flock: {}", std::io::Error::last_os_error());
    if fs::read_to_string(&done).is_ok_and(|built| built == key) {
        return layer;
    }
    let (list, lock) = (work.join("requirements.in"), work.join("requirements.txt"));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base_list = fs::read_to_string(repo.join("layer/requirements.in")).expect("the list");
    let extra = format!("{base_list}\n# An operator's package (the test's).\n{EXTRA}\n");
    fs::write(&list, extra).expect("the operator's list");
    fs::write(&lock, lock_text()).expect("the lock to start from");
    run(Command::new("python3")
        .arg(repo.join("tools/lock.py"))
        .args(["lock".as_ref(), list.as_os_str(), lock.as_os_str()]));
    check_only_added(&fs::read_to_string(&lock).expect("the operator's lock"));
    run(Command::new(repo.join("layer/build.sh"))
        .arg(&layer)
        .env("LAYER_BASE", layer_dir())
        .env("LAYER_LOCK", &lock));
    fs::write(&done, key).expect("the completion mark");
    layer
}

/// The resolver kept every pin of ours and added the package (with whatever it needs that we
/// lacked): an operator's addition moves nothing of the default set.
fn check_only_added(operator_lock: &str) {
    let ours = locked_pins(&lock_text());
    let theirs = locked_pins(operator_lock);
    for (name, version) in &ours {
        assert_eq!(
            theirs.get(name),
            Some(version),
            "{name} moved:\n{operator_lock}"
        );
    }
    assert!(
        theirs.contains_key(&canonical("numpy_financial")),
        "{operator_lock}"
    );
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command starts");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn work_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("operator-layer")
}

/// What the built layer depends on: our list and lock, the base layer's stamp, the extra.
fn inputs_key() -> String {
    let stamp = fs::read_to_string(layer_dir().join(".layer-stamp")).unwrap_or_default();
    let list = concat!(env!("CARGO_MANIFEST_DIR"), "/layer/requirements.in");
    let list = fs::read_to_string(list).unwrap_or_default();
    format!("{EXTRA}\n{stamp}\n{list}\n{}", lock_text())
}

/// `make test` starts with `make lock-check`: the lock must have been made from the list as it
/// is now. A new comment needs no new lock; a new package or bound does.
#[test]
fn a_lock_stale_against_its_list_fails_the_check() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let (list, lock) = (
        scratch.path().join("requirements.in"),
        scratch.path().join("requirements.txt"),
    );
    let ours = fs::read_to_string(repo.join("layer/requirements.in")).expect("the list");
    fs::write(&lock, lock_text()).expect("the lock");
    let check = |text: &str| {
        fs::write(&list, text).expect("the list");
        Command::new("python3")
            .arg(repo.join("tools/lock.py"))
            .args(["check".as_ref(), list.as_os_str(), lock.as_os_str()])
            .output()
            .expect("tools/lock.py runs")
    };
    assert!(check(&ours).status.success(), "our lock is stale");
    let commented = format!("# Another comment.\n{ours}");
    assert!(
        check(&commented).status.success(),
        "a comment made the lock stale"
    );
    let stale = check(&format!("{ours}\n{EXTRA}\n"));
    assert!(!stale.status.success(), "a new package went unnoticed");
    let said = String::from_utf8_lossy(&stale.stderr);
    assert!(said.contains("make lock"), "{said}");
}

mod nsjail {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operators_package_answers_like_ours() {
        super::an_operators_package_answers_like_ours(crate::support::Kind::Nsjail).await
    }
}

mod compat {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operators_package_answers_like_ours() {
        super::an_operators_package_answers_like_ours(crate::support::Kind::Compat).await
    }
}

mod lambda {
    #[test]
    fn an_operators_package_answers_like_ours() {
        // Here, as root and with a writable file system, before the test runs again under
        // Lambda's conditions, where it only finds the layer built.
        super::operator_layer();
        crate::support::in_lambda_profile(
            concat!(module_path!(), "::an_operators_package_answers_like_ours"),
            || super::an_operators_package_answers_like_ours(crate::support::Kind::Lambda),
        )
    }
}
