//! Crash storms: processes doing group-committed writes are SIGKILLed at random moments, and
//! nothing they were told is durable is ever lost.
//!
//! Each round starts two child processes on one store (`hash:3`); each runs three threads of
//! increments of one counter and inserts of fresh keys, so that writes share group commits
//! within a process and fight for each shard's writer lock across the two. A child prints a
//! line before each write and one after its acknowledgement. The parent kills one child at a
//! random moment, lets the other run on for a random while (it may have been waiting for the
//! writer lock the dead one held, and must now get it), then kills it too. After every round:
//! the store reopens; every acknowledged insert is present with its value; the counter is at
//! least the acknowledged increments and at most those plus the ones in flight; and redb's
//! full integrity check passes on every shard file without having to repair anything.
//!
//! Seeded: the seed is printed, and `CRASH_STORM_SEED=<seed>` replays a failing run.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Reaper, is_child, spawn_child};
use shardkv::{ShardHealth, Store};

const THREADS: usize = 3;
/// Protocol lines from a child start with this, so the test harness's own lines are ignored.
const TAG: &str = "CS ";

/// splitmix64: small, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
#[ignore = "child process entry point, run by the tests in this file"]
fn child_writer() {
    if !is_child() {
        return;
    }
    let dir = std::env::var("STORM_DIR").unwrap();
    let name = std::env::var("STORM_NAME").unwrap();
    let seed: u64 = std::env::var("STORM_SEED").unwrap().parse().unwrap();
    let store = Store::open(&dir).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, name) = (&store, &name);
            s.spawn(move || {
                let mut rng = Rng(seed ^ ((t as u64) << 32));
                let say = |line: String| {
                    use std::io::Write;
                    // One write per line: a kill never leaves half a line that parses.
                    let _ = std::io::stdout().lock().write_all(line.as_bytes());
                };
                for i in 0.. {
                    if rng.below(2) == 0 {
                        say(format!("{TAG}begin incr\n"));
                        let v = store.incr("counters", "hits", 1).unwrap();
                        say(format!("{TAG}acked incr {v}\n"));
                    } else {
                        let key = format!("{name}-t{t}-{i}");
                        say(format!("{TAG}begin insert {key}\n"));
                        assert!(store.insert("items", &key, key.as_bytes()).unwrap());
                        say(format!("{TAG}acked insert {key}\n"));
                    }
                }
            });
        }
    });
}

/// What one child said before it died.
#[derive(Default, Debug)]
struct Said {
    incr_begun: u64,
    incr_acked: u64,
    acked_values: Vec<i64>,
    inserted: Vec<String>,
    /// When the parent read each acknowledgement.
    acked_at: Vec<Instant>,
}

fn listen(child: &mut Child) -> std::thread::JoinHandle<Said> {
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut said = Said::default();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let Some(line) = line.strip_prefix(TAG) else {
                continue;
            };
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["begin", "incr"] => said.incr_begun += 1,
                ["acked", "incr", v] => {
                    said.acked_at.push(Instant::now());
                    said.incr_acked += 1;
                    said.acked_values.push(v.parse().unwrap());
                }
                ["acked", "insert", key] => {
                    said.acked_at.push(Instant::now());
                    said.inserted.push(key.to_owned());
                }
                _ => {}
            }
        }
        said
    })
}

fn kill(child: &mut Child) {
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    child.wait().unwrap();
}

/// Running totals over all rounds.
#[derive(Default)]
struct Ledger {
    incr_acked: u64,
    incr_in_flight: u64,
    inserted: Vec<String>,
    max_value: i64,
    acked_after_other_died: u64,
}

