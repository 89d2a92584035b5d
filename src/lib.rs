//! python-executor: an HTTP function that runs an untrusted Python script's `main()` inside a
//! sandbox and answers with a JSON envelope. See DESIGN.md for the contract.

pub mod admission;
pub mod answer;
pub mod api;
pub mod app;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod executor;
pub mod lambda;
pub mod layer;
pub mod limits;
pub mod mcp;
pub mod offload;
pub mod openapi;
pub mod platform;
pub mod probe;
pub mod procfs;
pub mod reaper;
pub mod sandbox;
pub mod server;
pub mod startup;
pub mod telemetry;
pub mod templates;
pub mod unavailable;
