//! The harness's own care with files, run bare (no sandbox) so a test can lay traps in the
//! working directory before the job arrives, as a shared `/tmp` could hold them: input files
//! are never written through a symlink nor over anything already there.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};

use python_executor::sandbox::protocol::{self, Frame};
use serde_json::{json, Value};

use crate::support::layer_dir;

/// Runs the harness in `cwd` with `job`; its report.
fn run_in(cwd: &Path, job: &Value) -> protocol::Report {
    let layer = layer_dir();
    let channel = tempfile::NamedTempFile::new().expect("channel file");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec "$0" -I -B "$1" 3>"$2""#)
        .arg(layer.join("python/bin/python3"))
        .arg(layer.join("harness/harness.py"))
        .arg(channel.path())
        .current_dir(cwd)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the harness starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(job.to_string().as_bytes())
        .expect("job written");
    drop(stdin);
    assert!(child.wait().expect("the harness ends").success());
    let bytes = std::fs::read(channel.path()).expect("channel read");
    protocol::parse(&bytes).expect("a report")
}

fn refused_where_files(report: &protocol::Report) {
    let Frame::Error { code, details, .. } = &report.frame else {
        panic!("expected an error frame, got {:?}", report.frame)
    };
    assert_eq!(code, "EXCEPTION");
    assert_eq!(details["where"], "files", "{details:?}");
}

#[test]
fn input_files_are_never_written_through_a_symlink() {
    let cwd = tempfile::tempdir().expect("cwd");
    let elsewhere = tempfile::tempdir().expect("elsewhere");
    let target = elsewhere.path().join("target.txt");
    std::fs::write(&target, "original").expect("target");
    symlink(elsewhere.path(), cwd.path().join("data")).expect("dir link");
    symlink(&target, cwd.path().join("taken.txt")).expect("file link");
    let script = "def main():\n    return 'ran'\n";

    let through_dir =
        json!({"script": script, "files": [{"path": "data/x.txt", "content": "evil"}]});
    refused_where_files(&run_in(cwd.path(), &through_dir));
    assert!(
        !elsewhere.path().join("x.txt").exists(),
        "nothing written through the link"
    );

    let over_link = json!({"script": script, "files": [{"path": "taken.txt", "content": "evil"}]});
    refused_where_files(&run_in(cwd.path(), &over_link));
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "original"
    );

    // Without traps the same files are written, and the script runs.
    let clean = tempfile::tempdir().expect("clean cwd");
    let report = run_in(clean.path(), &through_dir);
    assert!(
        matches!(report.frame, Frame::Result(_)),
        "{:?}",
        report.frame
    );
    assert_eq!(
        std::fs::read_to_string(clean.path().join("data/x.txt")).expect("written"),
        "evil"
    );
}
