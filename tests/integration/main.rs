//! Integration and attack tests: the real service, over real HTTP, running real scripts under
//! the real sandbox. One binary, shared helpers in `support`.

#[macro_use]
mod support;

#[path = "../common/mod.rs"]
mod common;

mod attacks_escape;
mod attacks_neighbours;
mod attacks_resources;
mod attacks_result_channel;
mod attacks_shared_limits;
mod cells;
mod contract;
mod contract_results;
mod document;
mod files;
mod files_harness;
mod http_body;
mod http_clients;
mod keys;
mod mcp;
mod operations;
mod packages;
mod packages_operator;
mod raw_http;
mod seeds;
mod sessions;
mod streaming;
mod templates;
mod templates_growth;
mod unavailable;
