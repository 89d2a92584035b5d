//! The harness's own care with files, run bare (no sandbox) so a test can lay traps in the
//! working directory before the job arrives, as a shared `/tmp` could hold them: input files
//! are never written through a symlink nor over anything already there.

use std::os::unix::fs::symlink;

use python_executor::execute::answer::report::{self, Frame};
use serde_json::json;

use crate::support::bare_harness;

fn refused_where_files(report: &report::Report) {
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
    refused_where_files(&bare_harness(cwd.path(), &through_dir));
    assert!(
        !elsewhere.path().join("x.txt").exists(),
        "nothing written through the link"
    );

    let over_link = json!({"script": script, "files": [{"path": "taken.txt", "content": "evil"}]});
    refused_where_files(&bare_harness(cwd.path(), &over_link));
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "original"
    );

    // Without traps the same files are written, and the script runs.
    let clean = tempfile::tempdir().expect("clean cwd");
    let report = bare_harness(clean.path(), &through_dir);
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
