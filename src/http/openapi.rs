//! The OpenAPI 3.1 document of the whole API, served at `GET /openapi.json`.
//!
//! The document is written by hand in `docs/openapi.json` and embedded as it is, so the file in
//! the repository and the one clients fetch are the same bytes. It is kept honest from both
//! sides: the unit tests below check it against the code's own lists (every error code at its
//! status, the version), and the integration suite validates every response it sees against it
//! (tests/common/openapi.rs), as does the schemathesis run (tests/service/fuzz.rs).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, byte for byte as in `docs/openapi.json`.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// `GET /openapi.json`.
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::DOCUMENT;
    use crate::execute::api::ErrorCode;

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
    }

    /// Follows a local `$ref` (`#/components/...`), the only kind the document uses.
    fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                let pointer = target.strip_prefix('#').expect("a local $ref");
                resolve(root, root.pointer(pointer).expect("the $ref resolves"))
            }
            None => value,
        }
    }

    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                for (key, value) in fields {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    /// The `code` constants a response schema admits, through `$ref`, `oneOf` and `allOf`.
    fn codes(root: &Value, schema: &Value, found: &mut BTreeSet<String>) {
        let schema = resolve(root, schema);
        if let Some(code) = schema
            .pointer("/properties/code/const")
            .and_then(Value::as_str)
        {
            found.insert(code.to_owned());
        }
        for key in ["oneOf", "anyOf", "allOf"] {
            for part in schema
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                codes(root, part, found);
            }
        }
    }

    /// The error codes documented for one status: on POST /execute, or among the responses of
    /// every unlisted route (`x-fallback-responses`).
    fn documented_codes(root: &Value, status: u16) -> BTreeSet<String> {
        let status = status.to_string();
        let mut found = BTreeSet::new();
        let places = [
            root.pointer(&format!("/paths/~1execute/post/responses/{status}")),
            root.pointer(&format!("/x-fallback-responses/{status}")),
        ];
        for response in places.into_iter().flatten() {
            let response = resolve(root, response);
            let schema = &response["content"]["application/json"]["schema"];
            codes(root, schema, &mut found);
        }
        found
    }

    #[test]
    fn it_is_openapi_3_1_and_every_ref_resolves() {
        let root = document();
        let version = root["openapi"].as_str().expect("an openapi field");
        assert!(version.starts_with("3.1."), "openapi: {version}");
        assert!(root["paths"].is_object() && root["info"]["title"].is_string());
        let mut found = Vec::new();
        refs(&root, &mut found);
        assert!(found.len() > 20, "the document uses components");
        for target in found {
            let pointer = target
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{target}: only local $refs are used"));
            assert!(root.pointer(pointer).is_some(), "{target} does not resolve");
        }
    }

    #[test]
    fn its_version_is_the_crates() {
        assert_eq!(document()["info"]["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn every_error_code_is_documented_at_its_status_and_no_other() {
        let root = document();
        let statuses: BTreeSet<u16> = ErrorCode::ALL
            .iter()
            .map(|code| code.status().as_u16())
            .collect();
        for status in statuses {
            let expected: BTreeSet<String> = ErrorCode::ALL
                .iter()
                .filter(|code| code.status().as_u16() == status)
                .map(|code| code.as_str().to_owned())
                .collect();
            assert_eq!(documented_codes(&root, status), expected, "status {status}");
        }
        let listed: Vec<&str> = root
            .pointer("/components/schemas/ErrorCode/enum")
            .and_then(Value::as_array)
            .expect("the ErrorCode enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let all: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), all);
        assert_eq!(listed.len(), all.len(), "no code listed twice");
    }

    /// `ErrorCode::ALL` is written by hand beside the enum; Rust cannot list an enum's
    /// variants, so its source is counted (one `Variant,` line each) to catch one left out.
    #[test]
    fn all_lists_every_code_once() {
        let names: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        let source = include_str!("../execute/api/error.rs");
        let body = source
            .split("pub enum ErrorCode {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .expect("the ErrorCode enum in src/execute/api/error.rs");
        let variants = body
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with("//") && line.ends_with(','))
            .count();
        assert_eq!(
            variants,
            ErrorCode::ALL.len(),
            "ErrorCode::ALL misses a variant"
        );
    }
}
