//! The front doors, all thin handlers over one shared service value ([`App`]): the JSON API,
//! `/health` and `/metrics` ([`router`]), the MCP server for agents ([`mcp`]), the Cloud Run
//! server ([`server`]), AWS Lambda's events ([`lambda`]), large answers offloaded to S3
//! ([`offload`]), and the OpenAPI document ([`openapi`]). Cross-cutting concerns are layers of
//! their own: request ids, spans and access lines ([`context`]), the API keys ([`auth`]) and
//! their quotas ([`quota`]), CORS ([`cors`]), bounded bodies ([`body`]).

pub mod app;
pub mod auth;
pub mod body;
pub mod context;
pub mod cors;
pub mod lambda;
pub mod mcp;
pub mod offload;
pub mod openapi;
pub mod quota;
pub mod router;
pub mod server;
pub mod stream;

pub use app::App;
pub use router::router;
