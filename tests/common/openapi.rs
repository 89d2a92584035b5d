//! Checking real responses against the OpenAPI document (docs/openapi.json): every response a
//! test helper receives goes through [`check`], so the document cannot drift from what the
//! service actually sends without some test failing.
//!
//! A response is looked up by path, method and status: an operation's documented response, or,
//! for a path the document does not list or a method it does not list on a path, the
//! `x-fallback-responses` (404 and 405). Its content type must be the documented one; a JSON
//! body must validate against the response's schema (JSON Schema 2020-12, which OpenAPI 3.1
//! uses), a text body (`/metrics`) arrives as a JSON string, a response documented without
//! content must have no body; and its required headers (`X-Request-Id` on every one) must be
//! there.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jsonschema::Validator;
use serde_json::Value;

/// The document and the validators compiled so far, by the JSON pointer of their schema.
struct Spec {
    root: Value,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
        let text = std::fs::read_to_string(path).expect("docs/openapi.json is readable");
        Spec {
            root: serde_json::from_str(&text).expect("docs/openapi.json is JSON"),
            validators: Mutex::default(),
        }
    })
}

/// What arrived, as far as the document describes it.
pub struct Observed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// Looks up a response header by name.
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// The JSON body; a text body as a string; no body as `Null`.
    pub body: &'a Value,
}

/// Panics, naming the mismatch, when the response is not one the document describes.
pub fn check(observed: &Observed) {
    let spec = spec();
    let pointer = response_pointer(&spec.root, observed);
    let (pointer, response) = follow(&spec.root, pointer);
    let context = || {
        format!(
            "{} {} answered {} (documented at {pointer})",
            observed.method, observed.path, observed.status
        )
    };
    check_headers(&spec.root, response, observed, &context);
    let Some(media) = check_content_type(response, observed, &context) else {
        return;
    };
    if media == "text/plain" {
        assert!(observed.body.is_string(), "{}: a text body", context());
        return;
    }
    let schema_pointer = format!("{pointer}/content/{}/schema", escape(&media));
    let errors = errors(spec, &schema_pointer, observed.body);
    assert!(
        errors.is_empty(),
        "{}: the body does not match docs/openapi.json:\n{}\nbody: {}",
        context(),
        errors.join("\n"),
        shorten(&observed.body.to_string())
    );
}

/// Why `body` does not match the schema at `pointer`. A `oneOf` of error bodies only says that
/// no branch matched, so the branch for the body's own `code` is asked as well.
fn errors(spec: &Spec, pointer: &str, body: &Value) -> Vec<String> {
    let describe = |pointer: &str| -> Vec<String> {
        validator(spec, pointer)
            .iter_errors(body)
            .map(|error| format!("  at {:?}: {error}", error.instance_path().as_str()))
            .collect()
    };
    let mut found = describe(pointer);
    if found.is_empty() {
        return found;
    }
    let (_, schema) = follow(&spec.root, pointer.to_owned());
    let branches = schema.get("oneOf").and_then(Value::as_array);
    for branch in branches.into_iter().flatten() {
        let Some(target) = branch.get("$ref").and_then(Value::as_str) else {
            continue;
        };
        let (branch_pointer, branch) = follow(&spec.root, target.trim_start_matches('#').into());
        if branch.pointer("/properties/code/const") == body.get("code") {
            found.push(format!("as {target}:"));
            found.extend(describe(&branch_pointer));
        }
    }
    found
}

/// The JSON pointer of the documented response for this path, method and status.
fn response_pointer(root: &Value, observed: &Observed) -> String {
    let path = escape(observed.path);
    let method = observed.method.to_ascii_lowercase();
    let status = observed.status;
    let Some(item) = root.pointer(&format!("/paths/{path}")) else {
        assert_eq!(status, 404, "{} is not in the document", observed.path);
        return "/x-fallback-responses/404".into();
    };
    if item.get(&method).is_none() {
        assert_eq!(
            status, 405,
            "{} {} is not in the document",
            observed.method, observed.path
        );
        return "/x-fallback-responses/405".into();
    }
    let pointer = format!("/paths/{path}/{method}/responses/{status}");
    assert!(
        root.pointer(&pointer).is_some(),
        "{} {} answered {status}, a status the document does not list for it",
        observed.method,
        observed.path
    );
    pointer
}

/// Follows `$ref`s from `pointer`: the pointer of the value finally reached, and the value.
fn follow(root: &Value, mut pointer: String) -> (String, &Value) {
    loop {
        let value = root
            .pointer(&pointer)
            .unwrap_or_else(|| panic!("{pointer} is not in the document"));
        match value.get("$ref").and_then(Value::as_str) {
            Some(target) => pointer = target.trim_start_matches('#').to_owned(),
            None => return (pointer, value),
        }
    }
}

/// The documented media type the response's `Content-Type` is, or `None` for a response
/// documented without content (which must then have no body).
fn check_content_type(
    response: &Value,
    observed: &Observed,
    context: &dyn Fn() -> String,
) -> Option<String> {
    let content_type = (observed.header)("content-type").unwrap_or_default();
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        let empty = observed.body.is_null() || observed.body == &Value::from("");
        assert!(empty, "{}: documented without a body", context());
        return None;
    };
    let media = content
        .keys()
        .find(|media| content_type.starts_with(media.as_str()));
    let media = media.unwrap_or_else(|| {
        panic!(
            "{}: Content-Type {content_type:?}, documented: {:?}",
            context(),
            content.keys().collect::<Vec<_>>()
        )
    });
    Some(media.clone())
}

fn check_headers(
    root: &Value,
    response: &Value,
    observed: &Observed,
    context: &dyn Fn() -> String,
) {
    let headers = response.get("headers").and_then(Value::as_object);
    for (name, header) in headers.into_iter().flatten() {
        let header = match header.get("$ref").and_then(Value::as_str) {
            Some(target) => follow(root, target.trim_start_matches('#').to_owned()).1,
            None => header,
        };
        let value = (observed.header)(&name.to_ascii_lowercase());
        if header["required"] == true {
            assert!(value.is_some(), "{}: no {name} header", context());
        }
        if let (Some(value), Some("integer")) = (value, header["schema"]["type"].as_str()) {
            assert!(
                value.parse::<u64>().is_ok(),
                "{}: {name}: {value:?} is not an integer",
                context()
            );
        }
    }
}

/// A validator for the schema at `pointer`, compiled once. The schema is the whole document
/// with a `$ref` to it at the top, so the `$ref`s inside it resolve as they do for any
/// OpenAPI tool; the document's own fields are keywords JSON Schema ignores.
fn validator(spec: &Spec, pointer: &str) -> Arc<Validator> {
    let mut validators = spec.validators.lock().unwrap_or_else(|e| e.into_inner());
    let validator = validators.entry(pointer.to_owned()).or_insert_with(|| {
        let mut schema = spec.root.clone();
        schema["$ref"] = Value::from(format!("#{pointer}"));
        let validator = jsonschema::draft202012::new(&schema)
            .unwrap_or_else(|error| panic!("the schema at {pointer} does not compile: {error}"));
        Arc::new(validator)
    });
    Arc::clone(validator)
}

/// A path as a JSON pointer token (RFC 6901).
fn escape(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

fn shorten(text: &str) -> String {
    const MAX: usize = 2000;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}
