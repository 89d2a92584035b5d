//! Helpers shared by the test binaries and the benchmark: starting the service binary and the
//! tools around it ([`binary`]), loopback ports ([`ports`]), host processes ([`procs`]),
//! waiting on a condition with a deadline ([`wait`]), never for a fixed time, checking
//! responses against the OpenAPI document ([`openapi`]), a real MCP client
//! ([`mcp_client`]), and the Prometheus project's own parser for `/metrics` ([`prometheus`]).
//!
//! A crate mounts this module with `#[path = "../common/mod.rs"] mod common;`. Lambda's
//! conditions ([`lambda_conditions`]) are used by the integration suite's Lambda profile, and
//! [`hidden_cgroups`] by its profile of nsjail in a container without `--privileged`.

// Each crate that mounts this module uses only part of it.
#![allow(dead_code)]

pub mod app;
pub mod binary;
pub mod hidden_cgroups;
pub mod lambda_conditions;
pub mod mcp_client;
pub mod openapi;
pub mod ports;
pub mod procs;
pub mod prometheus;
pub mod repo;
pub mod sse;
pub mod wait;
