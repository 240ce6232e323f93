//! Many processes, one store: a counter incremented from 4 processes is exact, every value
//! handed out is unique, and every key each process inserted is present with its value. Run
//! on a single-shard store (all processes fight over one file) and on an 8-shard store.

mod common;

use std::collections::BTreeSet;
use std::io::Read;

use common::{Reaper, is_child, lines_with_prefix, spawn_child};
use shardkv::Store;

const PROCESSES: usize = 4;
const THREADS: usize = 2;
const PER_THREAD: usize = 250;

#[test]
#[ignore = "child process entry point, run by the tests in this file"]
fn child_hammer() {
    if !is_child() {
        return;
    }
    let dir = std::env::var("HAMMER_DIR").unwrap();
    let id: usize = std::env::var("HAMMER_ID").unwrap().parse().unwrap();
    let store = Store::open(&dir).unwrap();
    let values: Vec<i64> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = &store;
                s.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..PER_THREAD {
                        got.push(store.incr("counters", "hits", 1).unwrap());
                        let key = format!("p{id}-t{t}-{i:04}");
                        assert!(store.insert("items", &key, key.as_bytes()).unwrap());
                    }
                    got
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    for v in values {
        println!("value {v}");
    }
}

fn hammer(scheme: &str) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(scheme.parse().unwrap())
        .open(dir.path())
        .unwrap();
    let mut children = Reaper(
        (0..PROCESSES)
            .map(|id| {
                spawn_child(
                    "child_hammer",
                    &[
                        ("HAMMER_DIR", dir.path().display().to_string()),
                        ("HAMMER_ID", id.to_string()),
                    ],
                )
            })
            .collect(),
    );
    let mut values = Vec::new();
    for child in &mut children.0 {
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        assert!(child.wait().unwrap().success(), "a child process failed");
        values.extend(
            lines_with_prefix(&out, "value ")
                .into_iter()
                .map(|v| v.parse::<i64>().unwrap()),
        );
    }
    let total = PROCESSES * THREADS * PER_THREAD;
    // Exact: no increment lost, none doubled, and each caller saw a distinct value.
    assert_eq!(
        store.get("counters", "hits").unwrap(),
        Some(total.to_string().into_bytes())
    );
    let distinct: BTreeSet<i64> = values.iter().copied().collect();
    assert_eq!(values.len(), total);
    assert_eq!(distinct, (1..=total as i64).collect());
    // Every acknowledged insert is there, with its value.
    let items = store.scan("items", ..).unwrap();
    assert_eq!(items.len(), total);
    for id in 0..PROCESSES {
        for t in 0..THREADS {
            for i in 0..PER_THREAD {
                let key = format!("p{id}-t{t}-{i:04}");
                assert_eq!(
                    store.get("items", &key).unwrap(),
                    Some(key.clone().into_bytes())
                );
            }
        }
    }
}

#[test]
fn four_processes_one_shard_lose_nothing() {
    hammer("hash:1");
}

#[test]
fn four_processes_eight_shards_lose_nothing() {
    hammer("hash:8");
}
