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
