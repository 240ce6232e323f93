//! Regression: an opener counted its patience for maintenance (1 s) from its first attempt,
//! so behind a creator that took longer than that it answered `Locked` the moment MANIFEST
//! appeared, although the creator was only about to let go of LOCK.

use std::time::Duration;

use shardkv::{ShardBy, Store, StoreLock};

#[test]
fn an_opener_behind_a_slow_creator_waits_for_it_and_opens() {
    let made = tempfile::tempdir().unwrap();
    let store = Store::shard_by(ShardBy::hash(2).unwrap())
        .open(made.path())
        .unwrap();
    store.put("dogs", "biscuit", "orange").unwrap();
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let creator = {
        let (made, dir) = (made.path().to_owned(), dir.path().to_owned());
        let lock = StoreLock::exclusive(&dir).unwrap();
        std::thread::spawn(move || {
            // A creator that takes 1.5 s, publishes its store, and lets go 300 ms later.
            std::thread::sleep(Duration::from_millis(1500));
            for name in ["shard-000.redb", "shard-001.redb", "MANIFEST"] {
                std::fs::copy(made.join(name), dir.join(name)).unwrap();
            }
            std::thread::sleep(Duration::from_millis(300));
            drop(lock);
        })
    };
    let opened = Store::shard_by(ShardBy::hash(2).unwrap()).open(dir.path());
    creator.join().unwrap();
    let store = opened.expect("the opener waits for the creator");
    assert_eq!(
        store.get("dogs", "biscuit").unwrap().as_deref(),
        Some(&b"orange"[..])
    );
}
