//! Model-based test: random operation sequences against a `BTreeMap`, on both routing schemes
//! with random shard counts, through two `Store` handles on one directory, with reopens.
//!
//! After every step the store must equal the model: every collection scans to the model's
//! entries in the model's order, and every key lives in the shard the router names.

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};

use proptest::prelude::*;
use proptest::test_runner::Config;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use shardkv::{Error, Expect, Scan, ShardBy, Store, WriteBatch};

const COLLECTIONS: [&str; 3] = ["a", "b", "c"];

/// Keys from a small alphabet that straddles shard boundaries: digits before `a`, upper and
/// lower case around `m`/`n`, and bytes after `z`.
fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec![
            "0", "A", "a", "b", "m", "M", "ma", "n", "N", "z", "~", "é",
        ]),
        1..3,
    )
    .prop_map(|parts| parts.concat())
}

fn value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", "1", "-5", "42", "x", "dog", "9223372036854775807"])
        .prop_map(str::to_owned)
}

fn collection() -> impl Strategy<Value = &'static str> {
    prop::sample::select(COLLECTIONS.to_vec())
}

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..=8).prop_map(|n| format!("hash:{n}")),
        proptest::collection::btree_set(
            prop::sample::select(vec!["b", "m", "ma", "n", "t", "z"]),
            0..4
        )
        .prop_map(|splits| {
            if splits.is_empty() {
                "alpha:a-z".to_owned()
            } else {
                format!("alpha:{}", splits.into_iter().collect::<Vec<_>>().join(","))
            }
        }),
    ]
}

