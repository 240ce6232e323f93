//! The crate's one error type.
//!
//! Variants name what the caller should do, not which dependency failed:
//!
//! | variant | meaning | caller's move |
//! |---|---|---|
//! | [`Error::InvalidInput`] | the request is malformed (bad key, spec, name) | fix the input |
//! | [`Error::TooLarge`] | a key or value is over its limit | send less |
//! | [`Error::NotFound`] | the thing named does not exist | report it |
//! | [`Error::Conflict`] | a precondition did not hold; nothing was written | re-read, retry or report |
//! | [`Error::OutOfBounds`] | a bounded increment would leave its range; nothing was written | report the value it saw |
//! | [`Error::SchemeMismatch`] | the store was created with another routing | open with its scheme |
//! | [`Error::Locked`] | another holder has the store in a conflicting mode | retry later |
//! | [`Error::Corrupted`] | on-disk state is not what shardkv wrote | run `shardkv check` |
//! | [`Error::Io`] | the operating system failed a file operation | check the disk |
//! | [`Error::Storage`] | the storage engine failed; a write's outcome is unknown | retry, then check |
//! | [`Error::Unavailable`] | a process shardkv runs or waits for did not come up, stay up or finish in time | read why, fix the cause, retry |
//!
//! A failed write never leaves a partial effect, but when a commit itself fails its outcome
//! is uncertain, as in any database: [`Error::Storage`] says so.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::shard_by::ShardBy;

/// A specialized `Result` for shardkv operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in shardkv. See the module docs for what each variant asks of
/// the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is malformed: a key, collection name, routing spec or argument.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// A key or value exceeds its limit.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was too large ("key", "value", "batch").
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),

    /// A write's precondition did not hold; nothing of that write was applied.
    #[error("conflict: {0}")]
    Conflict(String),

    /// A bounded increment ([`WriteBatch::incr_within`](crate::WriteBatch::incr_within))
    /// would have left its range; nothing of that write was applied.
    #[error("{key}: {current} + {delta} would leave {min}..={max}")]
    OutOfBounds {
        /// The counter's collection and key, as text.
        key: String,
        /// The value the write saw.
        current: i64,
        /// The increment asked for.
        delta: i64,
        /// Lowest value allowed.
        min: i64,
        /// Highest value allowed.
        max: i64,
    },

    /// The store on disk was created with a different routing scheme.
    #[error(
        "store at {dir} is sharded by {stored}, not {requested}; open it without a scheme or with {stored}"
    )]
    SchemeMismatch {
        /// The store's directory.
        dir: PathBuf,
        /// The scheme in its MANIFEST.
        stored: ShardBy,
        /// The scheme the caller asked for.
        requested: ShardBy,
    },

    /// The store (or a resource in it) is held by another user in a conflicting mode.
    #[error("locked: {0}")]
    Locked(String),

    /// On-disk state is inconsistent with what shardkv writes.
    #[error("corrupted: {0}")]
    Corrupted(String),

    /// An operating-system I/O failure, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What shardkv was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A process shardkv runs or waits for did not come up, stay up or finish in time: a
    /// worker that keeps crashing, a cluster that did not stop or reload within the wait.
    #[error("unavailable: {0}")]
    Unavailable(String),

    /// The storage engine failed. For a write, its outcome is uncertain. Shared, because one
    /// failed commit answers every write in its batch.
    #[error("storage error: {0}")]
    Storage(#[source] Arc<redb::Error>),
}

impl Error {
    /// Wraps an I/O error with what was being done when it happened.
    pub fn io(context: impl fmt::Display, source: io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Whether the error is the caller's mistake (bad input), as opposed to a state of the
    /// store or a failure of the machine.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput(_)
                | Error::TooLarge { .. }
                | Error::NotFound(_)
                | Error::Conflict(_)
                | Error::OutOfBounds { .. }
                | Error::SchemeMismatch { .. }
        )
    }
}

macro_rules! storage_error_from {
    ($($ty:ty),* $(,)?) => {
        $(impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::Storage(Arc::new(e.into()))
            }
        })*
    };
}

storage_error_from!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
);
