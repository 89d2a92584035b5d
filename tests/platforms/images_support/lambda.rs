//! The Lambda image run as Lambda runs it: its ENTRYPOINT under the Runtime Interface Emulator,
//! chrooted into the image's filesystem, read-only but a fresh /tmp, as an unprivileged uid, on
//! a "kernel" refusing user namespaces and Landlock (tests/common/lambda_conditions.rs), with
//! the environment Lambda gives a function: its own variables, the image's ENV, and
//! template.yaml's variables over them.

use std::time::Duration;

use serde_json::Value;

use super::template::Template;
use super::Image;
use crate::lambda_support::common::binary::{Launch, Running};
use crate::lambda_support::common::lambda_conditions::Conditions;
use crate::lambda_support::common::ports::free_addr;
use crate::lambda_support::require_tool;

const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";
/// Lambda's function user (sbx_user1051); nothing in the image belongs to it.
const LAMBDA_UID: u32 = 993;
/// Where the emulator is bound into the image: an empty directory of debian:12-slim (SAM puts
/// it at /var/rapid, a directory Docker creates; a read-only root cannot get a new one).
const RIE_DIR: &str = "/mnt";

pub struct LambdaImage {
    url: String,
    process: Running,
    client: reqwest::Client,
}

impl LambdaImage {
    pub fn start(image: &Image) -> Self {
        let rie = require_tool("bin/aws-lambda-rie");
        assert!(
            image.root.join(RIE_DIR.trim_start_matches('/')).is_dir(),
            "the image has no {RIE_DIR} to bind the emulator onto"
        );
        let (addr, api) = (free_addr(), free_addr());
        let rie_dir = rie.parent().expect("the RIE's directory");
        let conditions = Conditions::prepare_in(&image.root, &[(rie_dir, RIE_DIR)], LAMBDA_UID);
        let launch = Launch::new("aws-lambda-rie", format!("{RIE_DIR}/aws-lambda-rie"))
            .clear_env()
            .envs(environment(image))
            .arg("--runtime-interface-emulator-address")
            .arg(addr.to_string())
            .arg("--runtime-api-address")
            .arg(api.to_string())
            .args(&image.entrypoint);
        // SAFETY: `enter` only makes system calls on data prepared above.
        let launch = unsafe { launch.before_exec(move || conditions.enter()) };
        let process = launch.start_listening(addr, Duration::from_secs(30));
        Self {
            url: format!("http://{addr}{INVOKE_PATH}"),
            process,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
        }
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Invokes the function with one event; the Lambda response payload.
    pub async fn invoke(&self, event: &str) -> Value {
        let response = self
            .client
            .post(&self.url)
            .body(event.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke failed: {e}\n{}", self.log()));
        let text = response.text().await.expect("payload");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("payload is not JSON ({e}): {text}\n{}", self.log()))
    }
}

/// What a Lambda function's process finds in its environment: Lambda's own variables (those of
/// a container image function), then the image's ENV, then the function's configured variables.
fn environment(image: &Image) -> Vec<(String, String)> {
    let template = Template::read();
    let name = "python-executor";
    let mut env: Vec<(String, String)> = [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ),
        ("LANG", "en_US.UTF-8"),
        ("TZ", ":UTC"),
        ("LAMBDA_TASK_ROOT", "/var/task"),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_LAMBDA_FUNCTION_NAME", name),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/python-executor"),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]0123456789abcdef",
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into();
    env.push((
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
        template.scalar("MemorySize"),
    ));
    // Read by the emulator: the invocation's deadline.
    env.push((
        "AWS_LAMBDA_FUNCTION_TIMEOUT".into(),
        template.scalar("Timeout"),
    ));
    // What Lambda sets from the function's LoggingConfig.
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), template.scalar("LogFormat")));
    env.push((
        "AWS_LAMBDA_LOG_LEVEL".into(),
        template.scalar("ApplicationLogLevel"),
    ));
    env.extend(image.env.iter().cloned());
    env.extend(template.variables());
    env
}
