//! The service on its platforms, one test binary: Lambda's sample events through lambda_http
//! (`lambda_events`), the binary under the real Runtime Interface Emulator (`lambda_rie`, and
//! its logs and metrics, `lambda_operations`), offload to a local S3 (`offload_s3`), sessions continued across instances sharing
//! it (`sessions_s3`), both images
//! built from their Dockerfiles and run as their platforms run them (`images`), and the
//! deployment files' defaults (`deploy`). Shared helpers: `lambda_support`, `images_support`.

mod images_support;
mod lambda_support;

mod deploy;
mod images;
mod lambda_events;
mod lambda_operations;
mod lambda_reset;
mod lambda_rie;
mod lambda_streaming;
mod offload_s3;
mod sessions_s3;