fn round(dir: &Path, seed: u64, r: u64, rng: &mut Rng, ledger: &mut Ledger) {
    let mut children = Reaper(
        (0..2)
            .map(|c| {
                spawn_child(
                    "child_writer",
                    &[
                        ("STORM_DIR", dir.display().to_string()),
                        ("STORM_NAME", format!("r{r}c{c}")),
                        ("STORM_SEED", (seed ^ (r << 8) ^ c).to_string()),
                    ],
                )
            })
            .collect(),
    );
    let mut listeners: Vec<_> = children.0.iter_mut().map(listen).map(Some).collect();
    let first = rng.below(2) as usize;
    std::thread::sleep(Duration::from_millis(40 + rng.below(260)));
    kill(&mut children.0[first]);
    let first_died = Instant::now();
    // The survivor runs on: it may have been waiting for a lock the dead one held.
    std::thread::sleep(Duration::from_millis(rng.below(150)));
    kill(&mut children.0[1 - first]);
    for (c, listener) in listeners.iter_mut().enumerate() {
        let said = listener.take().unwrap().join().unwrap();
        ledger.incr_acked += said.incr_acked;
        ledger.incr_in_flight += said.incr_begun - said.incr_acked;
        ledger.inserted.extend(said.inserted.iter().cloned());
        if let Some(&v) = said.acked_values.iter().max() {
            ledger.max_value = ledger.max_value.max(v);
        }
        if c != first {
            ledger.acked_after_other_died +=
                said.acked_at.iter().filter(|&&t| t > first_died).count() as u64;
        }
    }
    verify(dir, ledger, seed, r);
}

fn verify(dir: &Path, ledger: &Ledger, seed: u64, r: u64) {
    let context = format!("round {r}, CRASH_STORM_SEED={seed}");
    {
        let store = Store::open(dir).unwrap_or_else(|e| panic!("{context}: reopen: {e}"));
        let counter: u64 = store
            .get("counters", "hits")
            .unwrap()
            .map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap());
        assert!(
            counter >= ledger.incr_acked && counter >= ledger.max_value as u64,
            "{context}: counter {counter} lost acknowledged increments ({} acked, max value {})",
            ledger.incr_acked,
            ledger.max_value
        );
        assert!(
            counter <= ledger.incr_acked + ledger.incr_in_flight,
            "{context}: counter {counter} exceeds {} acked + {} in flight",
            ledger.incr_acked,
            ledger.incr_in_flight
        );
        let present: BTreeSet<Vec<u8>> = store
            .scan("items", ..)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                assert_eq!(k, v, "{context}: an item holds another's value");
                k
            })
            .collect();
        for key in &ledger.inserted {
            assert!(
                present.contains(key.as_bytes()),
                "{context}: acknowledged insert {key} is lost"
            );
        }
    }
    // Full integrity check of every shard file: `Repaired` would mean redb found damage.
    let report = Store::repair(dir).unwrap_or_else(|e| panic!("{context}: integrity check: {e}"));
    for shard in &report.shards {
        assert_eq!(shard.health, ShardHealth::Ok, "{context}: {}", shard.file);
    }
}

fn storm(rounds: u64) {
    let seed = std::env::var("CRASH_STORM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash storm: {rounds} rounds, CRASH_STORM_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    drop(
        Store::shard_by("hash:3".parse().unwrap())
            .open(dir.path())
            .unwrap(),
    );
    let mut rng = Rng(seed);
    let mut ledger = Ledger::default();
    let started = Instant::now();
    for r in 0..rounds {
        round(dir.path(), seed, r, &mut rng, &mut ledger);
    }
    eprintln!(
        "crash storm: {rounds} rounds ({} kills) in {:?}: {} increments acked (+{} in flight), \
         {} inserts acked, {} acks by survivors after the other died; 0 lost, integrity ok \
         on every shard after every round",
        rounds * 2,
        started.elapsed(),
        ledger.incr_acked,
        ledger.incr_in_flight,
        ledger.inserted.len(),
        ledger.acked_after_other_died
    );
    // The storm did write, and survivors wrote after the other process died (holding or
    // waiting for a writer lock): a storm without either would prove nothing.
    assert!(ledger.incr_acked > rounds && !ledger.inserted.is_empty());
    assert!(ledger.acked_after_other_died > 0);
}

#[test]
fn fifty_rounds_of_sigkill_lose_no_acknowledged_write() {
    storm(50);
}

#[test]
#[ignore = "long: 1,000 rounds (run with --ignored)"]
fn a_thousand_rounds_of_sigkill_lose_no_acknowledged_write() {
    storm(1000);
}
