//! Single-shard atomic writes: the unit the store routes and the shard commits.
//!
//! A [`WriteBatch`] is a list of operations, possibly across collections, on keys that share
//! one route (see [`route_of`](crate::shard_by::route_of): the key itself, or its `{hash tag}`),
//! so the batch lives in one shard. It applies all or nothing: its [`Expect`] preconditions
//! and bounded increments are checked against the state the batch sees (including earlier
//! batches in the same group commit), then every write is applied, in order. A failed check
//! applies nothing and leaves other batches in the same commit untouched.
//!
//! ```
//! use shardkv::{Expect, WriteBatch};
//!
//! // A dog and its color-index entry, created only if absent. The index key's hash tag
//! // routes it with the dog, so both are written in one atomic single-shard batch.
//! let mut batch = WriteBatch::new();
//! batch
//!     .expect("dogs", "biscuit", Expect::Absent)
//!     .put("dogs", "biscuit", br#"{"color":"orange"}"#)
//!     .put("dogs_by_color", "orange\0{biscuit}", b"");
//! assert_eq!(batch.route().unwrap(), Some(&b"biscuit"[..]));
//! ```

use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::shard_by::route_of;

/// A precondition on one key's current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must exist, with any value.
    Present,
    /// The key must hold exactly these bytes.
    Equals(Vec<u8>),
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Fail the whole batch with [`Error::Conflict`](crate::Error::Conflict) unless the
    /// expectation holds.
    Expect {
        /// Collection name.
        collection: String,
        /// Key inside the collection.
        key: Vec<u8>,
        /// What the key must hold.
        expect: Expect,
    },
    /// Set a key's value.
    Put {
        /// Collection name.
        collection: String,
        /// Key inside the collection.
        key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
    },
    /// Remove a key (a no-op if it is absent).
    Delete {
        /// Collection name.
        collection: String,
        /// Key inside the collection.
        key: Vec<u8>,
    },
    /// Add `delta` to the decimal integer stored at the key (absent counts as 0). The new
    /// value is reported in [`Written::values`]. If the new value would fall outside `bounds`,
    /// the whole batch fails with [`Error::OutOfBounds`](crate::Error::OutOfBounds), which
    /// reports the value the batch saw.
    Incr {
        /// Collection name.
        collection: String,
        /// Key inside the collection.
        key: Vec<u8>,
        /// Amount to add (may be negative).
        delta: i64,
        /// The range the new value must stay within (`i64::MIN..=i64::MAX` for a plain
        /// increment).
        bounds: RangeInclusive<i64>,
    },
    /// Read the key's current value inside the commit and apply the ops [`Derive`] computes
    /// from it, as part of the same batch: a read-modify-write with no window for another
    /// writer, and so no retry. The derived ops must be plain ops on keys of this key's route;
    /// an error from the function (or a derived op that breaks the rules) fails the batch.
    Derive {
        /// Collection name.
        collection: String,
        /// Key inside the collection.
        key: Vec<u8>,
        /// Computes the ops from the current value (`None`: absent).
        derive: Derive,
    },
}

/// The function of an [`Op::Derive`]. It runs inside the group commit, under redb's writer
/// lock, so it must be quick and must not block.
#[derive(Clone)]
pub struct Derive(Arc<DeriveFn>);

type DeriveFn = dyn Fn(Option<&[u8]>) -> Result<Vec<Op>> + Send + Sync;

impl Derive {
    /// Wraps a function.
    pub fn new(f: impl Fn(Option<&[u8]>) -> Result<Vec<Op>> + Send + Sync + 'static) -> Derive {
        Derive(Arc::new(f))
    }

    /// Runs it on a current value.
    pub fn call(&self, current: Option<&[u8]>) -> Result<Vec<Op>> {
        (self.0)(current)
    }
}

impl std::fmt::Debug for Derive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derive(..)")
    }
}

/// Two derives are equal when they are the same function object.
impl PartialEq for Derive {
    fn eq(&self, other: &Derive) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Derive {}

impl Op {
    /// The collection the operation touches.
    pub fn collection(&self) -> &str {
        match self {
            Op::Expect { collection, .. }
            | Op::Put { collection, .. }
            | Op::Delete { collection, .. }
            | Op::Incr { collection, .. }
            | Op::Derive { collection, .. } => collection,
        }
    }

    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Expect { key, .. }
            | Op::Put { key, .. }
            | Op::Delete { key, .. }
            | Op::Incr { key, .. }
            | Op::Derive { key, .. } => key,
        }
    }
}

