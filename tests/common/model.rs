//! The model shared by the proptest state machine (`tests/model.rs`) and the fuzz target
//! (`fuzz/fuzz_targets/store_model.rs`): one `Step` enum, one reference `BTreeMap`, and one
//! system under test that applies each step to real stores and to the model and checks that
//! they agree.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use shardkv::{Error, Expect, Scan, ShardBy, Store, WriteBatch};

/// The collections steps touch.
pub const COLLECTIONS: [&str; 3] = ["a", "b", "c"];
/// Key parts: digits before `a`, upper and lower case around `m`/`n`, bytes after `z`, so
/// that keys straddle alphabetical shard boundaries.
pub const KEY_PARTS: [&str; 12] = ["0", "A", "a", "b", "m", "M", "ma", "n", "N", "z", "~", "é"];
/// Values: integers (for increments), non-integers, the empty string, and `i64::MAX`.
pub const VALUES: [&str; 7] = ["", "1", "-5", "42", "x", "dog", "9223372036854775807"];

/// One operation inside a batch, on the batch's routing key.
#[derive(Clone, Debug)]
pub enum BatchOp {
    Expect(&'static str, Option<String>),
    Put(&'static str, String),
    Delete(&'static str),
    Incr(&'static str, i64),
}

/// One step; the `usize` picks one of two store handles on the same directory.
#[derive(Clone, Debug)]
pub enum Step {
    Put(usize, &'static str, String, String),
    Insert(usize, &'static str, String, String),
    Cas(usize, &'static str, String, Option<String>, Option<String>),
    Delete(usize, &'static str, String),
    Incr(usize, &'static str, String, i64),
    /// Ops on one key across collections, routed by it: all or nothing.
    Batch(usize, String, Vec<BatchOp>),
    Get(usize, &'static str, String),
    /// Collection, lower bound (inclusive), upper bound (exclusive), resume after, limit.
    Scan(
        usize,
        &'static str,
        Option<String>,
        Option<String>,
        Option<String>,
        usize,
    ),
    Reopen(usize),
}

/// The reference: `(collection, key) -> value`.
pub type Model = BTreeMap<(&'static str, String), String>;

/// Applies an increment to the model; `None` if the value is not an integer or overflows.
pub fn incr_model(data: &mut Model, c: &'static str, k: &str, delta: i64) -> Option<i64> {
    let old = match data.get(&(c, k.to_owned())) {
        None => 0,
        Some(v) => v.parse::<i64>().ok()?,
    };
    let new = old.checked_add(delta)?;
    data.insert((c, k.to_owned()), new.to_string());
    Some(new)
}

/// Applies a batch to a copy of the model; `None` if a check or increment fails.
pub fn batch_model(data: &Model, key: &str, ops: &[BatchOp]) -> Option<Model> {
    let mut next = data.clone();
    for op in ops {
        match op {
            BatchOp::Expect(c, want) => {
                if next.get(&(*c, key.to_owned())) != want.as_ref() {
                    return None;
                }
            }
            BatchOp::Put(c, v) => {
                next.insert((*c, key.to_owned()), v.clone());
            }
            BatchOp::Delete(c) => {
                next.remove(&(*c, key.to_owned()));
            }
            BatchOp::Incr(c, d) => {
                incr_model(&mut next, c, key, *d)?;
            }
        }
    }
    Some(next)
}

/// Applies a step to the model.
pub fn apply_model(data: &mut Model, step: &Step) {
    match step {
        Step::Put(_, c, k, v) => {
            data.insert((*c, k.clone()), v.clone());
        }
        Step::Insert(_, c, k, v) => {
            data.entry((*c, k.clone())).or_insert_with(|| v.clone());
        }
        Step::Cas(_, c, k, expected, new) => {
            if data.get(&(*c, k.clone())) == expected.as_ref() {
                match new {
                    Some(v) => data.insert((*c, k.clone()), v.clone()),
                    None => data.remove(&(*c, k.clone())),
                };
            }
        }
        Step::Delete(_, c, k) => {
            data.remove(&(*c, k.clone()));
        }
        Step::Incr(_, c, k, d) => {
            incr_model(data, c, k, *d);
        }
        Step::Batch(_, k, ops) => {
            if let Some(next) = batch_model(data, k, ops) {
                *data = next;
            }
        }
        Step::Get(..) | Step::Scan(..) | Step::Reopen(_) => {}
    }
}

/// Two store handles on one directory, and the model they must match.
pub struct Sut {
    pub dir: tempfile::TempDir,
    handles: [Option<Store>; 2],
    pub model: Model,
}

impl Sut {
    pub fn new(scheme: &ShardBy) -> Sut {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Store::shard_by(scheme.clone())
                .cache_size(1 << 20)
                .open(dir.path())
                .unwrap()
        };
        let handles = [Some(open()), Some(open())];
        Sut {
            dir,
            handles,
            model: Model::new(),
        }
    }

    pub fn store(&self, h: usize) -> &Store {
        self.handles[h].as_ref().expect("handle open")
    }

    /// Applies a step to the store and the model, checking what the store answered.
    pub fn apply(&mut self, step: &Step) {
        let before = self.model.clone();
        let had = |c: &'static str, k: &str| before.get(&(c, k.to_owned())).cloned();
        match step {
            Step::Put(h, c, k, v) => self.store(*h).put(c, k, v).unwrap(),
            Step::Insert(h, c, k, v) => {
                let inserted = self.store(*h).insert(c, k, v).unwrap();
                assert_eq!(inserted, had(c, k).is_none());
            }
            Step::Cas(h, c, k, e, n) => {
                let swapped = self
                    .store(*h)
                    .compare_and_set(
                        c,
                        k,
                        e.as_deref().map(str::as_bytes),
                        n.as_deref().map(str::as_bytes),
                    )
                    .unwrap();
                assert_eq!(swapped, had(c, k) == *e);
            }
            Step::Delete(h, c, k) => {
                let existed = self.store(*h).delete(c, k).unwrap();
                assert_eq!(existed, had(c, k).is_some());
            }
            Step::Incr(h, c, k, d) => {
                let mut model = before.clone();
                match (
                    self.store(*h).incr(c, k, *d),
                    incr_model(&mut model, c, k, *d),
                ) {
                    (Ok(got), Some(want)) => assert_eq!(got, want),
                    (Err(Error::InvalidInput(_)), None) => {}
                    (got, want) => panic!("incr {c}/{k} by {d}: store {got:?}, model {want:?}"),
                }
            }
            Step::Batch(h, k, ops) => {
                let mut batch = WriteBatch::routed_by(k);
                for op in ops {
                    match op {
                        BatchOp::Expect(c, None) => batch.expect(c, k, Expect::Absent),
                        BatchOp::Expect(c, Some(v)) => {
                            batch.expect(c, k, Expect::Equals(v.clone().into_bytes()))
                        }
                        BatchOp::Put(c, v) => batch.put(c, k, v),
                        BatchOp::Delete(c) => batch.delete(c, k),
                        BatchOp::Incr(c, d) => batch.incr(c, k, *d),
                    };
                }
                match (self.store(*h).write(batch), batch_model(&before, k, ops)) {
                    (Ok(_), Some(_)) => {}
                    (Err(Error::Conflict(_) | Error::InvalidInput(_)), None) => {}
                    (got, want) => panic!(
                        "batch on {k}: store {got:?}, model applies: {}",
                        want.is_some()
                    ),
                }
            }
            Step::Get(h, c, k) => {
                assert_eq!(
                    self.store(*h).get(c, k).unwrap(),
                    had(c, k).map(String::into_bytes)
                );
            }
            Step::Scan(h, c, lo, hi, after, limit) => {
                let lower = lo.clone().map_or(Bound::Unbounded, Bound::Included);
                let upper = hi.clone().map_or(Bound::Unbounded, Bound::Excluded);
                let mut scan = Scan::range::<String>((lower.clone(), upper.clone())).limit(*limit);
                if let Some(a) = after {
                    scan = scan.after(a);
                }
                let got: Vec<(String, String)> = self
                    .store(*h)
                    .scan(c, scan)
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                let want: Vec<(String, String)> = before
                    .iter()
                    .filter(|((col, _), _)| col == c)
                    .map(|((_, k), v)| (k.clone(), v.clone()))
                    .filter(|(k, _)| {
                        RangeBounds::<String>::contains(&(lower.as_ref(), upper.as_ref()), k)
                            && after.as_ref().is_none_or(|a| k.as_bytes() > a.as_bytes())
                    })
                    .take(*limit)
                    .collect();
                assert_eq!(
                    got, want,
                    "scan {c} {lo:?}..{hi:?} after {after:?} limit {limit}"
                );
            }
            Step::Reopen(h) => {
                self.handles[*h] = None;
                self.handles[*h] = Some(
                    Store::builder()
                        .cache_size(1 << 20)
                        .open(self.dir.path())
                        .unwrap(),
                );
            }
        }
        apply_model(&mut self.model, step);
    }

    /// Every collection scans to the model through both handles, in the model's order, and
    /// every key lives in the shard the router names.
    pub fn check(&self) {
        for h in 0..2 {
            let store = self.store(h);
            for c in COLLECTIONS {
                let got: Vec<(Vec<u8>, Vec<u8>)> = store.scan(c, ..).unwrap();
                let want: Vec<(Vec<u8>, Vec<u8>)> = self
                    .model
                    .iter()
                    .filter(|((col, _), _)| *col == c)
                    .map(|((_, k), v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                    .collect();
                assert_eq!(got, want, "collection {c} through handle {h}");
            }
        }
        let store = self.store(0);
        for shard in 0..store.shard_count() {
            for (c, key) in store.keys_in_shard(shard).unwrap() {
                assert_eq!(
                    store.shard_of(&key),
                    shard,
                    "{c}/{} is in shard {shard} of {}",
                    String::from_utf8_lossy(&key),
                    store.scheme()
                );
            }
        }
    }
}
