//! The layer between the front doors and the sandbox: admission ([`admission`]: slots and the
//! queue), the templates executions are forked from ([`templates`]), the executor that runs one
//! validated request ([`Executor`]), and turning what happened in the sandbox into the API's
//! answer ([`answer`]). The API's own types ([`api`]) live here, so no front door and no
//! sandbox type has to know the other.

pub mod admission;
pub mod answer;
pub mod api;
mod executor;
pub mod job;
pub mod s3;
pub mod sessions;
pub mod templates;
mod unavailable;

pub use executor::{Admitted, Executor};
pub use unavailable::{Category, Unavailable};