/// Several operations that commit together or not at all, in the one shard that their keys'
/// shared route names. Build one with [`WriteBatch::new`] and submit it with
/// [`Store::write`](crate::Store::write), which refuses a batch whose keys route differently.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        WriteBatch::default()
    }

    /// Adds a precondition.
    pub fn expect(&mut self, collection: &str, key: impl AsRef<[u8]>, expect: Expect) -> &mut Self {
        self.push(Op::Expect {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            expect,
        })
    }

    /// Adds a put.
    pub fn put(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> &mut Self {
        self.push(Op::Put {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        })
    }

    /// Adds a delete.
    pub fn delete(&mut self, collection: &str, key: impl AsRef<[u8]>) -> &mut Self {
        self.push(Op::Delete {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
        })
    }

    /// Adds an increment.
    pub fn incr(&mut self, collection: &str, key: impl AsRef<[u8]>, delta: i64) -> &mut Self {
        self.incr_within(collection, key, delta, i64::MIN..=i64::MAX)
    }

    /// Adds an increment whose result must stay within `bounds`, or the batch fails with
    /// [`Error::OutOfBounds`](crate::Error::OutOfBounds). Concurrent bounded increments of one
    /// key in one group commit each see the value the ones before them left, so they succeed
    /// or fail in turn, without retries: a seat counter `incr_within(.., n, 0..=house)` never
    /// oversells.
    pub fn incr_within(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        delta: i64,
        bounds: RangeInclusive<i64>,
    ) -> &mut Self {
        self.push(Op::Incr {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            delta,
            bounds,
        })
    }

    /// Adds a read-modify-write of one key, computed inside the commit (see [`Op::Derive`]).
    pub fn derive(
        &mut self,
        collection: &str,
        key: impl AsRef<[u8]>,
        f: impl Fn(Option<&[u8]>) -> Result<Vec<Op>> + Send + Sync + 'static,
    ) -> &mut Self {
        self.push(Op::Derive {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            derive: Derive::new(f),
        })
    }

    /// Adds any operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// The route every key of the batch shares (`None` for an empty batch), or
    /// [`Error::InvalidInput`] naming two keys that route differently.
    pub fn route(&self) -> Result<Option<&[u8]>> {
        let Some(first) = self.ops.first() else {
            return Ok(None);
        };
        let route = route_of(first.key());
        if let Some(other) = self.ops.iter().find(|op| route_of(op.key()) != route) {
            let shown = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            return Err(Error::InvalidInput(format!(
                "a batch is written to one shard, so its keys must share a route: {:?} routes \
                 by {:?} but {:?} by {:?}; give them a common hash tag, such as {:?}",
                shown(first.key()),
                shown(route),
                shown(other.key()),
                shown(route_of(other.key())),
                format!("{{{}}}", shown(route)),
            )));
        }
        Ok(Some(route))
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values the batch carries, for batch-size limits.
    pub(crate) fn payload_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| {
                op.key().len()
                    + match op {
                        Op::Put { value, .. } => value.len(),
                        Op::Expect {
                            expect: Expect::Equals(v),
                            ..
                        } => v.len(),
                        _ => 0,
                    }
            })
            .sum()
    }
}

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest collection name, in bytes.
pub const MAX_COLLECTION_BYTES: usize = 64;

/// Checks one op's collection name, key and value against the limits.
pub(crate) fn check_op(op: &Op, max_value_bytes: usize) -> Result<()> {
    check_collection(op.collection())?;
    check_key(op.key())?;
    if let Op::Put { value, .. }
    | Op::Expect {
        expect: Expect::Equals(value),
        ..
    } = op
        && value.len() > max_value_bytes
    {
        return Err(Error::TooLarge {
            what: "value",
            size: value.len(),
            limit: max_value_bytes,
        });
    }
    Ok(())
}

pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidInput("keys may not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::TooLarge {
            what: "key",
            size: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Collection names are `[A-Za-z0-9_.-]`: names with anything else (such as the `:` of
/// [`IDENTITY_TABLE`](crate::shard::IDENTITY_TABLE)) are reserved for shardkv.
pub(crate) fn check_collection(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_COLLECTION_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "collection name {name:?} must be 1 to {MAX_COLLECTION_BYTES} bytes of letters, digits, '_', '.' or '-'"
        )))
    }
}

/// What a committed [`WriteBatch`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The new value of each [`Op::Incr`], in batch order.
    pub values: Vec<i64>,
}
