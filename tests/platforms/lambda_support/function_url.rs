//! A Lambda function URL in front of the Runtime Interface Emulator: an HTTP server on a free
//! loopback port that turns each request into a function URL event (payload format 2.0, as
//! in events/function-url-*.json), invokes the function through the emulator, and turns the
//! Lambda response back into an HTTP response, as AWS's function URLs do (buffered responses).
//! So a real HTTP client, an MCP client say, can talk to the service as deployed on Lambda.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use super::rie::Rie;

/// A function URL's domain, as Lambda names them.
const DOMAIN: &str = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws";
/// Function URLs take request bodies of at most 6 MB.
const MAX_BODY: usize = 6 * 1024 * 1024;

/// The function URL's server; it stops when dropped.
pub struct FunctionUrl {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl FunctionUrl {
    /// Serves the function URL for `rie` on a free loopback port. Invocations are made one at a
    /// time, as the emulator runs one at a time (Lambda would start another environment).
    pub async fn start(rie: Rie) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let addr = listener.local_addr().expect("its address");
        let router = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::new(Mutex::new(rie)));
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("the function URL serves");
        });
        Self { addr, server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for FunctionUrl {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(rie): State<Arc<Mutex<Rie>>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, MAX_BODY).await.expect("a request body");
    let event = event(&parts, &body);
    let payload = rie.lock().await.invoke(&event.to_string()).await;
    response(&payload)
}

/// The function URL event of one request.
fn event(parts: &axum::http::request::Parts, body: &[u8]) -> Value {
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        let value = value.to_str().unwrap_or_default();
        match headers.get_mut(name.as_str()) {
            // Lambda joins repeated headers with commas.
            Some(Value::String(joined)) => *joined = format!("{joined},{value}"),
            _ => {
                headers.insert(name.as_str().to_owned(), Value::from(value));
            }
        }
    }
    headers.insert("host".into(), Value::from(DOMAIN));
    headers.insert("x-forwarded-proto".into(), Value::from("https"));
    let path = parts.uri.path();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": DOMAIN.split('.').next(),
            "domainName": DOMAIN,
            "domainPrefix": DOMAIN.split('.').next(),
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()),
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "22/Nov/2025:10:15:30 +0000",
            "timeEpoch": 1_763_806_530_000_u64,
        },
        "isBase64Encoded": false,
    });
    if !body.is_empty() {
        // Text bodies travel as they are; anything else base64-encoded.
        match std::str::from_utf8(body) {
            Ok(text) => event["body"] = Value::from(text),
            Err(_) => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                event["body"] = Value::from(encoded);
                event["isBase64Encoded"] = Value::from(true);
            }
        }
    }
    event
}

/// The HTTP response a function URL makes of the function's response payload.
fn response(payload: &Value) -> Response {
    let status = payload["statusCode"]
        .as_u64()
        .and_then(|code| StatusCode::from_u16(u16::try_from(code).ok()?).ok())
        .unwrap_or_else(|| panic!("no statusCode in the function's response: {payload}"));
    let text = payload["body"].as_str().unwrap_or("");
    let body = if payload["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .expect("a base64 body")
    } else {
        text.as_bytes().to_vec()
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    if let Some(headers) = payload["headers"].as_object() {
        for (name, value) in headers {
            let (Ok(name), Some(Ok(value))) = (
                HeaderName::try_from(name.as_str()),
                value.as_str().map(HeaderValue::from_str),
            ) else {
                continue;
            };
            // The length is the body's as sent here.
            if name != axum::http::header::CONTENT_LENGTH {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}
