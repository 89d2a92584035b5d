//! The optional API key: with `API_KEY` set, `/execute` requires `Authorization: Bearer <key>`.

use axum::http::HeaderValue;
use subtle::ConstantTimeEq;

use crate::config::ApiKey;
use crate::execute::api::{ApiError, ErrorCode};

/// Checks the request's `Authorization` header against the configured key, if any.
pub fn check(expected: Option<&ApiKey>, header: Option<&HeaderValue>) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let presented = header
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    // Constant time in the key's content, so response timing does not reveal how many leading
    // bytes were right. (A length mismatch returns at once: the length is not the secret.)
    if bool::from(presented.as_bytes().ct_eq(expected.0.as_bytes())) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Unauthorized,
        "this service requires an API key: send the header `Authorization: Bearer <key>`",
    ))
}

/// The token of a `Bearer` credential; the scheme is case-insensitive (RFC 9110).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey("s3cret-key".into())
    }

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).expect("valid header")
    }

    #[test]
    fn without_a_key_everything_passes() {
        assert!(check(None, None).is_ok());
    }

    #[test]
    fn the_right_bearer_token_passes() {
        assert!(check(Some(&key()), Some(&header("Bearer s3cret-key"))).is_ok());
        assert!(check(Some(&key()), Some(&header("bearer  s3cret-key "))).is_ok());
    }

    #[test]
    fn anything_else_is_unauthorized() {
        for value in [
            "Bearer s3cret-kez",
            "Bearer s3cret",
            "Basic s3cret-key",
            "s3cret-key",
            "",
        ] {
            let error = check(Some(&key()), Some(&header(value))).expect_err(value);
            assert_eq!(error.code, ErrorCode::Unauthorized, "{value}");
        }
        assert!(check(Some(&key()), None).is_err());
    }
}
