//! Single-shard atomic writes: the unit the store routes and the shard commits.
//!
//! A [`WriteBatch`] is a list of operations, possibly across collections, routed as one by a
//! single key. It applies all or nothing: its [`Expect`] preconditions are checked against the
//! state the batch sees (including earlier batches in the same group commit), then every
//! write is applied, in order. A failed precondition applies nothing and leaves other batches
//! in the same commit untouched.
//!
//! ```
//! use shardkv::{Expect, WriteBatch};
//!
//! // A dog and its color-index entry, routed by the dog's name, created only if absent.
//! let mut batch = WriteBatch::routed_by("biscuit");
//! batch
//!     .expect("dogs", "biscuit", Expect::Absent)
//!     .put("dogs", "biscuit", br#"{"color":"orange"}"#)
//!     .put("dogs_by_color", "orange\0biscuit", b"");
//! assert_eq!(batch.len(), 3);
//! ```

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
    /// value is reported in [`Written::values`].
    Incr {
        /// Collection name.
        collection: String,
        /// Key inside the collection.
        key: Vec<u8>,
        /// Amount to add (may be negative).
        delta: i64,
    },
}

impl Op {
    /// The collection the operation touches.
    pub fn collection(&self) -> &str {
        match self {
            Op::Expect { collection, .. }
            | Op::Put { collection, .. }
            | Op::Delete { collection, .. }
            | Op::Incr { collection, .. } => collection,
        }
    }

    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Expect { key, .. }
            | Op::Put { key, .. }
            | Op::Delete { key, .. }
            | Op::Incr { key, .. } => key,
        }
    }
}

/// Several operations that commit together or not at all, in the one shard that the routing
/// key names. Build one with [`WriteBatch::routed_by`] and submit it with
/// [`Store::write`](crate::Store::write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteBatch {
    pub(crate) route: Vec<u8>,
    pub(crate) ops: Vec<Op>,
}

impl WriteBatch {
    /// An empty batch that will be written to the shard owning `route`.
    ///
    /// Keys written through a batch live in the route's shard, whatever their own routing
    /// would say: read keys written this way with [`Store::scan`](crate::Store::scan), which
    /// looks in every shard, or route them by the key they are read by.
    pub fn routed_by(route: impl AsRef<[u8]>) -> Self {
        WriteBatch {
            route: route.as_ref().to_vec(),
            ops: Vec::new(),
        }
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
        self.push(Op::Incr {
            collection: collection.to_owned(),
            key: key.as_ref().to_vec(),
            delta,
        })
    }

    /// Adds any operation.
    pub fn push(&mut self, op: Op) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// The routing key.
    pub fn route(&self) -> &[u8] {
        &self.route
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

/// What a committed [`WriteBatch`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// The new value of each [`Op::Incr`], in batch order.
    pub values: Vec<i64>,
}
