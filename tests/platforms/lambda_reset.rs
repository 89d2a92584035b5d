//! A runtime started again in the same Lambda environment. After a crash, a timeout or the
//! runtime's own exit (a scrub that could not finish), Lambda resets the environment: it starts
//! the runtime again and keeps `/tmp` as the last caller left it. Under the emulator and
//! Lambda's conditions, a prelude plays that caller, writing into `/tmp` as the service's uid
//! before the service starts; the next caller must find none of it.

use serde_json::{json, Value};

use crate::lambda_support::rie::Rie;

/// The service's uid under Lambda's conditions here (nothing on the host belongs to it).
const LAMBDA_UID: u32 = 29_981;

/// What an earlier caller left: a file, and a secret two directories down.
const EARLIER_CALLER: &str = "echo secret > /tmp/left.txt && mkdir -p /tmp/earlier/deeper \
                              && echo secret > /tmp/earlier/deeper/data.csv";

/// What /tmp holds at its top, as the script sees it. (Not the whole tree: where the checkout
/// lives below /tmp, as a CI clone may, Lambda's conditions keep it visible there.)
const LIST_TMP: &str = "import os\ndef main():\n    return sorted(os.listdir('/tmp'))\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_started_again_removes_what_earlier_callers_left_in_tmp() {
    let rie = Rie::start_under_lambda_after(&[], LAMBDA_UID, Some(EARLIER_CALLER));
    let (status, body) = rie.execute(&json!({ "script": LIST_TMP })).await;
    assert_eq!(status, 200, "{body}\n{}", rie.process().log());
    assert_eq!(body["sandbox"], "compat", "{body}");
    let found: Vec<&str> = body["result"]
        .as_array()
        .expect("a listing")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The listing works: the place the harness makes at start is in it.
    assert!(found.contains(&"outputs"), "{found:?}");
    let left: Vec<&&str> = found
        .iter()
        .filter(|name| ["left.txt", "earlier"].contains(name))
        .collect();
    assert!(left.is_empty(), "an earlier caller's files: {left:?}");
}
