//! shardkv: a durable, sharded key-value store for one machine that any number of processes
//! may use at once, and (feature `server`) an HTTP server that runs it in cluster mode.
//!
//! Keys live in collections and are routed to redb shard files by alphabetical or hash
//! ranges ([`ShardBy`]). Every write is durable (fsync'd) when the call returns; concurrent
//! writers to a shard share one transaction (group commit); processes coordinate through
//! redb's multi-writer file locks.
//!
//! ```
//! use shardkv::{Scan, ShardBy, Store};
//!
//! # fn main() -> shardkv::Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("shards");
//! // Two alphabetical shards, a-m and n-z; the routing is kept in the store's MANIFEST.
//! let store = Store::shard_by(ShardBy::alphabetical(["a-m", "n-z"])?).open(&dir)?;
//! store.put("dogs", "biscuit", br#"{"color":"orange"}"#)?;
//! store.put("dogs", "peep", br#"{"color":"orange"}"#)?;
//! assert_eq!(store.shard_of("peep"), 1);
//!
//! // Exact across threads and processes.
//! assert_eq!(store.incr("counters", "requests", 1)?, 1);
//!
//! // Scans merge every shard in key order.
//! let names: Vec<Vec<u8>> = store.scan("dogs", Scan::all())?.into_iter().map(|(k, _)| k).collect();
//! assert_eq!(names, [b"biscuit".to_vec(), b"peep".to_vec()]);
//! # Ok(())
//! # }
//! ```
//!
//! Layers, each calling only the one to its left:
//!
//! ```text
//! shard_by -> shard -> store -> registry -> server -> cluster -> main (CLI)
//! (routing)  (redb +  (MANIFEST, (counter,   (axum)    (supervisor,
//!            group    LOCK,      dogs)                 workers)
//!            commit)  routing)
//! ```
//!
//! # Features
//!
//! - `server` (default): the HTTP server (module `server`) and cluster mode (`cluster`), with
//!   axum, hyper and tokio.
//! - `cli` (default): the `shardkv` binary, with clap.
//! - `failpoints`: fault injection for the tests (the `fail` crate, configured by the
//!   `FAILPOINTS` environment variable); never in a release.
//!
//! `default-features = false` is the storage library alone.
//!
//! See `docs/architecture.md` for the model and its invariants.

mod batch;
#[cfg(feature = "server")]
pub mod cluster;
mod error;
pub mod registry;
#[cfg(feature = "server")]
pub mod server;
mod shard;
pub mod shard_by;
mod store;
pub mod tickets;

pub use batch::{Derive, Expect, Op, WriteBatch, Written};
pub use error::{Error, Result};
pub use shard::{CommitMode, ShardStats};
pub use shard_by::{ShardBy, ShardRange};
pub use store::{
    CheckReport, DEFAULT_CACHE_BYTES, DEFAULT_MAX_VALUE_BYTES, Entry, Scan, ShardCheck,
    ShardHealth, Store, StoreBuilder, StoreLock,
};

/// Internals the fuzz targets (`fuzz/`) and their corpus replay (`tests/fuzz_corpus.rs`)
/// drive directly. Not part of the API: no stability promise.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::store::{MANIFEST_FILE, Manifest};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
