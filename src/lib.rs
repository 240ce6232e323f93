//! shardkv: a durable, sharded key-value store for one machine that any number of processes
//! may use at once, and an HTTP server that runs it in cluster mode.
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
//! See `docs/architecture.md` for the model and its invariants.

mod batch;
pub mod bench;
pub mod cluster;
mod error;
pub mod registry;
pub mod server;
pub mod shard;
pub mod shard_by;
pub mod store;
pub mod tickets;

pub use batch::{Expect, Op, WriteBatch, Written};
pub use error::{Error, Result};
pub use shard::{CommitMode, ShardStats};
pub use shard_by::{ShardBy, ShardRange};
pub use store::{CheckReport, Scan, ShardCheck, ShardHealth, Store, StoreBuilder};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
