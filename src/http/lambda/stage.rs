//! API Gateway stages in request paths.
//!
//! `lambda_http` puts a named stage in front of the path (`/prod/execute`) unless
//! `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set; our routes have no stage, and a deployer
//! should not have to know about that variable. So the path is rebuilt here from what the
//! event itself says, whatever that variable holds: REST API events carry the path without the
//! stage, HTTP API events carry it with the stage of a named (non-`$default`) stage.

use axum::http::uri::{PathAndQuery, Uri};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

/// The request with any API Gateway stage removed from its path; other events pass unchanged.
pub fn strip_stage(mut request: Request) -> Request {
    let Some(path) = path_without_stage(&request) else {
        return request;
    };
    if let Some(uri) = with_path(request.uri(), &path) {
        *request.uri_mut() = uri;
    }
    request
}

fn path_without_stage(request: &Request) -> Option<String> {
    let raw = request.raw_http_path();
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV1(_) => Some(raw.to_owned()),
        RequestContext::ApiGatewayV2(context) => match context.stage.as_deref() {
            None | Some("$default") => None,
            Some(stage) => Some(remove_prefix(raw, stage).to_owned()),
        },
        _ => None,
    }
}

/// `/prod/execute` -> `/execute`, `/prod` -> `/`; a path that does not start with the stage
/// segment is left alone.
fn remove_prefix<'a>(path: &'a str, stage: &str) -> &'a str {
    match path
        .strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(stage))
    {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => path,
    }
}

fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path = if path.is_empty() { "/" } else { path };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_leading_stage_segment_is_removed() {
        assert_eq!(remove_prefix("/prod/execute", "prod"), "/execute");
        assert_eq!(remove_prefix("/prod", "prod"), "/");
        assert_eq!(
            remove_prefix("/production/execute", "prod"),
            "/production/execute"
        );
        assert_eq!(remove_prefix("/execute", "prod"), "/execute");
    }

    #[test]
    fn the_query_survives() {
        let uri: Uri = "https://example.com/prod/health?verbose=1"
            .parse()
            .expect("uri");
        let rebuilt = with_path(&uri, "/health").expect("valid");
        assert_eq!(rebuilt.to_string(), "https://example.com/health?verbose=1");
    }
}
