//! The S3 client the service's buckets are reached with (large answers, session states).
//! Credentials and region come from the platform through `aws-config`'s default chain (on
//! Lambda, the execution role's variables); built on first use, so a service that never
//! touches a bucket never reads AWS configuration.

/// A client for S3, or for a local S3 at `endpoint_url` (tests, MinIO), with path-style URLs
/// (`endpoint/bucket/key`) when `force_path_style`, which local S3 servers usually need.
pub async fn client(endpoint_url: Option<&str>, force_path_style: bool) -> aws_sdk_s3::Client {
    let shared = aws_config::load_from_env().await;
    let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(force_path_style);
    if let Some(endpoint) = endpoint_url {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}