#[derive(Clone, Debug)]
enum BatchOp {
    Expect(&'static str, Option<String>),
    Put(&'static str, String),
    Delete(&'static str),
    Incr(&'static str, i64),
}

#[derive(Clone, Debug)]
enum Step {
    Put(usize, &'static str, String, String),
    Insert(usize, &'static str, String, String),
    Cas(usize, &'static str, String, Option<String>, Option<String>),
    Delete(usize, &'static str, String),
    Incr(usize, &'static str, String, i64),
    /// Ops on one key across collections, routed by it: all or nothing.
    Batch(usize, String, Vec<BatchOp>),
    Get(usize, &'static str, String),
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

type Model = BTreeMap<(&'static str, String), String>;

#[derive(Clone, Debug)]
struct Reference {
    scheme: String,
    data: Model,
}

fn incr_model(data: &mut Model, c: &'static str, k: &str, delta: i64) -> Option<i64> {
    let old = match data.get(&(c, k.to_owned())) {
        None => 0,
        Some(v) => v.parse::<i64>().ok()?,
    };
    let new = old.checked_add(delta)?;
    data.insert((c, k.to_owned()), new.to_string());
    Some(new)
}

/// Applies a batch to a copy of the model; `None` if a check or increment fails.
fn batch_model(data: &Model, key: &str, ops: &[BatchOp]) -> Option<Model> {
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

struct Machine;

impl ReferenceStateMachine for Machine {
    type State = Reference;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Reference> {
        scheme()
            .prop_map(|scheme| Reference {
                scheme,
                data: Model::new(),
            })
            .boxed()
    }

    fn transitions(state: &Reference) -> BoxedStrategy<Step> {
        // Known keys make preconditions hit existing entries, not only absent ones.
        let known: Vec<String> = state.data.keys().map(|(_, k)| k.clone()).collect();
        let key = if known.is_empty() {
            key().boxed()
        } else {
            prop_oneof![key(), prop::sample::select(known)].boxed()
        };
        let current = state.data.values().cloned().collect::<Vec<_>>();
        let expected = if current.is_empty() {
            proptest::option::of(value()).boxed()
        } else {
            proptest::option::of(prop_oneof![value(), prop::sample::select(current)]).boxed()
        };
        let delta = prop_oneof![-3i64..=3, Just(i64::MAX)];
        let h = 0usize..2;
        let batch_op = prop_oneof![
            (collection(), expected.clone()).prop_map(|(c, v)| BatchOp::Expect(c, v)),
            (collection(), value()).prop_map(|(c, v)| BatchOp::Put(c, v)),
            collection().prop_map(BatchOp::Delete),
            (collection(), delta.clone()).prop_map(|(c, d)| BatchOp::Incr(c, d)),
        ];
        let bound = proptest::option::of(key.clone());
        prop_oneof![
            4 => (h.clone(), collection(), key.clone(), value()).prop_map(|(h, c, k, v)| Step::Put(h, c, k, v)),
            2 => (h.clone(), collection(), key.clone(), value()).prop_map(|(h, c, k, v)| Step::Insert(h, c, k, v)),
            2 => (h.clone(), collection(), key.clone(), expected.clone(), proptest::option::of(value()))
                .prop_map(|(h, c, k, e, n)| Step::Cas(h, c, k, e, n)),
            2 => (h.clone(), collection(), key.clone()).prop_map(|(h, c, k)| Step::Delete(h, c, k)),
            3 => (h.clone(), collection(), key.clone(), delta).prop_map(|(h, c, k, d)| Step::Incr(h, c, k, d)),
            2 => (h.clone(), key.clone(), proptest::collection::vec(batch_op, 1..5))
                .prop_map(|(h, k, ops)| Step::Batch(h, k, ops)),
            2 => (h.clone(), collection(), key).prop_map(|(h, c, k)| Step::Get(h, c, k)),
            2 => (h.clone(), collection(), bound.clone(), bound.clone(), bound, 0usize..6)
                .prop_map(|(h, c, lo, hi, after, limit)| Step::Scan(h, c, lo, hi, after, limit)),
            1 => h.prop_map(Step::Reopen),
        ]
        .boxed()
    }

    fn apply(mut state: Reference, step: &Step) -> Reference {
        let data = &mut state.data;
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
        state
    }
}

struct Sut {
    dir: tempfile::TempDir,
    handles: [Option<Store>; 2],
    /// The model before the step being applied, for checking return values.
    before: Model,
}

impl Sut {
    fn store(&self, h: usize) -> &Store {
        self.handles[h].as_ref().expect("handle open")
    }
}

struct StoreMachine;

impl StateMachineTest for StoreMachine {
    type SystemUnderTest = Sut;
    type Reference = Machine;

    fn init_test(reference: &Reference) -> Sut {
        let dir = tempfile::tempdir().unwrap();
        let scheme: ShardBy = reference.scheme.parse().unwrap();
        let first = Store::shard_by(scheme.clone())
            .cache_size(1 << 20)
            .open(dir.path())
            .unwrap();
        let second = Store::shard_by(scheme)
            .cache_size(1 << 20)
            .open(dir.path())
            .unwrap();
        Sut {
            dir,
            handles: [Some(first), Some(second)],
            before: Model::new(),
        }
    }

    fn apply(mut sut: Sut, after: &Reference, step: Step) -> Sut {
        let before = std::mem::take(&mut sut.before);
        let had = |c: &'static str, k: &str| before.get(&(c, k.to_owned())).cloned();
        match &step {
            Step::Put(h, c, k, v) => sut.store(*h).put(c, k, v).unwrap(),
            Step::Insert(h, c, k, v) => {
                let inserted = sut.store(*h).insert(c, k, v).unwrap();
                assert_eq!(inserted, had(c, k).is_none());
            }
            Step::Cas(h, c, k, e, n) => {
                let swapped = sut
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
                let existed = sut.store(*h).delete(c, k).unwrap();
                assert_eq!(existed, had(c, k).is_some());
            }
            Step::Incr(h, c, k, d) => {
                let mut model = before.clone();
                match (
                    sut.store(*h).incr(c, k, *d),
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
                let result = sut.store(*h).write(batch);
                match (result, batch_model(&before, k, ops)) {
                    (Ok(_), Some(_)) => {}
                    (Err(Error::Conflict(_) | Error::InvalidInput(_)), None) => {}
                    (got, want) => panic!(
                        "batch on {k}: store {got:?}, model applies: {}",
                        want.is_some()
                    ),
                }
            }
            Step::Get(h, c, k) => {
                let got = sut.store(*h).get(c, k).unwrap();
                assert_eq!(got, had(c, k).map(String::into_bytes));
            }
            Step::Scan(h, c, lo, hi, after, limit) => {
                let lower = lo.clone().map_or(Bound::Unbounded, Bound::Included);
                let upper = hi.clone().map_or(Bound::Unbounded, Bound::Excluded);
                let mut scan = Scan::range::<String>((lower.clone(), upper.clone())).limit(*limit);
                if let Some(a) = after {
                    scan = scan.after(a);
                }
                let got: Vec<(String, String)> = sut
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
                sut.handles[*h] = None;
                sut.handles[*h] = Some(
                    Store::builder()
                        .cache_size(1 << 20)
                        .open(sut.dir.path())
                        .unwrap(),
                );
            }
        }
        sut.before = after.data.clone();
        sut
    }

    fn check_invariants(sut: &Sut, reference: &Reference) {
        for h in 0..2 {
            let store = sut.store(h);
            for c in COLLECTIONS {
                let got: Vec<(Vec<u8>, Vec<u8>)> = store.scan(c, ..).unwrap();
                let want: Vec<(Vec<u8>, Vec<u8>)> = reference
                    .data
                    .iter()
                    .filter(|((col, _), _)| *col == c)
                    .map(|((_, k), v)| (k.clone().into_bytes(), v.clone().into_bytes()))
                    .collect();
                assert_eq!(got, want, "collection {c} through handle {h}");
            }
        }
        let store = sut.store(0);
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

prop_state_machine! {
    #![proptest_config(Config {
        cases: 48,
        max_shrink_iters: 2048,
        failure_persistence: None,
        .. Config::default()
    })]

    #[test]
    fn store_matches_btreemap_model(sequential 1..40 => StoreMachine);
}
