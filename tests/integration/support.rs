//! Shared helpers: start the real service (real nsjail, real Python) on a random loopback port
//! and talk to it over real HTTP.

// The shared helpers this file needs, mounted here (rather than in main.rs) because they serve
// only these helpers. Neither uses a sibling module.
use crate::common::{ports, wait};

use std::net::SocketAddr;
use std::time::Duration;

use python_executor::http::server;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Which sandbox a test runs against; every suite runs against each one that exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nsjail,
    /// The sandbox for platforms without user namespaces (FORCE_COMPAT=1), with the service as
    /// root: a uid of its own per execution, Landlock, cgroups.
    Compat,
    /// compat under AWS Lambda's conditions (see `lambda_conditions`), with template.yaml's
    /// settings: the script shares the service's unprivileged uid; no Landlock, no cgroups.
    Lambda,
}

impl Kind {
    fn env_value(self) -> &'static str {
        match self {
            Kind::Nsjail => "nsjail",
            Kind::Compat | Kind::Lambda => "compat",
        }
    }

    /// The sandbox `/health` and every envelope report for this profile.
    pub fn sandbox(self) -> &'static str {
        self.env_value()
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Lambda => "lambda",
            kind => kind.env_value(),
        }
    }

    /// The settings this profile starts with (a test's own settings come on top).
    fn profile_settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // template.yaml's Environment.
            Kind::Lambda => &[("MAX_CONCURRENCY", "1"), ("MAX_TIMEOUT_S", "15")],
            Kind::Nsjail | Kind::Compat => &[],
        }
    }
}

/// Under Lambda's conditions the script's /tmp is the service's own, which may hold what was
/// there before the service (the checkout, when it lives under /tmp): those names, to leave out
/// of a listing a test compares. Elsewhere the script's /tmp is private: nothing.
pub fn tmp_entries_before(kind: Kind) -> Vec<String> {
    if kind != Kind::Lambda {
        return Vec::new();
    }
    std::fs::read_dir("/tmp")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `listing` (a JSON list of names) without the names in `before`.
pub fn without(listing: &Value, before: &[String]) -> Value {
    let names = listing.as_array().cloned().unwrap_or_default();
    Value::Array(
        names
            .into_iter()
            .filter(|name| !before.iter().any(|b| name == b.as_str()))
            .collect(),
    )
}

/// Runs a Lambda-profile test: here if this process is already under Lambda's conditions,
/// otherwise by running this very test again under them (see `lambda_conditions`).
pub fn in_lambda_profile<F: std::future::Future<Output = ()>>(
    test_path: &str,
    test: impl FnOnce() -> F,
) {
    if !crate::common::lambda_conditions::active() {
        crate::common::lambda_conditions::rerun_under_lambda(test_path);
        return;
    }
    // What the binary's main does first: this test process is the service here, and on Lambda
    // scripts run under its uid.
    python_executor::startup::platform::protect_service().expect("the service protects itself");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let _reaper =
                python_executor::sandbox::spawn_reaper().expect("the orphan reaper starts");
            test().await
        });
}

/// Runs a test under nsjail with the cgroup hierarchy hidden (a container without
/// `--privileged`): here if this process already runs so, otherwise by running this very test
/// again that way (see `hidden_cgroups`).
pub fn in_hidden_cgroups_profile<F: std::future::Future<Output = ()>>(
    test_path: &str,
    test: impl FnOnce() -> F,
) {
    if !crate::common::hidden_cgroups::active() {
        crate::common::hidden_cgroups::rerun_with_cgroups_hidden(test_path);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(test());
}

/// As [`for_each_sandbox`], plus nsjail with the cgroup hierarchy hidden, where the limits
/// fall back to rlimits and the service's own watch: for tests of limits.
#[macro_export]
macro_rules! for_each_limits_profile {
    ($($name:ident),* $(,)?) => {
        $crate::for_each_sandbox!($($name),*);
        mod nsjail_hidden_cgroups {
            $(
                #[test]
                fn $name() {
                    $crate::support::in_hidden_cgroups_profile(
                        concat!(module_path!(), "::", stringify!($name)),
                        || super::$name($crate::support::Kind::Nsjail),
                    )
                }
            )*
        }
    };
}

/// Generates one `#[tokio::test]` per sandbox kind for each named `async fn(Kind)`.
#[macro_export]
macro_rules! for_each_sandbox {
    ($($name:ident),* $(,)?) => {
        mod nsjail {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Nsjail).await
                }
            )*
        }
        mod compat {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Compat).await
                }
            )*
        }
        mod lambda {
            $(
                #[test]
                fn $name() {
                    $crate::support::in_lambda_profile(
                        concat!(module_path!(), "::", stringify!($name)),
                        || super::$name($crate::support::Kind::Lambda),
                    )
                }
            )*
        }
    };
}

pub use crate::common::repo::layer_dir;

/// How long templates may take to start on a busy machine.
const WARM_WITHIN: Duration = Duration::from_secs(20);

