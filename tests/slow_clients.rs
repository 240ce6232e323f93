//! Slow and greedy clients time out and never cost a 5xx: a body that never arrives is a 408,
//! a declared body over the limit is a 413 at once, a client that sends no head is
//! disconnected, and a client that stops reading its responses is disconnected. Work that
//! outlasts the request timeout is answered 503, with a JSON error.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::cluster;
use common::http::{connect, raw, read_until_closed};

fn server() -> (tempfile::TempDir, cluster::Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "1", "--header-timeout", "1s"],
    );
    (dir, server)
}

#[test]
fn a_body_that_never_arrives_is_a_408_and_an_oversized_one_a_413() {
    let (_dir, server) = server();
    let addr = server.addr.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let r = raw(
        &addr,
        b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"name\":",
    )
    .unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(r.text().contains("did not arrive"), "{}", r.text());
    assert!(started.elapsed() < Duration::from_secs(10));

    // Declared too large: refused before a byte of the body is read.
    let r = raw(
        &addr,
        b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 999999999\r\n\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.header("x-worker-pid").is_some());
}

#[test]
fn a_client_that_sends_no_head_is_disconnected() {
    let (_dir, server) = server();
    let mut stream = connect(&server.addr);
    stream.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").unwrap();
    read_until_closed(&mut stream, Duration::from_secs(10));
}

#[test]
fn a_client_that_stops_reading_is_disconnected() {
    let (_dir, server) = server();
    let mut stream = connect(&server.addr);
    // Ask for far more than the socket buffers hold, and read nothing.
    let request = b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n".repeat(2000);
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(&request);
    std::thread::sleep(Duration::from_secs(4));
    let got = read_until_closed(&mut stream, Duration::from_secs(20));
    let answered = got.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    assert!(
        answered < 2000,
        "all {answered} responses were written to a client that was not reading"
    );
}

#[test]
fn a_request_over_the_request_timeout_is_a_json_503() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "1", "--request-timeout", "1s"],
    );
    // Seconds of trial division: far over the 1 s timeout.
    let r = common::http::get(&server.addr, "/isprime?number=18446744073709551557").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("request timeout"), "{}", r.text());
    // The worker still answers.
    assert_eq!(
        common::http::get(&server.addr, "/healthz").unwrap().status,
        200
    );
}
