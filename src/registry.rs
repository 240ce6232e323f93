//! The registry: the Node lesson's request counter and dog registry, on the store.
//!
//! Schema (collections present in every shard):
//!
//! | collection | key | value |
//! |---|---|---|
//! | `counters` | `requests` | decimal count |
//! | `dogs` | name | dog JSON `{"name","color"}` |
//! | `dogs_by_color` | `color \0 name \0 {name}` | dog JSON (a covering index) |
//!
//! An index key ends with the dog's name as its hash tag, so it routes with the dog (see
//! [`route_of`](crate::shard_by::route_of)): both live in one shard and are written in **one
//! atomic single-shard batch**, and the index never disagrees with the dogs. The name comes
//! twice because the tag's closing `}` would sort `a}` after `ab}`: the first copy, ended by
//! `\0` (which no name holds), orders the index by name. Names and colors may not contain `{`
//! or `}`, which would change where a dog's keys route.
//! Finding dogs by color scans the `color\0` prefix of the index in every shard and merges by
//! name; it never scans the dogs themselves.
//!
//! Invariants: the counter is exact (every [`Registry::hit`] returns a distinct value, one
//! more than the last); no two dogs share a name; every dog has exactly one index entry,
//! under its current color. Names and colors are case-sensitive, stored as given.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use serde::{Deserialize, Serialize};

use crate::ShardStats;
use crate::batch::{Expect, WriteBatch};
use crate::error::{Error, Result};
use crate::store::{Scan, Store};

/// Collection of counters.
pub const COUNTERS: &str = "counters";
/// The request counter's key.
pub const REQUESTS: &str = "requests";
/// Collection of dogs, keyed by name.
pub const DOGS: &str = "dogs";
/// Index of dogs by color, keyed `color\0name\0{name}`, routed by name.
pub const DOGS_BY_COLOR: &str = "dogs_by_color";

/// Longest dog name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest color, in bytes.
pub const MAX_COLOR_BYTES: usize = 64;
/// Default page size of a listing.
pub const DEFAULT_LIMIT: usize = 1000;
/// Largest page size of a listing.
pub const MAX_LIMIT: usize = 10_000;

/// A dog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dog {
    /// Unique, case-sensitive name.
    pub name: String,
    /// Color, case-sensitive.
    pub color: String,
}

impl Dog {
    /// A validated dog.
    pub fn new(name: impl Into<String>, color: impl Into<String>) -> Result<Dog> {
        let dog = Dog {
            name: name.into(),
            color: color.into(),
        };
        check_field("name", &dog.name, MAX_NAME_BYTES)?;
        check_field("color", &dog.color, MAX_COLOR_BYTES)?;
        Ok(dog)
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a dog serializes")
    }

    fn from_bytes(bytes: &[u8]) -> Result<Dog> {
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Corrupted(format!("stored dog is not valid JSON: {e}")))
    }

    fn index_key(&self) -> Vec<u8> {
        index_key(&self.color, &self.name)
    }
}

/// `color \0 name \0 {name}`: the prefix `color\0` selects one color, in name order, and
/// the key of a name is below those of every later name.
fn index_key(color: &str, name: &str) -> Vec<u8> {
    format!("{color}\0{name}\0{{{name}}}").into_bytes()
}

/// The dog a derive sees, or [`Error::NotFound`].
fn current_dog(name: &str, current: Option<&[u8]>) -> Result<Dog> {
    match current {
        Some(bytes) => Dog::from_bytes(bytes),
        None => Err(Error::NotFound(format!("no dog named {name:?}"))),
    }
}

/// Checks a name or color: 1..=max bytes, no control characters, no hash-tag braces.
pub fn check_field(what: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::InvalidInput(format!("{what} must not be empty")));
    }
    if value.len() > max {
        return Err(Error::InvalidInput(format!(
            "{what} is {} bytes; at most {max} are allowed",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "{what} must not contain control characters"
        )));
    }
    if value.contains(['{', '}']) {
        return Err(Error::InvalidInput(format!(
            "{what} must not contain '{{' or '}}'"
        )));
    }
    Ok(())
}

