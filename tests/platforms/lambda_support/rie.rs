//! The AWS Lambda Runtime Interface Emulator running the service binary.

use std::time::Duration;

use serde_json::Value;

use super::common::binary::{service_exe, Launch, Running};
use super::common::ports::free_addr;

const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";
/// How long the emulator itself (a small Go program) may take to listen.
const LISTENING_WITHIN: Duration = Duration::from_secs(15);

pub struct Rie {
    url: String,
    process: Running,
    client: reqwest::Client,
}

impl Rie {
    /// The emulator on free loopback ports, running the service binary with only `env`.
    pub fn start(env: &[(&str, String)]) -> Self {
        let bootstrap = vec![service_exe().as_os_str().to_owned()];
        Self::start_with(env, bootstrap, |launch| launch)
    }

    /// The same, the emulator and the service under Lambda's conditions (an unprivileged
    /// `uid`, no user namespaces, no Landlock, no cgroups: `common::lambda_conditions`).
    pub fn start_under_lambda(env: &[(&str, String)], uid: u32) -> Self {
        Self::start_under_lambda_after(env, uid, None)
    }

    /// [`Rie::start_under_lambda`], with `prelude` (a shell command) run first, as the
    /// service's uid and in its environment, each time the emulator starts the runtime: what a
    /// runtime started again in the same environment finds (Lambda keeps /tmp across a reset).
    pub fn start_under_lambda_after(
        env: &[(&str, String)],
        uid: u32,
        prelude: Option<&str>,
    ) -> Self {
        let conditions = super::common::lambda_conditions::Conditions::prepare(uid);
        let bootstrap = match prelude {
            None => vec![service_exe().as_os_str().to_owned()],
            Some(prelude) => {
                let then = format!("{prelude} && exec '{}'", service_exe().display());
                vec!["/bin/sh".into(), "-c".into(), then.into()]
            }
        };
        Self::start_with(env, bootstrap, move |launch| {
            // SAFETY: `enter` only makes system calls on data prepared above.
            unsafe { launch.before_exec(move || conditions.enter()) }
        })
    }

    fn start_with(
        env: &[(&str, String)],
        bootstrap: Vec<std::ffi::OsString>,
        adapt: impl FnOnce(Launch) -> Launch,
    ) -> Self {
        let rie = super::require_tool("bin/aws-lambda-rie");
        super::require_layer();
        let (addr, api) = (free_addr(), free_addr());
        let launch = Launch::new("aws-lambda-rie", rie)
            .current_dir(super::repo_root())
            .clear_env()
            .envs(env.iter().map(|(k, v)| (k, v.as_str())))
            .arg("--runtime-interface-emulator-address")
            .arg(addr.to_string())
            .arg("--runtime-api-address")
            .arg(api.to_string())
            .args(bootstrap);
        let process = adapt(launch).start_listening(addr, LISTENING_WITHIN);
        Self {
            url: format!("http://{addr}{INVOKE_PATH}"),
            process,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("client"),
        }
    }

    /// The emulator's process, with the service it started below it.
    pub fn process(&self) -> &Running {
        &self.process
    }

    /// Invokes the function with one event; the Lambda response payload.
    pub async fn invoke(&self, event: &str) -> Value {
        let response = self
            .client
            .post(&self.url)
            .body(event.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke failed: {e}\n{}", self.process.log()));
        let text = response.text().await.expect("payload");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {text}\n{}", self.process.log()))
    }

    /// `POST /execute` with `body`, as a function URL request: the status and the body of the
    /// service's answer.
    pub async fn execute(&self, body: &Value) -> (u16, Value) {
        let event = super::events::with_body("function-url-execute-numpy.json", body);
        super::events::decode_response(&self.invoke(&event).await)
    }
}
