//! python-executor: an HTTP function that runs an untrusted Python script's `main()` inside a
//! sandbox and answers with a JSON envelope. The contract and the design: docs/design.md.
//!
//! The crate reads top-down, one layer per folder, each using only those below it:
//!
//! - [`startup`]: the command line and settings, probing the platform, choosing and proving the
//!   sandbox, and building the service;
//! - [`http`]: the front doors (the JSON API, Lambda's events, offload to S3, the OpenAPI
//!   document) over one shared service value;
//! - [`execute`]: admission, the templates' lifecycle, the executor, and turning what happened
//!   in a sandbox into the API's answer (the API's types live here);
//! - [`observe`]: what operators see: log lines in each platform's shape, trace context, and
//!   the metrics (Prometheus, or CloudWatch EMF on Lambda);
//! - [`config`]: the typed settings every layer receives;
//! - [`packages`]: what the runtime can import, read once from the layer's own metadata;
//! - [`sandbox`]: running one script in isolation, behind one narrow door;
//! - [`limits`]: the limits of one execution, shared by every layer.

pub mod config;
pub mod execute;
pub mod http;
pub mod limits;
pub mod observe;
pub mod packages;
pub mod sandbox;
pub mod startup;
