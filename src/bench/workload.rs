//! What the benchmark threads do, and how the end state is checked against what they were
//! told succeeded.
//!
//! Every workload writes to one collection, [`COLLECTION`], of a fresh store, so the end state
//! holds nothing but the benchmark's own writes and can be checked exactly.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use shardkv::{CommitMode, ShardStats};
use shardkv::{Error, Result};
use shardkv::{Scan, Store};

/// The collection every workload writes.
pub const COLLECTION: &str = "bench";
/// The key of the `hot` counter.
pub const HOT_KEY: &str = "hot";
/// How many counters `striped` spreads its increments over.
pub const STRIPES: usize = 64;
/// The size of each `inserts` value, in bytes.
pub const VALUE_BYTES: usize = 100;

/// A write pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Workload {
    /// Every operation increments one counter: the worst case, all writers on one key.
    Hot,
    /// Every operation increments one of 64 counters chosen at random, so writes spread over
    /// shards.
    Striped,
    /// Every operation inserts a new unique key (if absent) with a ~100-byte value.
    Inserts,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Hot => "hot",
            Workload::Striped => "striped",
            Workload::Inserts => "inserts",
        })
    }
}

/// How writes become transactions; mirrors [`CommitMode`], named for the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Mode {
    /// One transaction (one durable commit) per write: the baseline.
    PerWrite,
    /// Concurrent writes of one process share a transaction.
    Group,
}

impl Mode {
    /// The store's commit mode.
    pub fn commit_mode(self) -> CommitMode {
        match self {
            Mode::PerWrite => CommitMode::PerWrite,
            Mode::Group => CommitMode::Group,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::PerWrite => "per-write",
            Mode::Group => "group",
        })
    }
}

