//! The HTTP API: request validation, the response envelope and the error contract.

pub mod error;
pub mod files;
pub mod request;
pub mod response;

pub use error::{ApiError, ErrorCode};
pub use files::{InputFile, OutputFile, SkippedFile};
pub use request::{ExecuteRequest, Mode, SessionRequest, ANONYMOUS};
pub use response::{ExecuteResponse, SavedState, SessionOutcome, Truncated, Usage};
