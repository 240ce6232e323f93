//! Operation sequences against the store and a `BTreeMap` (the proptest suite's model,
//! `tests/common/model.rs`), and the same with groups of concurrent writers, whose writes
//! land in one shard's queue together and so share group commits.

use std::collections::BTreeSet;
use std::sync::Barrier;

use shardkv::{Error, ShardBy};

use super::bytes::Bytes;
use super::model::{
    self, BatchOp, COLLECTIONS, KEY_FORMS, KEY_PARTS, Step, Sut, VALUES, key_form, one_route,
};

fn collection(b: &mut Bytes) -> &'static str {
    b.pick(&COLLECTIONS)
}

/// A plain key: a route.
fn plain_key(b: &mut Bytes) -> String {
    let n = 1 + b.byte() % 2;
    (0..n).map(|_| b.pick(&KEY_PARTS)).collect()
}

/// A key in one of the forms that route by a plain key (itself, or through a hash tag).
fn key(b: &mut Bytes) -> String {
    let form = b.byte() as usize % KEY_FORMS.len();
    key_form(form, &plain_key(b))
}

/// A form of `route`, or now and then a key of its own route (which makes a batch refused).
fn key_of(b: &mut Bytes, route: &str) -> String {
    match b.byte() % 16 {
        15 => key(b),
        n => key_form(n as usize, route),
    }
}

fn value(b: &mut Bytes) -> String {
    b.pick(&VALUES).to_owned()
}

fn maybe_value(b: &mut Bytes) -> Option<String> {
    (!b.byte().is_multiple_of(3)).then(|| value(b))
}

fn maybe_key(b: &mut Bytes) -> Option<String> {
    b.byte().is_multiple_of(2).then(|| key(b))
}

fn delta(b: &mut Bytes) -> i64 {
    match b.byte() % 8 {
        0 => i64::MAX,
        n => i64::from(n) - 4,
    }
}

fn scheme(b: &mut Bytes) -> ShardBy {
    let n = b.byte();
    if n.is_multiple_of(2) {
        ShardBy::hash(1 + (n as usize / 2) % 8).unwrap()
    } else {
        let splits: BTreeSet<&str> = (0..n % 4)
            .map(|_| b.pick(&["b", "m", "ma", "n", "t", "z"]))
            .collect();
        ShardBy::split_points(splits).unwrap()
    }
}

/// A write on a key of `route` through handle `h`.
fn write_step(b: &mut Bytes, h: usize, route: String) -> Step {
    let key = key_form(b.byte() as usize, &route);
    match b.byte() % 6 {
        0 => Step::Put(h, collection(b), key, value(b)),
        1 => Step::Insert(h, collection(b), key, value(b)),
        2 => Step::Cas(h, collection(b), key, maybe_value(b), maybe_value(b)),
        3 => Step::Delete(h, collection(b), key),
        4 => Step::Incr(h, collection(b), key, delta(b)),
        _ => {
            let ops = (0..1 + b.byte() % 4)
                .map(|_| match b.byte() % 5 {
                    0 => BatchOp::Expect(collection(b), key_of(b, &route), maybe_value(b)),
                    1 => BatchOp::Put(collection(b), key_of(b, &route), value(b)),
                    2 => BatchOp::Delete(collection(b), key_of(b, &route)),
                    3 => BatchOp::Incr(collection(b), key_of(b, &route), delta(b)),
                    _ => {
                        let (c, k, d) = (collection(b), key_of(b, &route), delta(b) % 4);
                        let lo = -i64::from(b.byte() % 3);
                        BatchOp::IncrWithin(c, k, d, lo, i64::from(b.byte() % 4))
                    }
                })
                .collect();
            Step::Batch(h, ops)
        }
    }
}

fn step(b: &mut Bytes) -> Step {
    let h = (b.byte() & 1) as usize;
    match b.byte() % 10 {
        0..=5 => {
            let route = plain_key(b);
            write_step(b, h, route)
        }
        6 => Step::Get(h, collection(b), key(b)),
        7 | 8 => Step::Scan(
            h,
            collection(b),
            maybe_key(b),
            maybe_key(b),
            maybe_key(b),
            (b.byte() % 6) as usize,
        ),
        _ => Step::Reopen(h),
    }
}

