//! Tests of the service binary itself, started as a separate process the way Cloud Run and
//! Lambda start it: SIGTERM handling within Cloud Run's 10 s, the API key, log lines as Cloud
//! Run's console reads them, compat's protection of the service's own
//! secrets from scripts running under the same uid, no cgroup left after an execution, the
//! command line (`--help`, `--version`, `probe`), and schemathesis fuzzing it against its
//! OpenAPI document.

#[path = "../common/mod.rs"]
mod common;

mod cgroups;
mod cli;
mod fuzz;
mod logs;
mod process;
mod same_uid;
mod shutdown;
