//! Slow and idle clients cannot hold the service: headers must arrive within
//! `HEADER_READ_TIMEOUT_S`, a body within `BODY_READ_TIMEOUT_S`, and beyond `MAX_CONNECTIONS`
//! new connections wait in the accept queue until one ends. Short timeouts keep these quick.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::raw_http::{self, execute_head, send_then_read};
use crate::support::{Kind, Service};

/// Just under the configured 1 s: the server's clock starts a moment after the client's.
const ALMOST_ONE_SECOND: Duration = Duration::from_millis(800);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_stalled_connections_are_closed_after_the_header_timeout() {
    let settings = [("HEADER_READ_TIMEOUT_S", "1"), ("TEMPLATES", "0")];
    let service = Service::start_with(Kind::Nsjail, &settings).await;
    let addr = service.addr;
    let waited = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut silent = raw_http::connect(addr);
        let mut stalled = raw_http::connect(addr);
        stalled
            .write_all(b"POST /execute HTTP/1.1\r\nHost: test\r\n")
            .expect("half a head");
        raw_http::wait_for_close(&mut silent);
        raw_http::wait_for_close(&mut stalled);
        started.elapsed()
    })
    .await
    .expect("joined");
    assert!(waited >= ALMOST_ONE_SECOND, "closed too early: {waited:?}");
    service.assert_still_healthy().await;
}

/// Sends the head of an execution, then trickles its body a byte every 100 ms until told to
/// stop; returns the answer it read and when it read it.
fn trickle_a_body(
    addr: std::net::SocketAddr,
    sending: tokio::sync::oneshot::Sender<()>,
) -> (raw_http::RawResponse, Instant) {
    let mut stream = raw_http::connect(addr);
    let head = execute_head("Content-Length: 1000");
    stream.write_all(head.as_bytes()).expect("head");
    let mut writer = stream.try_clone().expect("clone");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    let trickle = std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) && writer.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let _ = sending.send(());
    let response = raw_http::read_response(&mut stream).expect("the slow client reads an answer");
    let answered = Instant::now();
    stop.store(true, Ordering::Relaxed);
    trickle.join().expect("trickle thread");
    (response, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408_while_another_client_is_served() {
    // One execution slot and a short queue wait: were the slow upload holding the slot, the
    // other client would get OVERLOADED instead of its result.
    let settings = [
        ("BODY_READ_TIMEOUT_S", "2"),
        ("MAX_CONCURRENCY", "1"),
        ("QUEUE_WAIT_MS", "200"),
        ("TEMPLATES", "0"),
    ];
    let service = Service::start_with(Kind::Nsjail, &settings).await;
    let addr = service.addr;
    let (sending, started) = tokio::sync::oneshot::channel();
    let slow = tokio::task::spawn_blocking(move || trickle_a_body(addr, sending));
    started.await.expect("the slow client started");
    let reply = service.run("def main():\n    return 'served'\n").await;
    let served = Instant::now();
    assert_eq!(reply.expect_result(), "served");
    let (response, answered) = slow.await.expect("joined");
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(response.body["code"], "REQUEST_TIMEOUT", "{response:?}");
    assert_eq!(response.body["limit_s"], 2.0);
    assert!(response.head.contains("connection: close"), "{response:?}");
    assert!(
        served < answered,
        "the other client waited for the slow one"
    );
    service.assert_still_healthy().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_a_new_client_waits_for_a_free_slot() {
    let settings = [
        ("MAX_CONNECTIONS", "2"),
        ("HEADER_READ_TIMEOUT_S", "1"),
        ("TEMPLATES", "0"),
    ];
    let service = Service::start_with(Kind::Nsjail, &settings).await;
    let addr = service.addr;
    let (response, waited) = tokio::task::spawn_blocking(move || {
        // Both slots taken by connections that say nothing until the header timeout.
        let mut idle = [raw_http::connect(addr), raw_http::connect(addr)];
        let started = Instant::now();
        let response = send_then_read(addr, "GET /health HTTP/1.1\r\nHost: test\r\n\r\n", b"")
            .expect("the waiting client is served");
        let waited = started.elapsed();
        for stream in &mut idle {
            raw_http::wait_for_close(stream);
        }
        (response, waited)
    })
    .await
    .expect("joined");
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(response.body["ok"], true);
    assert!(
        waited >= ALMOST_ONE_SECOND,
        "served before a slot was free: {waited:?}"
    );
    service.assert_still_healthy().await;
}