/// Sequential steps on two handles of one store.
pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    let mut sut = Sut::new(&scheme(&mut b));
    // Bounded: each step commits durably, so long inputs would only slow the fuzzer down.
    for _ in 0..64 {
        if b.is_empty() {
            break;
        }
        sut.apply(&step(&mut b));
    }
    sut.check();
}

/// The routes of every key a write step names.
fn step_routes(step: &Step) -> BTreeSet<String> {
    let keys: Vec<&str> = match step {
        Step::Put(_, _, k, _)
        | Step::Insert(_, _, k, _)
        | Step::Cas(_, _, k, _, _)
        | Step::Delete(_, _, k)
        | Step::Incr(_, _, k, _) => vec![k],
        Step::Batch(_, ops) => ops.iter().map(BatchOp::key).collect(),
        _ => Vec::new(),
    };
    keys.into_iter()
        .map(|k| model::route(k).to_owned())
        .collect()
}

/// The counter concurrent increments share; no generated key can collide with it.
const SHARED: (&str, &str) = ("a", "shared-counter");

/// Like [`check`], with steps that are groups of 2 to 6 writers released at once on distinct
/// keys (so the model's answer does not depend on their order), plus concurrent increments
/// of one shared counter, whose answers must be exactly the next values in some order.
pub fn check_concurrent(data: &[u8]) {
    let mut b = Bytes(data);
    let mut sut = Sut::new(&scheme(&mut b));
    for _ in 0..24 {
        if b.is_empty() {
            break;
        }
        if b.byte() % 3 != 0 {
            sut.apply(&step(&mut b));
            continue;
        }
        // Writers on disjoint routes, so no two touch one key and the model's answer does not
        // depend on their order.
        let mut routes = BTreeSet::new();
        let writers: Vec<Step> = (0..2 + b.byte() % 5)
            .filter_map(|_| {
                let h = (b.byte() & 1) as usize;
                let route = plain_key(&mut b);
                let step = write_step(&mut b, h, route);
                let touched = step_routes(&step);
                routes
                    .is_disjoint(&touched)
                    .then(|| routes.extend(touched))
                    .map(|()| step)
            })
            .collect();
        let increments = usize::from(b.byte() % 4);
        concurrent_group(&mut sut, &writers, increments);
    }
    sut.check();
    let counter = sut.store(0).get(SHARED.0, SHARED.1).unwrap();
    let want = sut.model.get(&(SHARED.0, SHARED.1.to_owned())).cloned();
    assert_eq!(counter.map(|v| String::from_utf8(v).unwrap()), want);
}

/// Runs `writers` and `increments` increments of [`SHARED`] from one thread each, all
/// released by one barrier; checks each answer and updates the model.
fn concurrent_group(sut: &mut Sut, writers: &[Step], increments: usize) {
    let before = sut.model.clone();
    let shared_key = (SHARED.0, SHARED.1.to_owned());
    let base: i64 = before.get(&shared_key).map_or(0, |v| v.parse().unwrap());
    let barrier = Barrier::new(writers.len() + increments);
    let sut_ref = &*sut;
    let before = &before;
    let (outcomes, mut counted) = std::thread::scope(|s| {
        let writes: Vec<_> = writers
            .iter()
            .map(|step| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    // Distinct keys: each answer is what the step alone would get.
                    apply_alone(sut_ref, before, step)
                })
            })
            .collect();
        let incrs: Vec<_> = (0..increments)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    sut_ref.store(0).incr(SHARED.0, SHARED.1, 1)
                })
            })
            .collect();
        let outcomes: Vec<Result<(), String>> =
            writes.into_iter().map(|t| t.join().unwrap()).collect();
        let counted: Vec<i64> = incrs
            .into_iter()
            .map(|t| t.join().unwrap().expect("increment"))
            .collect();
        (outcomes, counted)
    });
    for (step, outcome) in writers.iter().zip(outcomes) {
        if let Err(why) = outcome {
            panic!("{step:?} run concurrently: {why}");
        }
        model::apply_model(&mut sut.model, step);
    }
    counted.sort_unstable();
    let want: Vec<i64> = (1..=increments as i64).map(|i| base + i).collect();
    assert_eq!(counted, want, "concurrent increments of one counter");
    if increments > 0 {
        sut.model
            .insert(shared_key, (base + increments as i64).to_string());
    }
}

