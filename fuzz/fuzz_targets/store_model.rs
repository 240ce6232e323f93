//! Random operation sequences against the store and a `BTreeMap`, decoded from the fuzzer's
//! bytes. The model and the checker are the proptest suite's (`tests/common/model.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardkv::ShardBy;

#[path = "../../tests/common/model.rs"]
mod model;

use model::{BatchOp, COLLECTIONS, KEY_FORMS, KEY_PARTS, Step, Sut, VALUES, key_form};

/// Reads small choices from the input; runs dry as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.byte() as usize % from.len()]
    }
    fn handle(&mut self) -> usize {
        (self.byte() & 1) as usize
    }
    fn collection(&mut self) -> &'static str {
        self.pick(&COLLECTIONS)
    }
    fn plain_key(&mut self) -> String {
        let n = 1 + self.byte() % 2;
        (0..n).map(|_| self.pick(&KEY_PARTS)).collect()
    }
    fn key(&mut self) -> String {
        let form = self.byte() as usize % KEY_FORMS.len();
        key_form(form, &self.plain_key())
    }
    /// A form of `route`, or now and then a key of its own route.
    fn key_of(&mut self, route: &str) -> String {
        match self.byte() % 16 {
            15 => self.key(),
            n => key_form(n as usize, route),
        }
    }
    fn value(&mut self) -> String {
        self.pick(&VALUES).to_owned()
    }
    fn maybe_value(&mut self) -> Option<String> {
        (self.byte() % 3 != 0).then(|| self.value())
    }
    fn maybe_key(&mut self) -> Option<String> {
        (self.byte() % 2 == 0).then(|| self.key())
    }
    fn delta(&mut self) -> i64 {
        match self.byte() % 8 {
            0 => i64::MAX,
            n => i64::from(n) - 4,
        }
    }
}

fn scheme(b: &mut Bytes) -> ShardBy {
    let n = b.byte();
    if n % 2 == 0 {
        ShardBy::hash(1 + (n as usize / 2) % 8).unwrap()
    } else {
        let splits: std::collections::BTreeSet<&str> =
            (0..n % 4).map(|_| b.pick(&["b", "m", "ma", "n", "t", "z"])).collect();
        ShardBy::split_points(splits).unwrap()
    }
}

fn step(b: &mut Bytes) -> Step {
    let h = b.handle();
    match b.byte() % 10 {
        0 => Step::Put(h, b.collection(), b.key(), b.value()),
        1 => Step::Insert(h, b.collection(), b.key(), b.value()),
        2 => Step::Cas(h, b.collection(), b.key(), b.maybe_value(), b.maybe_value()),
        3 => Step::Delete(h, b.collection(), b.key()),
        4 => Step::Incr(h, b.collection(), b.key(), b.delta()),
        5 => {
            let route = b.plain_key();
            let ops = (0..1 + b.byte() % 4)
                .map(|_| match b.byte() % 5 {
                    0 => BatchOp::Expect(b.collection(), b.key_of(&route), b.maybe_value()),
                    1 => BatchOp::Put(b.collection(), b.key_of(&route), b.value()),
                    2 => BatchOp::Delete(b.collection(), b.key_of(&route)),
                    3 => BatchOp::Incr(b.collection(), b.key_of(&route), b.delta()),
                    _ => {
                        let (c, k, d) = (b.collection(), b.key_of(&route), b.delta() % 4);
                        let lo = -i64::from(b.byte() % 3);
                        BatchOp::IncrWithin(c, k, d, lo, i64::from(b.byte() % 4))
                    }
                })
                .collect();
            Step::Batch(h, ops)
        }
        6 => Step::Get(h, b.collection(), b.key()),
        7 | 8 => Step::Scan(h, b.collection(), b.maybe_key(), b.maybe_key(), b.maybe_key(), (b.byte() % 6) as usize),
        _ => Step::Reopen(h),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let mut sut = Sut::new(&scheme(&mut bytes));
    // Bounded: each step commits durably, so long inputs would only slow the fuzzer down.
    for _ in 0..64 {
        if bytes.0.is_empty() {
            break;
        }
        let s = step(&mut bytes);
        sut.apply(&s);
    }
    sut.check();
});
