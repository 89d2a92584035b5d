//! The front doors, all thin handlers over one shared service value ([`App`]): the JSON API
//! and `/health` ([`router`]), the MCP server for agents ([`mcp`]), the Cloud Run server
//! ([`server`]), AWS Lambda's events ([`lambda`]), large answers offloaded to S3 ([`offload`]),
//! and the OpenAPI document ([`openapi`]). Cross-cutting concerns (the API key, body limits) are their own modules.

pub mod app;
pub mod auth;
pub mod body;
pub mod lambda;
pub mod mcp;
pub mod offload;
pub mod openapi;
pub mod router;
pub mod server;
pub mod stream;

pub use app::App;
pub use router::router;