/// Applies a write step to `sut`'s store and says whether its answer agrees with `before` as
/// the model. Safe from any thread.
fn apply_alone(sut: &Sut, before: &model::Model, step: &Step) -> Result<(), String> {
    Alone { sut, before }.apply_step(step)
}

struct Alone<'a> {
    sut: &'a Sut,
    before: &'a model::Model,
}

impl Alone<'_> {
    /// Applies a write step to the store and says whether its answer agrees with the model.
    fn apply_step(&self, step: &Step) -> Result<(), String> {
        let had = |c: &'static str, k: &str| self.before.get(&(c, k.to_owned())).cloned();
        let agree = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
        match step {
            Step::Put(h, c, k, v) => self.sut.store(*h).put(c, k, v).map_err(|e| e.to_string()),
            Step::Insert(h, c, k, v) => {
                let got = self
                    .sut
                    .store(*h)
                    .insert(c, k, v)
                    .map_err(|e| e.to_string())?;
                agree(got == had(c, k).is_none(), format!("inserted: {got}"))
            }
            Step::Cas(h, c, k, e, n) => {
                let got = self
                    .sut
                    .store(*h)
                    .compare_and_set(
                        c,
                        k,
                        e.as_deref().map(str::as_bytes),
                        n.as_deref().map(str::as_bytes),
                    )
                    .map_err(|e| e.to_string())?;
                agree(got == (had(c, k) == *e), format!("swapped: {got}"))
            }
            Step::Delete(h, c, k) => {
                let got = self.sut.store(*h).delete(c, k).map_err(|e| e.to_string())?;
                agree(got == had(c, k).is_some(), format!("existed: {got}"))
            }
            Step::Incr(h, c, k, d) => {
                let mut model = self.before.clone();
                match (
                    self.sut.store(*h).incr(c, k, *d),
                    model::incr_model(&mut model, c, k, *d, i64::MIN..=i64::MAX),
                ) {
                    (Ok(got), Some(want)) => agree(got == want, format!("{got} != {want}")),
                    (Err(Error::InvalidInput(_)), None) => Ok(()),
                    (got, want) => Err(format!("store {got:?}, model {want:?}")),
                }
            }
            Step::Batch(h, ops) => {
                let mut batch = shardkv::WriteBatch::new();
                for op in ops {
                    match op {
                        BatchOp::Expect(c, k, None) => batch.expect(c, k, shardkv::Expect::Absent),
                        BatchOp::Expect(c, k, Some(v)) => {
                            batch.expect(c, k, shardkv::Expect::Equals(v.clone().into_bytes()))
                        }
                        BatchOp::Put(c, k, v) => batch.put(c, k, v),
                        BatchOp::Delete(c, k) => batch.delete(c, k),
                        BatchOp::Incr(c, k, d) => batch.incr(c, k, *d),
                        BatchOp::IncrWithin(c, k, d, lo, hi) => {
                            batch.incr_within(c, k, *d, *lo..=*hi)
                        }
                    };
                }
                match (
                    self.sut.store(*h).write(batch),
                    model::batch_model(self.before, ops),
                ) {
                    (Ok(_), Some(_)) => Ok(()),
                    (Err(Error::InvalidInput(_)), None) if !one_route(ops) => Ok(()),
                    (
                        Err(
                            Error::Conflict(_) | Error::OutOfBounds { .. } | Error::InvalidInput(_),
                        ),
                        None,
                    ) if one_route(ops) => Ok(()),
                    (got, want) => Err(format!("store {got:?}, model applies: {}", want.is_some())),
                }
            }
            other => Err(format!("not a write: {other:?}")),
        }
    }
}
