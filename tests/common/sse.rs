//! A streaming HTTP client for Server-Sent Events, as a client application reads them: reqwest's
//! byte stream parsed by `eventsource-stream`, each event stamped with when it arrived.

use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

/// One event, and how long after the request it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub after: Duration,
    pub event: String,
    pub data: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|error| panic!("{} is not JSON ({error}): {}", self.event, self.data))
    }
}

/// A streamed request: its status, content type, and its events once the stream ends.
#[derive(Debug)]
pub struct Streamed {
    pub status: u16,
    pub content_type: String,
    pub events: Vec<Received>,
}

impl Streamed {
    /// The concatenated data of every event named `name` (stdout or stderr), decoded.
    pub fn text_of(&self, name: &str) -> String {
        self.events
            .iter()
            .filter(|received| received.event == name)
            .map(|received| received.json().as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The last event, which must be the final one.
    pub fn last(&self) -> &Received {
        self.events.last().expect("at least the final event")
    }
}

/// POSTs `body` to `url` asking for an event stream, and reads it to its end.
pub async fn post(url: &str, body: &Value) -> Streamed {
    let started = Instant::now();
    let response = start(url, body).await;
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let mut stream = response.bytes_stream().eventsource();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.expect("a well-formed event stream");
        events.push(Received {
            after: started.elapsed(),
            event: event.event,
            data: event.data,
        });
    }
    Streamed {
        status,
        content_type,
        events,
    }
}

/// POSTs `body` asking for an event stream; the response, unread.
pub async fn start(url: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("accept", "text/event-stream")
        .json(body)
        .send()
        .await
        .expect("the service answers")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