/// xorshift64* seeded through splitmix64: small, fast, and the same sequence on every run.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator of one thread of one process: distinct streams from one seed.
    pub fn for_thread(seed: u64, proc_id: usize, thread: usize) -> Rng {
        let mut s = seed ^ ((proc_id as u64) << 32) ^ thread as u64;
        // splitmix64 never yields 0 for two consecutive outputs; xorshift needs a nonzero state.
        let mut next = || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let state = next();
        Rng(if state == 0 { next() } else { state })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is negligible for small `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The key of stripe `i`.
pub fn stripe_key(i: usize) -> String {
    format!("stripe-{i:02}")
}

/// The `i`-th key inserted by `thread` of process `proc_id`.
pub fn insert_key(proc_id: usize, thread: usize, i: u64) -> String {
    format!("w{proc_id}-t{thread}-{i:08}")
}

/// Inverse of [`insert_key`].
pub fn parse_insert_key(key: &[u8]) -> Option<(usize, usize, u64)> {
    let key = std::str::from_utf8(key).ok()?;
    let (proc_id, rest) = key.strip_prefix('w')?.split_once("-t")?;
    let (thread, i) = rest.split_once('-')?;
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(proc_id) && all_digits(thread) && i.len() == 8 && all_digits(i)) {
        return None;
    }
    Some((proc_id.parse().ok()?, thread.parse().ok()?, i.parse().ok()?))
}

/// The value inserted under `key`: the key repeated to [`VALUE_BYTES`], so it can be checked
/// without remembering it.
pub fn insert_value(key: &str) -> Vec<u8> {
    key.bytes().cycle().take(VALUE_BYTES).collect()
}

/// What one thread had acknowledged when its time ran out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Operations acknowledged (the call returned `Ok`).
    pub ops: u64,
    /// For `striped`: acknowledged increments per stripe; empty otherwise.
    pub stripes: Vec<u64>,
}

/// Runs one thread's operations until `deadline` or until `stop` is set. The first error
/// sets `stop`, so a failing process gives up at once instead of measuring a broken run.
pub fn run_thread(
    store: &Store,
    workload: Workload,
    proc_id: usize,
    thread: usize,
    seed: u64,
    deadline: Instant,
    stop: &AtomicBool,
) -> Result<Tally> {
    let mut rng = Rng::for_thread(seed, proc_id, thread);
    let mut tally = Tally {
        ops: 0,
        stripes: match workload {
            Workload::Striped => vec![0; STRIPES],
            _ => Vec::new(),
        },
    };
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let done = match workload {
            Workload::Hot => store.incr(COLLECTION, HOT_KEY, 1).map(drop),
            Workload::Striped => {
                let s = rng.below(STRIPES);
                let r = store.incr(COLLECTION, stripe_key(s), 1).map(drop);
                if r.is_ok() {
                    tally.stripes[s] += 1;
                }
                r
            }
            Workload::Inserts => {
                let key = insert_key(proc_id, thread, tally.ops);
                match store.insert(COLLECTION, &key, insert_value(&key)) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(Error::Conflict(format!(
                        "{key} already existed, but no one else inserts it"
                    ))),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = done {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        tally.ops += 1;
    }
    Ok(tally)
}

/// One worker process's result: its threads' tallies and its store counters, summed over
/// shards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The worker's number, `0..procs`.
    pub proc_id: usize,
    /// Per thread, in thread order.
    pub threads: Vec<Tally>,
    /// The store's counters, summed over shards.
    pub store: ShardStats,
}

impl WorkerReport {
    /// A report from the threads' tallies and the store's per-shard counters.
    pub fn new(proc_id: usize, threads: Vec<Tally>, shards: &[ShardStats]) -> WorkerReport {
        let mut store = ShardStats::default();
        for s in shards {
            store += s;
        }
        WorkerReport {
            proc_id,
            threads,
            store,
        }
    }

    /// Operations this process acknowledged.
    pub fn ops(&self) -> u64 {
        self.threads.iter().map(|t| t.ops).sum()
    }
}

fn failed(why: String) -> Error {
    Error::Corrupted(format!("verification failed: {why}"))
}

/// Checks the store's end state against what the workers acknowledged: the hot counter equals
/// the acknowledged increments, each stripe equals its acknowledged increments, and the
/// inserted keys are exactly the acknowledged ones, each with its value. Also checks that
/// each process's own counters agree with its threads.
pub fn verify(store: &Store, workload: Workload, reports: &[WorkerReport]) -> Result<()> {
    for r in reports {
        let st = &r.store;
        if st.writes != r.ops() || st.rejected != 0 || st.failed_commits != 0 {
            return Err(failed(format!(
                "process {} acknowledged {} operations, but its store counted {} writes, \
                 {} rejected, {} failed commits",
                r.proc_id,
                r.ops(),
                st.writes,
                st.rejected,
                st.failed_commits
            )));
        }
    }
    let total: u64 = reports.iter().map(WorkerReport::ops).sum();
    match workload {
        Workload::Hot => {
            let value = counter(store, HOT_KEY)?;
            if value != total as i64 {
                return Err(failed(format!(
                    "the hot counter is {value}, but {total} increments were acknowledged"
                )));
            }
        }
        Workload::Striped => {
            let mut sum = 0;
            for s in 0..STRIPES {
                let acked: u64 = reports
                    .iter()
                    .flat_map(|r| &r.threads)
                    .map(|t| t.stripes.get(s).copied().unwrap_or(0))
                    .sum();
                let value = counter(store, &stripe_key(s))?;
                if value != acked as i64 {
                    return Err(failed(format!(
                        "{} is {value}, but {acked} increments of it were acknowledged",
                        stripe_key(s)
                    )));
                }
                sum += value;
            }
            if sum != total as i64 {
                return Err(failed(format!(
                    "the stripes sum to {sum}, but {total} operations were acknowledged"
                )));
            }
        }
        Workload::Inserts => verify_inserts(store, reports, total)?,
    }
    Ok(())
}

/// Scans every key once: each must be one some thread was told it inserted, with its value.
/// Scanned keys are distinct and the expected ones are too, so equal counts then mean every
/// acknowledged key is present.
fn verify_inserts(store: &Store, reports: &[WorkerReport], total: u64) -> Result<()> {
    let acked = |p: usize, t: usize| -> Option<u64> {
        let report = reports.iter().find(|r| r.proc_id == p)?;
        report.threads.get(t).map(|t| t.ops)
    };
    let entries = store.scan(COLLECTION, Scan::all())?;
    for (key, value) in &entries {
        let shown = String::from_utf8_lossy(key);
        let Some((p, t, i)) = parse_insert_key(key) else {
            return Err(failed(format!("unexpected key {shown:?}")));
        };
        if acked(p, t).is_none_or(|n| i >= n) {
            return Err(failed(format!(
                "{shown} is present, but its insert was never acknowledged"
            )));
        }
        if *value != insert_value(&shown) {
            return Err(failed(format!("{shown} holds the wrong value")));
        }
    }
    if entries.len() as u64 != total {
        return Err(failed(format!(
            "{} keys are present, but {total} inserts were acknowledged",
            entries.len()
        )));
    }
    Ok(())
}

/// A counter's value; absent counts as 0, as `incr` treats it.
fn counter(store: &Store, key: &str) -> Result<i64> {
    store.counter(COLLECTION, key).map_err(|e| match e {
        Error::Corrupted(why) => failed(why),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_streams_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::for_thread(42, 1, 2);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::for_thread(42, 1, 2);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let mut other = Rng::for_thread(42, 2, 1);
        assert_eq!(a, b);
        assert_ne!(a[0], other.next_u64());
    }

    #[test]
    fn stripes_are_all_hit_and_in_range() {
        let mut r = Rng::for_thread(7, 0, 0);
        let mut hit = [false; STRIPES];
        for _ in 0..10_000 {
            hit[r.below(STRIPES)] = true;
        }
        assert!(hit.iter().all(|h| *h));
    }

    #[test]
    fn insert_keys_round_trip_and_reject_strangers() {
        let key = insert_key(3, 12, 4567);
        assert_eq!(key, "w3-t12-00004567");
        assert_eq!(parse_insert_key(key.as_bytes()), Some((3, 12, 4567)));
        for bad in [
            "hot",
            "w3-t12-4567",
            "w-t1-00000001",
            "wx-t1-00000001",
            "w1-t1-0000000a",
        ] {
            assert_eq!(parse_insert_key(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(insert_value(&key).len(), VALUE_BYTES);
    }

    fn report(proc_id: usize, threads: Vec<Tally>) -> WorkerReport {
        let writes = threads.iter().map(|t| t.ops).sum();
        WorkerReport {
            proc_id,
            threads,
            store: ShardStats {
                commits: writes,
                writes,
                ..ShardStats::default()
            },
        }
    }

    fn tally(ops: u64) -> Tally {
        Tally {
            ops,
            stripes: Vec::new(),
        }
    }

    #[test]
    fn verify_catches_a_lost_or_phantom_increment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::shard_by("hash:2".parse().unwrap())
            .open(dir.path())
            .unwrap();
        for _ in 0..5 {
            store.incr(COLLECTION, HOT_KEY, 1).unwrap();
        }
        verify(
            &store,
            Workload::Hot,
            &[report(0, vec![tally(2), tally(3)])],
        )
        .unwrap();
        let lost = verify(&store, Workload::Hot, &[report(0, vec![tally(6)])]);
        assert!(matches!(lost, Err(Error::Corrupted(_))), "{lost:?}");
        let phantom = verify(&store, Workload::Hot, &[report(0, vec![tally(4)])]);
        assert!(phantom.is_err());
        // The process's own counters must agree with its threads.
        let mut miscounted = report(0, vec![tally(5)]);
        miscounted.store.writes = 4;
        assert!(verify(&store, Workload::Hot, &[miscounted]).is_err());
    }

    #[test]
    fn verify_checks_each_stripe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::shard_by("hash:4".parse().unwrap())
            .open(dir.path())
            .unwrap();
        store.incr(COLLECTION, stripe_key(1), 2).unwrap();
        store.incr(COLLECTION, stripe_key(9), 1).unwrap();
        let mut stripes = vec![0; STRIPES];
        stripes[1] = 2;
        stripes[9] = 1;
        let good = Tally { ops: 3, stripes };
        let mut r = report(0, vec![good.clone()]);
        verify(&store, Workload::Striped, std::slice::from_ref(&r)).unwrap();
        // Same total, wrong stripe: still caught.
        r.threads[0].stripes.swap(9, 10);
        assert!(verify(&store, Workload::Striped, &[r]).is_err());
    }

    #[test]
    fn verify_checks_every_inserted_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::shard_by("hash:3".parse().unwrap())
            .open(dir.path())
            .unwrap();
        for p in 0..2 {
            for i in 0..4 {
                let key = insert_key(p, 0, i);
                assert!(store.insert(COLLECTION, &key, insert_value(&key)).unwrap());
            }
        }
        let both = [report(0, vec![tally(4)]), report(1, vec![tally(4)])];
        verify(&store, Workload::Inserts, &both).unwrap();
        // One more acknowledged than present: a lost insert.
        let lost = [report(0, vec![tally(4)]), report(1, vec![tally(5)])];
        assert!(verify(&store, Workload::Inserts, &lost).is_err());
        // Present but never acknowledged.
        let phantom = [report(0, vec![tally(4)]), report(1, vec![tally(3)])];
        assert!(verify(&store, Workload::Inserts, &phantom).is_err());
        // A wrong value.
        store
            .put(COLLECTION, insert_key(0, 0, 2), b"tampered")
            .unwrap();
        assert!(verify(&store, Workload::Inserts, &both).is_err());
    }
}
