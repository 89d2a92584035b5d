//! The API keys, as a layer on the routes that need one (`/execute`, `/mcp`, and `/metrics`
//! unless `METRICS_PUBLIC`): with keys configured, a request must carry
//! `Authorization: Bearer <key>` for one of them, or it is answered `401 UNAUTHORIZED` before
//! its body is read. The key's name joins the request's context (its log lines, its figures);
//! then its caller's quota ([`crate::http::quota`]) is applied where the route has one.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use subtle::{Choice, ConstantTimeEq};

use crate::config::ApiKeys;
use crate::execute::api::{ApiError, ErrorCode};
use crate::http::app::refuse_unread;
use crate::http::context::RequestContext;
use crate::http::quota::Quotas;
use crate::observe::metrics::Metrics;

/// What a guarded route checks: the keys, and the quotas when the route has them.
#[derive(Clone, Debug)]
pub struct Gate {
    pub keys: Arc<ApiKeys>,
    pub quotas: Option<Arc<Quotas>>,
    pub metrics: Arc<Metrics>,
}

/// The middleware of a guarded route.
pub async fn guard(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let name = match identify(&gate.keys, parts.headers.get(header::AUTHORIZATION)) {
        Ok(Some(name)) => name,
        Ok(None) => return next.run(Request::from_parts(parts, body)).await,
        Err(error) => return refuse_unread(error, body),
    };
    if let Some(context) = parts.extensions.get::<RequestContext>() {
        context.set_key(name);
    }
    let admitted = match gate.quotas.as_ref().map(|quotas| quotas.admit(name)) {
        Some(Err(refusal)) => {
            gate.metrics.quota_refused(name, refusal.quota);
            return refuse_unread(refusal.into_error(name), body);
        }
        Some(Ok(admitted)) => Some(admitted),
        None => None,
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    // The caller's slot is free once its answer is made (bodies here are whole in memory).
    drop(admitted);
    response
}

/// The name of the key the request's `Authorization` header carries; `None` when no key is
/// configured; `UNAUTHORIZED` when keys are and none matches.
pub fn identify<'a>(
    keys: &'a ApiKeys,
    header: Option<&HeaderValue>,
) -> Result<Option<&'a str>, ApiError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let presented = header
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    // Every key is compared, each in constant time in its content, so the response's timing
    // reveals neither how many leading bytes were right nor which key matched. (A length
    // mismatch returns at once: lengths are not the secret.)
    let mut found = None;
    for entry in &keys.0 {
        let matched: Choice = presented.as_bytes().ct_eq(entry.key.0.as_bytes());
        if bool::from(matched) && found.is_none() {
            found = Some(entry.name.as_str());
        }
    }
    match found {
        Some(name) => Ok(Some(name)),
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this service requires an API key: send the header `Authorization: Bearer <key>`",
        )),
    }
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
    use crate::config::{ApiKey, NamedKey};

    fn keys() -> ApiKeys {
        let key = |name: &str, key: &str| NamedKey {
            name: name.into(),
            key: ApiKey(key.into()),
        };
        ApiKeys(vec![
            key("alice", "s3cret-key"),
            key("bob", "0ther-key"),
            key("alice", "n3w-key"),
        ])
    }

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).expect("valid header")
    }

    #[test]
    fn without_keys_everything_passes() {
        assert_eq!(identify(&ApiKeys::default(), None).ok(), Some(None));
    }

    #[test]
    fn each_key_gives_its_name() {
        let keys = keys();
        let name = |value: &str| identify(&keys, Some(&header(value))).expect(value);
        assert_eq!(name("Bearer s3cret-key"), Some("alice"));
        assert_eq!(name("bearer  0ther-key "), Some("bob"));
        assert_eq!(name("Bearer n3w-key"), Some("alice"), "a rotated key");
    }

    #[test]
    fn anything_else_is_unauthorized() {
        let keys = keys();
        for value in [
            "Bearer s3cret-kez",
            "Bearer s3cret",
            "Basic s3cret-key",
            "s3cret-key",
            "",
        ] {
            let error = identify(&keys, Some(&header(value))).expect_err(value);
            assert_eq!(error.code, ErrorCode::Unauthorized, "{value}");
        }
        assert!(identify(&keys, None).is_err());
    }
}
