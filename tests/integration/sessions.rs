//! Sessions: an agent's variables and files survive between calls, restored inside each call's
//! own sandbox, the state kept sealed by the service between them.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Kind, Reply, Service};

async fn cell(service: &Service, code: &str, session: &str, files: Value) -> Reply {
    let body = json!({"script": code, "mode": "cell", "session": session, "files": files});
    service.execute(body).await
}

/// A cell run with an API key.
async fn keyed_cell(service: &Service, key: &str, code: &str, session: &str) -> Reply {
    let body = json!({"script": code, "mode": "cell", "session": session});
    let request = service
        .request(Method::POST, "/execute")
        .bearer_auth(key)
        .json(&body);
    service.send("POST", request).await
}

/// The file holding session `id`'s sealed state in a disk store.
fn stored_state(store: &Path, id: &str) -> PathBuf {
    let callers = std::fs::read_dir(store.join("sessions")).expect("the store's sessions");
    callers
        .flatten()
        .map(|caller| caller.path().join(id))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no stored state for {id} under {}", store.display()))
}

fn session_id(reply: &Reply) -> String {
    reply.body["session"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no session id: {}", reply.body))
        .to_owned()
}

/// A DataFrame read in one call is there in the next; a failed call changes nothing.
async fn variables_and_files_survive_between_calls(kind: Kind) {
    let service = Service::start(kind).await;
    let csv = json!([{"path": "in.csv", "content": "x,y\n1,2\n3,4\n"}]);
    let first = cell(
        &service,
        "import pandas as pd\ndf = pd.read_csv('in.csv')\nlen(df)",
        "new",
        csv,
    )
    .await;
    assert_eq!(first.expect_result(), &json!(2), "{}", first.body);
    assert_eq!(first.body["session"]["saved"], true, "{}", first.body);
    let id = session_id(&first);
    let second = cell(&service, "df.x.sum()", &id, json!([])).await;
    assert_eq!(second.expect_result(), &json!(4), "{}", second.body);
    // The file the first call was given is in the session's working directory too.
    let file = cell(
        &service,
        "open('in.csv').read().count('\\n')",
        &id,
        json!([]),
    )
    .await;
    assert_eq!(file.expect_result(), &json!(3), "{}", file.body);
    // A failing call leaves the session at its previous state, and says so.
    let failed = cell(
        &service,
        "df['x'] = 100\nraise ValueError('no')",
        &id,
        json!([]),
    )
    .await;
    failed.expect_error(422, "EXCEPTION");
    assert_eq!(failed.body["session"], json!({"id": id, "saved": false}));
    let after = cell(&service, "int(df.x.sum())", &id, json!([])).await;
    assert_eq!(after.expect_result(), &json!(4), "{}", after.body);
}

/// What cannot be pickled is named in `dropped`, never lost silently; functions and classes
/// the session defined travel by value; modules are imported again.
async fn what_cannot_be_saved_is_named(kind: Kind) {
    let service = Service::start(kind).await;
    let code = "import math\ndef double(x):\n    return 2 * x\nclass Box:\n    size = 3\ngen = (i for i in range(3))\nkept = 7\n";
    let first = cell(&service, code, "new", json!([])).await;
    assert_eq!(
        first.body["session"]["dropped"],
        json!(["gen"]),
        "{}",
        first.body
    );
    let id = session_id(&first);
    let second = cell(
        &service,
        "[double(kept), Box.size, math.floor(2.5), 'gen' in globals()]",
        &id,
        json!([]),
    )
    .await;
    assert_eq!(
        second.expect_result(),
        &json!([14, 3, 2, false]),
        "{}",
        second.body
    );
}

async fn unknown_sessions_and_bad_ids_are_refused(kind: Kind) {
    let service = Service::start(kind).await;
    let unknown = cell(&service, "1", "0123456789abcdef0123456789abcdef", json!([])).await;
    unknown.expect_error(404, "SESSION_NOT_FOUND");
    let malformed = cell(&service, "1", "../../etc/passwd", json!([])).await;
    malformed.expect_error(400, "INVALID_REQUEST");
}

/// Two calls in one session at once: the second is refused while the first runs.
async fn one_call_at_a_time_per_session(kind: Kind) {
    let service = Service::start(kind).await;
    let first = cell(&service, "n = 1", "new", json!([])).await;
    let id = session_id(&first);
    let slow = cell(
        &service,
        "import time\ntime.sleep(2)\nn = 2",
        &id,
        json!([]),
    );
    let beside = async {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        cell(&service, "n", &id, json!([])).await
    };
    let (slow, beside) = tokio::join!(slow, beside);
    assert_eq!(slow.status, 200, "{}", slow.body);
    if kind == Kind::Lambda {
        // One execution at a time there: the second waited for a slot, then ran after the first.
        assert_eq!(beside.expect_result(), &json!(2), "{}", beside.body);
    } else {
        let refused = beside.expect_error(409, "SESSION_BUSY");
        assert_eq!(refused["session"]["id"], id.as_str());
        assert_eq!(beside.retry_after.as_deref(), Some("1"));
    }
}

/// A session is its key's alone: another key asking for it learns nothing but 404.
async fn another_key_gets_not_found(kind: Kind) {
    let keys = [("API_KEYS", "alice=alice-key,bob=bob-key")];
    let service = Service::start_with(kind, &keys).await;
    // A value no request id or session id could contain by chance.
    let opened = keyed_cell(&service, "alice-key", "secret = 'alices-own-value'", "new").await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let id = session_id(&opened);
    let stranger = keyed_cell(&service, "bob-key", "secret", &id).await;
    stranger.expect_error(404, "SESSION_NOT_FOUND");
    assert!(
        !stranger.text.contains("alices-own-value"),
        "{}",
        stranger.text
    );
    let owner = keyed_cell(&service, "alice-key", "secret", &id).await;
    assert_eq!(
        owner.expect_result(),
        &json!("alices-own-value"),
        "{}",
        owner.body
    );
}

/// A stored state that was altered, or moved to another caller, is refused before anything
/// is unpickled: nothing of the call runs.
async fn a_tampered_state_is_refused(kind: Kind) {
    let store = tempfile::tempdir().expect("a store directory");
    let dir = store.path().display().to_string();
    let keys = "alice=alice-key,bob=bob-key";
    let settings = [
        ("SESSION_STORE", "disk"),
        ("SESSION_DIR", &dir),
        ("API_KEYS", keys),
    ];
    let service = Service::start_with(kind, &settings).await;
    let opened = keyed_cell(&service, "alice-key", "x = 41", "new").await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let id = session_id(&opened);
    let path = stored_state(store.path(), &id);
    let mut sealed = std::fs::read(&path).expect("the sealed state");
    let middle = sealed.len() / 2;
    sealed[middle] ^= 0x01;
    std::fs::write(&path, &sealed).expect("altered");
    let altered = keyed_cell(&service, "alice-key", "print('ran')\nx + 1", &id).await;
    let refused = altered.expect_error(422, "SESSION_STATE_REJECTED");
    assert_eq!(refused.get("stdout"), None, "nothing ran: {}", altered.body);
    // Alice's genuine state, put where Bob's session of the same id would be: still refused.
    let second = keyed_cell(&service, "alice-key", "y = 1", "new").await;
    let id = session_id(&second);
    let genuine = std::fs::read(stored_state(store.path(), &id)).expect("the sealed state");
    let bob = keyed_cell(&service, "bob-key", "z = 1", "new").await;
    let bob_dir = stored_state(store.path(), &session_id(&bob));
    let planted = bob_dir.with_file_name(&id);
    std::fs::write(&planted, genuine).expect("planted");
    let moved = keyed_cell(&service, "bob-key", "y", &id).await;
    moved.expect_error(422, "SESSION_STATE_REJECTED");
}

/// A state over SESSION_STATE_MAX_MIB is not saved: the session keeps its previous state,
/// and the answer says so. A key's sessions are bounded too.
async fn limits_are_clear_errors(kind: Kind) {
    let settings = [("SESSION_STATE_MAX_MIB", "1"), ("SESSIONS_PER_KEY", "2")];
    let service = Service::start_with(kind, &settings).await;
    let first = cell(&service, "x = 1", "new", json!([])).await;
    let id = session_id(&first);
    let big = cell(&service, "x = 2\nbig = bytes(2_000_000)", &id, json!([])).await;
    let refused = big.expect_error(422, "SESSION_TOO_LARGE");
    assert_eq!(refused["session"], json!({"id": id, "saved": false}));
    let after = cell(&service, "[x, 'big' in globals()]", &id, json!([])).await;
    assert_eq!(after.expect_result(), &json!([1, false]), "{}", after.body);
    let second = cell(&service, "y = 1", "new", json!([])).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let third = cell(&service, "z = 1", "new", json!([])).await;
    third.expect_error(429, "TOO_MANY_SESSIONS");
}

for_each_sandbox!(
    variables_and_files_survive_between_calls,
    what_cannot_be_saved_is_named,
    unknown_sessions_and_bad_ids_are_refused,
    one_call_at_a_time_per_session,
    another_key_gets_not_found,
    a_tampered_state_is_refused,
    limits_are_clear_errors,
);
