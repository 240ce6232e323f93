//! The checks behind the fuzz targets, one function per target, each taking the fuzzer's
//! raw bytes and panicking on a violated invariant. The targets in `fuzz_targets/` call them
//! under libFuzzer; `tests/fuzz_corpus.rs` includes this file and replays every committed
//! corpus input through them on stable Rust, so what fuzzing found stays fixed.

#![allow(dead_code)]

#[path = "bytes.rs"]
pub mod bytes;
#[path = "http.rs"]
pub mod http;
#[path = "manifest.rs"]
pub mod manifest;
#[path = "routing.rs"]
pub mod routing;
#[path = "spec.rs"]
pub mod spec;
#[path = "store.rs"]
pub mod store;

#[path = "../../tests/common/model.rs"]
pub mod model;

/// A target's check: panics on a violated invariant.
pub type Check = fn(&[u8]);

/// Every target, by its name in `fuzz/Cargo.toml` and `fuzz/corpus/`.
pub const TARGETS: [(&str, Check); 6] = [
    ("shard_spec", spec::check),
    ("manifest", manifest::check),
    ("routing", routing::check),
    ("http_router", http::check),
    ("store_model", store::check),
    ("store_concurrent", store::check_concurrent),
];
