//! The `run_python` tool: its input, the description a model reads to decide what to send,
//! and the call, which turns the input into the same validated request `/execute` builds and
//! runs it on the one executor.

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{schema_for_output, Extension};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, ServerHandler};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tracing::Instrument;

use super::content;
use super::outcome::Outcome;
use crate::config::Config;
use crate::execute::answer::sandbox_failed;
use crate::execute::api::{ApiError, ExecuteRequest, Mode};
use crate::http::context::{caller_of, RequestContext};
use crate::http::App;
use crate::packages::Packages;

/// The tool's name, as clients call it.
pub const RUN_PYTHON: &str = "run_python";

/// What a model sends to `run_python`. Only the shapes are checked here; everything else is
/// checked exactly as `/execute` checks its body.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct RunPythonInput {
    /// Python 3.11 code: a notebook cell (the value of its last expression is the result), or
    /// a script defining a top-level `def main(...)` (its return value is the result).
    pub code: String,
    /// Keyword arguments: `main(**args)` for a script; global variables for a cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Map<String, Value>>,
    /// Files written into the working directory before the code runs (relative paths).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<InputFileArg>>,
    /// Wall-clock limit in seconds; it can only lower the server's own limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// `"new"` to start a session, or the `session.id` an earlier call answered, to continue
    /// it: the variables and files that call left are there again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// One input file: text in `content`, or bytes in `content_base64`.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct InputFileArg {
    /// Relative to the working directory, e.g. `data/prices.csv`.
    pub path: String,
    /// The file's text (written as UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The file's bytes, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
}

/// The MCP server: one tool over the app's executor. Built once per app and cloned for each
/// request (the transport is stateless), which costs two reference counts and a small map.
#[derive(Clone, Debug)]
pub struct PythonTools {
    app: Arc<App>,
    tool_router: ToolRouter<Self>,
}

impl PythonTools {
    /// The tools, with a description that states this service's own limits.
    pub fn new(app: Arc<App>) -> Self {
        let mut tool_router = Self::tool_router();
        if let Some(route) = tool_router.map.get_mut(RUN_PYTHON) {
            let description = description(&app.config, &app.packages);
            route.attr.description = Some(Cow::Owned(description));
        }
        Self { app, tool_router }
    }
}

#[tool_router]
impl PythonTools {
    #[tool(
        name = "run_python",
        description = "Runs Python code in a sandbox (the full description states the limits).",
        output_schema = schema_for_output::<Outcome>(),
        annotations(
            title = "Run Python",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn run_python(
        &self,
        Parameters(input): Parameters<RunPythonInput>,
        Extension(parts): Extension<Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let config = &self.app.config;
        // The transport runs tools in tasks of their own: the request's span is entered here,
        // so the execution's lines carry its id.
        let span = parts
            .extensions
            .get::<RequestContext>()
            .map_or_else(tracing::Span::current, |context| context.span.clone());
        let answer = match request(input, config) {
            Ok(mut request) => match &self.app.executor {
                Ok(executor) => {
                    request.caller = caller_of(&parts.extensions);
                    executor.execute(request).instrument(span).await
                }
                Err(unavailable) => {
                    tracing::warn!(reason = %unavailable, "refusing to run code without a sandbox");
                    Err(sandbox_failed().with_details(unavailable.public_fields()))
                }
            },
            Err(error) => Err(error),
        };
        Ok(content::tool_result(answer))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PythonTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Runs Python code (standard library, numpy, pandas, matplotlib, scipy, \
                 scikit-learn and more: the tool's description lists them) in an isolated sandbox \
                 with the run_python tool: each call starts fresh, without network, unless it \
                 names a session to continue.",
            )
    }
}

/// The same validated request `/execute` would build from this input, as a cell unless the
/// code defines `main()`, keeping the open figures.
fn request(input: RunPythonInput, config: &Config) -> Result<ExecuteRequest, ApiError> {
    let body = json!({
        "script": input.code,
        "args": input.args,
        "files": input.files,
        "timeout_s": input.timeout_s,
        "mode": Mode::Auto.as_str(),
        "session": input.session,
    });
    let mut request = ExecuteRequest::parse_with(
        body.to_string().as_bytes(),
        config.max_script,
        &config.input_files,
    )?;
    request.save_figures = true;
    Ok(request)
}

/// What a model needs to know to use the tool well, with this service's limits and packages.
fn description(config: &Config, packages: &Packages) -> String {
    let limits = &config.limits;
    format!(
        "Run Python {python} code in an isolated sandbox; get back its result, printed output, \
         figures and files.\n\n\
         Available: the standard library and these packages (name==version): {pins}; nothing \
         else can be installed (importing anything else fails with ModuleNotFoundError and \
         `missing_module`). No network. Without a session every call starts from scratch: \
         send everything the code needs (`files`, `args`) with it.\n\n\
         Sessions: pass `session: \"new\"` and the result's `session.id` names a session; pass \
         that id as `session` in later calls and the variables, functions, classes, imported \
         modules and working-directory files the earlier calls left are there again (keep the \
         id; a session expires after {ttl} s unused). Values that cannot be saved (open files, \
         generators, threads) are listed in `session.dropped`. A call that fails leaves the \
         session as it was. One call at a time per session.\n\n\
         The result: if the code defines a top-level `def main(...)`, it runs as a script: \
         `main(**args)` is called and its return value is the result (it must be JSON: dict, \
         list, str, int, float, bool or None). Otherwise it runs as a notebook cell: `args` are \
         its global variables and the result is the value of its last line if that line is an \
         expression (null otherwise). A cell's value that is not JSON comes back readable: a \
         pandas DataFrame or Series as a list of row records (its index as a column unless it is \
         0..n-1) with a text table in `display`, numpy values as numbers and lists, anything \
         else as its repr. Code indented as a whole is dedented first.\n\n\
         Files and images: input `files` are written into the working directory first. Files \
         the code writes under `outputs/` come back: images as images, text as text. Every \
         matplotlib figure still open at the end comes back as an image (saved as \
         outputs/figure-N.png) unless the code saved images under outputs/ itself; plt.show() \
         is not needed.\n\n\
         Limits per call: {wall} s wall-clock (`timeout_s` may lower it), {cpu} s CPU, {memory} \
         MiB of memory, {files} output files of at most {file_kib} KiB each. stdout, stderr and \
         large results are cut in this reply, with a marker saying so.\n\n\
         Failures come back as an error result with `code` (SYNTAX_ERROR, EXCEPTION, TIMEOUT, \
         MEMORY_LIMIT, NO_MAIN, NON_JSON_RETURN, RESULT_TOO_LARGE, ...), `error` (one \
         sentence), the traceback of your own lines for an exception, and the output printed \
         before it.",
        python = packages.python,
        pins = packages.pins().join(", "),
        wall = limits.wall.as_secs_f64(),
        ttl = config.sessions.ttl.as_secs(),
        cpu = limits.cpu.as_secs_f64(),
        memory = limits.memory.as_mib_ceil(),
        files = limits.output_files,
        file_kib = limits.file_size.as_bytes() / 1024,
    )
}
