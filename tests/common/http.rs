//! The load tool's HTTP client (`src/bench/http.rs`, part of the binary), with test
//! conveniences that panic instead of returning errors.

#![allow(dead_code, unused_imports)]

#[path = "../../src/bench/http.rs"]
mod client;

pub use client::{Client, Response, get, raw};

/// Assertions-style accessors for tests.
pub trait ResponseExt {
    /// The body as JSON; panics with the body if it is not.
    fn json(&self) -> serde_json::Value;
    /// The `x-worker-pid` header; panics if it is missing.
    fn pid(&self) -> u32;
}

impl ResponseExt for Response {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }

    fn pid(&self) -> u32 {
        self.worker_pid().expect("x-worker-pid header")
    }
}

/// A raw connection to a server's `http://host:port` (or `host:port`), with a 20 s read
/// timeout so that a stuck test fails instead of hanging.
pub fn connect(addr: &str) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection; panics if it stays open for `within`.
pub fn read_until_closed(stream: &mut std::net::TcpStream, within: std::time::Duration) -> Vec<u8> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + within;
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the server kept the connection open"
        );
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!("read: {e}"),
        }
    }
}
