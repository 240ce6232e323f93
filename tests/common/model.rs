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

/// How a key carries a route: `KEY_FORMS[i]` with `{}` replaced by the route. The first is
/// the plain key, which routes by itself; the others route by the route through a hash tag.
pub const KEY_FORMS: [&str; 4] = ["{}", "{{{}}}", "x{{{}}}", "{{{}}}\0y"];

/// `KEY_FORMS[form]` applied to `route`.
pub fn key_form(form: usize, route: &str) -> String {
    match form % KEY_FORMS.len() {
        0 => route.to_owned(),
        1 => format!("{{{route}}}"),
        2 => format!("x{{{route}}}"),
        _ => format!("{{{route}}}\0y"),
    }
}

/// The route of a key, as the store's documented rule says (written again here, so that the
/// model does not trust the code under test): the bytes between the first `{` and the first
/// `}` after it, if any; else the whole key.
pub fn route(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// One operation inside a batch, on a key.
#[derive(Clone, Debug)]
pub enum BatchOp {
    Expect(&'static str, String, Option<String>),
    Put(&'static str, String, String),
    Delete(&'static str, String),
    Incr(&'static str, String, i64),
    /// An increment that must stay within `lo..=hi`.
    IncrWithin(&'static str, String, i64, i64, i64),
}

impl BatchOp {
    pub fn key(&self) -> &str {
        match self {
            BatchOp::Expect(_, k, _)
            | BatchOp::Put(_, k, _)
            | BatchOp::Delete(_, k)
            | BatchOp::Incr(_, k, _)
            | BatchOp::IncrWithin(_, k, ..) => k,
        }
    }
}

/// Whether every key of a batch has one route (else the store refuses the batch).
pub fn one_route(ops: &[BatchOp]) -> bool {
    ops.windows(2)
        .all(|w| route(w[0].key()) == route(w[1].key()))
}

/// One step; the `usize` picks one of two store handles on the same directory.
#[derive(Clone, Debug)]
pub enum Step {
    Put(usize, &'static str, String, String),
    Insert(usize, &'static str, String, String),
    Cas(usize, &'static str, String, Option<String>, Option<String>),
    Delete(usize, &'static str, String),
    Incr(usize, &'static str, String, i64),
    /// Ops on keys across collections, all or nothing; refused whole if the keys do not share
    /// one route.
    Batch(usize, Vec<BatchOp>),
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

/// Applies an increment to the model; `None` if the value is not an integer, overflows or
/// would leave `bounds`.
pub fn incr_model(
    data: &mut Model,
    c: &'static str,
    k: &str,
    delta: i64,
    bounds: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    let old = match data.get(&(c, k.to_owned())) {
        None => 0,
        Some(v) => v.parse::<i64>().ok()?,
    };
    let new = old.checked_add(delta).filter(|n| bounds.contains(n))?;
    data.insert((c, k.to_owned()), new.to_string());
    Some(new)
}

/// Applies a batch to a copy of the model; `None` if its keys do not share a route, or a
/// check or increment fails.
pub fn batch_model(data: &Model, ops: &[BatchOp]) -> Option<Model> {
    if !one_route(ops) {
        return None;
    }
    let mut next = data.clone();
    for op in ops {
        match op {
            BatchOp::Expect(c, k, want) => {
                if next.get(&(*c, k.clone())) != want.as_ref() {
                    return None;
                }
            }
            BatchOp::Put(c, k, v) => {
                next.insert((*c, k.clone()), v.clone());
            }
            BatchOp::Delete(c, k) => {
                next.remove(&(*c, k.clone()));
            }
            BatchOp::Incr(c, k, d) => {
                incr_model(&mut next, c, k, *d, i64::MIN..=i64::MAX)?;
            }
            BatchOp::IncrWithin(c, k, d, lo, hi) => {
                incr_model(&mut next, c, k, *d, *lo..=*hi)?;
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
            incr_model(data, c, k, *d, i64::MIN..=i64::MAX);
        }
        Step::Batch(_, ops) => {
            if let Some(next) = batch_model(data, ops) {
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
                    incr_model(&mut model, c, k, *d, i64::MIN..=i64::MAX),
                ) {
                    (Ok(got), Some(want)) => assert_eq!(got, want),
                    (Err(Error::InvalidInput(_)), None) => {}
                    (got, want) => panic!("incr {c}/{k} by {d}: store {got:?}, model {want:?}"),
                }
            }
            Step::Batch(h, ops) => {
                let mut batch = WriteBatch::new();
                for op in ops {
                    match op {
                        BatchOp::Expect(c, k, None) => batch.expect(c, k, Expect::Absent),
                        BatchOp::Expect(c, k, Some(v)) => {
                            batch.expect(c, k, Expect::Equals(v.clone().into_bytes()))
                        }
                        BatchOp::Put(c, k, v) => batch.put(c, k, v),
                        BatchOp::Delete(c, k) => batch.delete(c, k),
                        BatchOp::Incr(c, k, d) => batch.incr(c, k, *d),
                        BatchOp::IncrWithin(c, k, d, lo, hi) => {
                            batch.incr_within(c, k, *d, *lo..=*hi)
                        }
                    };
                }
                match (self.store(*h).write(batch), batch_model(&before, ops)) {
                    (Ok(_), Some(_)) => {}
                    (Err(Error::InvalidInput(_)), None) if !one_route(ops) => {}
                    (
                        Err(
                            Error::Conflict(_) | Error::OutOfBounds { .. } | Error::InvalidInput(_),
                        ),
                        None,
                    ) if one_route(ops) => {}
                    (got, want) => panic!(
                        "batch {ops:?}: store {got:?}, model applies: {}",
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
        // One key, one place: every key lives in the shard of its route, which the model
        // computes for itself (so a key with a hash tag lives with the plain key it names).
        let store = self.store(0);
        for shard in 0..store.shard_count() {
            for (c, key) in store.keys_in_shard(shard).unwrap() {
                let key = String::from_utf8(key).unwrap();
                assert_eq!(
                    store.shard_of(route(&key)),
                    shard,
                    "{c}/{key:?} (route {:?}) is in shard {shard} of {}",
                    route(&key),
                    store.scheme()
                );
            }
        }
    }
}