/// The counter and the dog registry over a [`Store`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Registry {
    store: Store,
}

impl Registry {
    /// A registry on an open store.
    pub fn new(store: Store) -> Registry {
        Registry { store }
    }

    /// Counts one request and returns the new count: exact across processes, durable when it
    /// resolves.
    pub async fn hit(&self) -> Result<i64> {
        let mut batch = WriteBatch::new();
        batch.incr(COUNTERS, REQUESTS, 1);
        match self.store.write_async(batch).await {
            Ok(written) => Ok(written.values[0]),
            // No client chose the key or the delta: a counter that cannot be incremented is
            // the server's state, not the caller's mistake.
            Err(Error::InvalidInput(why)) => Err(Error::Corrupted(format!(
                "the request counter cannot be incremented: {why}"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The current count.
    pub fn count(&self) -> Result<i64> {
        self.store.counter(COUNTERS, REQUESTS)
    }

    /// Registers a new dog; [`Error::Conflict`] if the name is taken.
    pub async fn create(&self, dog: &Dog) -> Result<()> {
        let dog = Dog::new(&dog.name, &dog.color)?;
        let bytes = dog.to_bytes();
        let mut batch = WriteBatch::new();
        batch
            .expect(DOGS, &dog.name, Expect::Absent)
            .put(DOGS, &dog.name, &bytes)
            .put(DOGS_BY_COLOR, dog.index_key(), &bytes);
        match self.store.write_async(batch).await {
            Err(Error::Conflict(_)) => Err(Error::Conflict(format!(
                "a dog named {:?} already exists",
                dog.name
            ))),
            other => other.map(drop),
        }
    }

    /// The dog with this name, if any.
    pub fn get(&self, name: &str) -> Result<Option<Dog>> {
        check_field("name", name, MAX_NAME_BYTES)?;
        self.store
            .get(DOGS, name)?
            .map(|b| Dog::from_bytes(&b))
            .transpose()
    }

    /// Changes a dog's color, moving its index entry in the same transaction. The current
    /// color is read inside the group commit (an [`Op::Derive`](crate::Op::Derive)), so
    /// concurrent recolors of one dog apply one after another: no retry, no conflict.
    pub async fn recolor(&self, name: &str, color: &str) -> Result<Dog> {
        let wanted = Dog::new(name, color)?;
        let bytes = wanted.to_bytes();
        let new = wanted.clone();
        let mut batch = WriteBatch::new();
        batch.derive(DOGS, name, move |current| {
            let old = current_dog(&new.name, current)?;
            let mut ops = WriteBatch::new();
            if old.color != new.color {
                ops.put(DOGS, &new.name, &bytes)
                    .delete(DOGS_BY_COLOR, old.index_key())
                    .put(DOGS_BY_COLOR, new.index_key(), &bytes);
            }
            Ok(ops.ops)
        });
        self.store.write_async(batch).await?;
        Ok(wanted)
    }

    /// Removes a dog and its index entry, in one step inside the group commit; returns the
    /// dog as it was.
    pub async fn delete(&self, name: &str) -> Result<Dog> {
        check_field("name", name, MAX_NAME_BYTES)?;
        // Filled by the derive, which runs once, inside the commit that removes the dog.
        let removed = Arc::new(Mutex::new(None));
        let seen = removed.clone();
        let owned = name.to_owned();
        let mut batch = WriteBatch::new();
        batch.derive(DOGS, name, move |current| {
            let old = current_dog(&owned, current)?;
            let mut ops = WriteBatch::new();
            ops.delete(DOGS, &owned)
                .delete(DOGS_BY_COLOR, old.index_key());
            *seen.lock() = Some(old);
            Ok(ops.ops)
        });
        self.store.write_async(batch).await?;
        let old = removed.lock().take();
        old.ok_or_else(|| Error::NotFound(format!("no dog named {name:?}")))
    }

    /// Dogs of one color, sorted by name, from every shard's color index: up to `limit`,
    /// starting after the name `after`.
    pub fn by_color(&self, color: &str, after: Option<&str>, limit: usize) -> Result<Vec<Dog>> {
        check_field("color", color, MAX_COLOR_BYTES)?;
        let mut scan = Scan::prefix(format!("{color}\0")).limit(limit);
        if let Some(after) = after {
            scan = scan.after(index_key(color, after));
        }
        self.store
            .scan(DOGS_BY_COLOR, scan)?
            .iter()
            .map(|(_, v)| Dog::from_bytes(v))
            .collect()
    }

    /// All dogs, sorted by name, paged like [`Registry::by_color`].
    pub fn all(&self, after: Option<&str>, limit: usize) -> Result<Vec<Dog>> {
        let mut scan = Scan::all().limit(limit);
        if let Some(after) = after {
            scan = scan.after(after);
        }
        self.store
            .scan(DOGS, scan)?
            .iter()
            .map(|(_, v)| Dog::from_bytes(v))
            .collect()
    }

    /// The store underneath, for the other domains that share it (tickets) and for the
    /// facts `/stats` shows (data directory, shard count).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This process's per-shard counters.
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        self.store.stats()
    }

    /// The store's routing scheme, as a spec.
    pub fn scheme(&self) -> String {
        self.store.scheme().to_string()
    }

    /// The shard a dog's name routes to.
    pub fn shard_of(&self, name: &str) -> usize {
        self.store.shard_of(name)
    }
}

/// Whether `n` is prime, by trial division up to its square root (the lesson's algorithm, done
/// without overflow). Returns `None` if `cancel` was set before it finished.
pub fn is_prime(n: u64, cancel: &AtomicBool) -> Option<bool> {
    if n < 2 {
        return Some(false);
    }
    if n < 4 {
        return Some(true);
    }
    if n.is_multiple_of(2) || n.is_multiple_of(3) {
        return Some(false);
    }
    let mut i: u64 = 5;
    let mut steps: u32 = 0;
    // i <= n / i is i * i <= n without overflow.
    while i <= n / i {
        if n.is_multiple_of(i) || n.is_multiple_of(i + 2) {
            return Some(false);
        }
        i += 6;
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(1 << 20) && cancel.load(Ordering::Relaxed) {
            return None;
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_by_trial_division() {
        let never = AtomicBool::new(false);
        let primes: Vec<u64> = (0..50)
            .filter(|&n| is_prime(n, &never) == Some(true))
            .collect();
        assert_eq!(
            primes,
            [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47]
        );
        assert_eq!(is_prime(1_000_000_007, &never), Some(true));
        assert_eq!(is_prime(1_000_000_007 * 3, &never), Some(false));
        // A prime's square: needs the square-root bound to be inclusive.
        assert_eq!(is_prime(1_000_003 * 1_000_003, &never), Some(false));
        assert_eq!(is_prime(u64::MAX, &never), Some(false));
    }

    #[test]
    fn a_cancelled_check_stops() {
        let cancelled = AtomicBool::new(true);
        assert_eq!(is_prime(18_446_744_073_709_551_557, &cancelled), None);
    }

    #[test]
    fn fields_are_validated() {
        assert!(Dog::new("biscuit", "orange").is_ok());
        assert!(Dog::new("", "orange").is_err());
        assert!(Dog::new("a".repeat(257), "orange").is_err());
        assert!(Dog::new("biscuit", "c".repeat(65)).is_err());
        assert!(Dog::new("bis\ncuit", "orange").is_err());
        assert!(Dog::new("biscuit", "or\0ange").is_err());
        assert!(Dog::new("fancy feast", "white").is_ok());
        assert!(Dog::new("bis{cuit}", "orange").is_err());
        assert!(Dog::new("biscuit", "{orange").is_err());
    }
}
