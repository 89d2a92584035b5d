//! The service on its platforms, one test binary: Lambda's sample events through lambda_http
//! (`lambda_events`), the binary under the real Runtime Interface Emulator (`lambda_rie`),
//! offload to a local S3 (`offload_s3`), and both images built from their Dockerfiles and run as
//! their platforms run them (`images`). Shared helpers: `lambda_support`, `images_support`.

mod images_support;
mod lambda_support;

mod images;
mod lambda_events;
mod lambda_rie;
mod lambda_streaming;
mod offload_s3;
