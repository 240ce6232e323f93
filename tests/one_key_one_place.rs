//! Regression: a `WriteBatch` routed by "biscuit" that wrote `dogs_by_color/"orange\0biscuit"`
//! put that key in biscuit's shard, so `get` of it found nothing, `delete` said it was absent,
//! `put` made a second copy and a scan returned the key twice. A key's shard now follows from
//! the key alone (its `{hash tag}`, if it has one).

use shardkv::{Error, Expect, ShardBy, Store, WriteBatch};

#[test]
fn a_key_written_in_a_batch_is_found_by_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(ShardBy::hash(8).unwrap())
        .open(dir.path())
        .unwrap();
    let index = "orange\0{biscuit}";
    // The dog and its index entry share a route but would land apart if routed whole.
    assert_ne!(
        ShardBy::hash(8).unwrap().shard_of(b"biscuit"),
        ShardBy::hash(8).unwrap().shard_of(b"orange\0biscuit")
    );
    let mut batch = WriteBatch::new();
    batch
        .expect("dogs", "biscuit", Expect::Absent)
        .put("dogs", "biscuit", "dog")
        .put("dogs_by_color", index, "entry");
    store.write(batch).unwrap();

    assert_eq!(store.shard_of(index), store.shard_of("biscuit"));
    assert_eq!(
        store.get("dogs_by_color", index).unwrap().as_deref(),
        Some(&b"entry"[..])
    );
    store.put("dogs_by_color", index, "moved").unwrap();
    let all = store.scan("dogs_by_color", ..).unwrap();
    assert_eq!(all, [(index.as_bytes().to_vec(), b"moved".to_vec())]);
    assert!(store.delete("dogs_by_color", index).unwrap());
    assert!(store.scan("dogs_by_color", ..).unwrap().is_empty());
}

#[test]
fn a_batch_across_routes_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(ShardBy::hash(8).unwrap())
        .open(dir.path())
        .unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put("dogs", "biscuit", "dog")
        .put("dogs_by_color", "orange\0biscuit", "entry");
    match store.write(batch) {
        Err(Error::InvalidInput(msg)) => assert!(msg.contains("hash tag"), "{msg}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(store.get("dogs", "biscuit").unwrap(), None);
}

#[test]
fn bounded_increments_in_one_group_succeed_or_fail_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(ShardBy::hash(2).unwrap())
        .open(dir.path())
        .unwrap();
    // 40 threads book 1 seat each of 10: exactly 10 succeed, the rest see the show full.
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|_| {
                s.spawn(|| {
                    let mut b = WriteBatch::new();
                    b.incr_within("seats", "{show}", 1, 0..=10);
                    store.write(b)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sold: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|w| w.values[0]))
        .collect();
    sold.sort();
    assert_eq!(sold, (1..=10).collect::<Vec<_>>());
    for o in &outcomes {
        match o {
            Ok(_) => {}
            Err(Error::OutOfBounds {
                current,
                delta,
                max,
                ..
            }) => assert_eq!((*current, *delta, *max), (10, 1, 10)),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(
        store.get("seats", "{show}").unwrap().as_deref(),
        Some(&b"10"[..])
    );
}