/// A running service; stopped when dropped.
pub struct Service {
    pub addr: SocketAddr,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

/// A response: status and body (JSON for every answer but `/metrics`' text, which comes as a
/// JSON string, and a CORS preflight's, which is empty: `Null`).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// The body as sent, for checks JSON parsing would blur (big integers).
    pub text: String,
    pub retry_after: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Service {
    pub async fn start(kind: Kind) -> Self {
        Self::start_with(kind, &[]).await
    }

    /// Starts with extra settings, as environment variables would give them (`LAYER_DIR`
    /// defaults to the repository's built layer).
    pub async fn start_with(kind: Kind, settings: &[(&str, &str)]) -> Self {
        // The service's warnings and errors go to the test's captured output, shown when it
        // fails (RUST_LOG overrides the level).
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        let layer = layer_dir().display().to_string();
        let mut env: Vec<(&str, &str)> = vec![("SANDBOX", kind.env_value()), ("LAYER_DIR", &layer)];
        // A test's own settings win over its profile's, which win over the defaults above.
        env.extend(kind.profile_settings().iter().chain(settings).copied());
        env.reverse();
        let config = crate::common::app::config_with(&env);
        let http = config.http.clone();
        let router = crate::common::app::router_for(config).await;
        let listener = ports::loopback_listener();
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener = TcpListener::from_std(listener).expect("a tokio listener");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            server::serve(listener, router, &http, async move {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            client: reqwest::Client::new(),
            _stop: stop,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POST /execute with a JSON body.
    pub async fn execute(&self, body: Value) -> Reply {
        self.post_raw(
            "/execute",
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    /// POST /execute with just a script.
    pub async fn run(&self, script: &str) -> Reply {
        self.execute(json!({ "script": script })).await
    }

    /// A request of any shape, sent with [`Self::send`].
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends `request` (made by [`Self::request`] with `method`); the checked reply.
    pub async fn send(&self, method: &str, request: reqwest::RequestBuilder) -> Reply {
        reply(method, request.send().await.expect("the service answers")).await
    }

    /// `GET /metrics`, with `key` as a bearer token when given.
    pub async fn metrics(&self, key: Option<&str>) -> Reply {
        let mut request = self.request(reqwest::Method::GET, "/metrics");
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        self.send("GET", request).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body);
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        reply("POST", request.send().await.expect("the service answers")).await
    }

    /// Waits until both templates report ready (or fails after [`WARM_WITHIN`]).
    pub async fn wait_for_templates(&self) {
        let ready = wait::until_async(WARM_WITHIN, || async {
            let templates = &self.get("/health").await.body["templates"];
            let ready = |name: &str| templates[name]["ready"] == true;
            (ready("plain") && ready("data")).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "the templates were not ready within {WARM_WITHIN:?}"
        );
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(
            "GET",
            self.client
                .get(self.url(path))
                .send()
                .await
                .expect("the service answers"),
        )
        .await
    }

    /// After an attack: the service still runs a normal script correctly.
    pub async fn assert_still_healthy(&self) {
        let reply = self
            .execute(json!({
                "script": "def main(a, b):\n    print('still here')\n    return {'sum': a + b}\n",
                "args": {"a": 2, "b": 40},
            }))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(reply.body["result"], json!({"sum": 42}));
        assert_eq!(reply.body["stdout"], "still here\n");
        let health = self.get("/health").await;
        assert_eq!(health.body["ok"], true);
    }
}

/// Reads a response, and fails the test unless it is one docs/openapi.json describes.
async fn reply(method: &str, response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let path = response.url().path().to_owned();
    let headers = response.headers().clone();
    let header = |name: &str| {
        let value = headers.get(name)?.to_str().ok()?;
        Some(value.to_owned())
    };
    let retry_after = header("retry-after");
    let text = response.text().await.expect("a body");
    let content_type = header("content-type").unwrap_or_default();
    let body = if content_type.starts_with("text/plain") {
        Value::String(text.clone())
    } else if text.is_empty() && content_type.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("the body is not JSON ({error}): {text:?}"))
    };
    crate::common::openapi::check(&crate::common::openapi::Observed {
        method,
        path: &path,
        status,
        header: &header,
        body: &body,
    });
    Reply {
        status,
        body,
        text,
        retry_after,
        headers,
    }
}

impl Reply {
    /// A response header's value, if it is there and is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// Asserts an error reply with this status and code, and returns the body.
    pub fn expect_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.body["code"], code, "body: {}", self.body);
        assert_eq!(self.status, status, "body: {}", self.body);
        assert!(
            self.body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "an error sentence is present: {}",
            self.body
        );
        &self.body
    }

    /// Asserts this status and code, `OK` meaning a success.
    pub fn expect_error_or_ok(&self, status: u16, code: &str) {
        if code == "OK" {
            assert_eq!(self.status, status, "body: {}", self.body);
            assert!(self.body.get("result").is_some(), "body: {}", self.body);
        } else {
            self.expect_error(status, code);
        }
    }

    /// Asserts success and returns main()'s result.
    pub fn expect_result(&self) -> &Value {
        assert_eq!(self.status, 200, "body: {}", self.body);
        &self.body["result"]
    }
}

/// Runs the layer's harness bare (no sandbox, no cgroup) in `cwd` with `job`; its report.
pub fn bare_harness(
    cwd: &std::path::Path,
    job: &Value,
) -> python_executor::execute::answer::report::Report {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
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
    python_executor::execute::answer::report::parse(&bytes)
        .unwrap_or_else(|| panic!("no report: {}", String::from_utf8_lossy(&bytes)))
}
