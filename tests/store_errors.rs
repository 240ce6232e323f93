//! Errors are typed, say what is wrong, and change nothing: scheme mismatch, bad specs,
//! limits, stores that are missing or half there, and maintenance while a store is in use
//! (from this process and from another one).

mod common;

use std::io::{BufRead, BufReader, Write};

use common::{Reaper, is_child, spawn_child};
use shardkv::{Error, ShardBy, Store};

fn hash(n: usize) -> ShardBy {
    ShardBy::hash(n).unwrap()
}

#[test]
fn reopening_with_another_scheme_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(hash(4)).open(dir.path()).unwrap();
    store.put("k", "key", "v").unwrap();
    drop(store);
    for other in ["hash:8", "alpha:a-m,n-z"] {
        match Store::shard_by(other.parse().unwrap()).open(dir.path()) {
            Err(Error::SchemeMismatch {
                stored, requested, ..
            }) => {
                assert_eq!(stored, hash(4));
                assert_eq!(requested.to_string(), other);
            }
            other => panic!("expected a scheme mismatch, got {other:?}"),
        }
    }
    // The same scheme, or none, opens it with its data.
    assert_eq!(
        Store::shard_by(hash(4))
            .open(dir.path())
            .unwrap()
            .get("k", "key")
            .unwrap(),
        Some(b"v".to_vec())
    );
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.scheme(), &hash(4));
    assert_eq!(store.get("k", "key").unwrap(), Some(b"v".to_vec()));
}

#[test]
fn bad_specs_are_invalid_input() {
    for spec in [
        "alpha:a-l,n-z",
        "hash:0",
        "hash:2000",
        "alpha:",
        "",
        "hash",
        "alpha:z,a",
    ] {
        assert!(
            matches!(spec.parse::<ShardBy>(), Err(Error::InvalidInput(_))),
            "{spec:?}"
        );
    }
    assert!(matches!(
        ShardBy::alphabetical(["a-m", "o-z"]),
        Err(Error::InvalidInput(_))
    ));
}

#[test]
fn limits_are_typed_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(hash(2))
        .max_value_size(100)
        .open(dir.path())
        .unwrap();
    let long_key = "k".repeat(1025);
    assert!(matches!(
        store.put("c", &long_key, "v"),
        Err(Error::TooLarge {
            what: "key",
            size: 1025,
            limit: 1024
        })
    ));
    assert!(matches!(
        store.put("c", "", "v"),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        store.put("c", "k", vec![0u8; 101]),
        Err(Error::TooLarge {
            what: "value",
            size: 101,
            limit: 100
        })
    ));
    assert!(matches!(
        store.put("bad name", "k", "v"),
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(store.get("", "k"), Err(Error::InvalidInput(_))));
    store.put("c", "k".repeat(1024), vec![7u8; 100]).unwrap();
    assert_eq!(
        store.scan("c", ..).unwrap().len(),
        1,
        "only the valid write landed"
    );
    assert_eq!(store.stats().iter().map(|s| s.commits).sum::<u64>(), 1);

    // The default value limit is 1 MiB.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(hash(1)).open(dir.path()).unwrap();
    store.put("c", "big", vec![1u8; 1 << 20]).unwrap();
    assert!(matches!(
        store.put("c", "bigger", vec![1u8; (1 << 20) + 1]),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn missing_or_partial_stores_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // No MANIFEST and no scheme: nothing to open.
    assert!(matches!(Store::open(dir.path()), Err(Error::NotFound(_))));
    assert!(matches!(
        Store::open(dir.path().join("absent")),
        Err(Error::NotFound(_))
    ));
    // A file where the directory should be.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(
        Store::shard_by(hash(1)).open(&file),
        Err(Error::InvalidInput(_))
    ));
    // Shard files with data but without a MANIFEST: their routing is unknown.
    let orphan = dir.path().join("orphan");
    Store::shard_by(hash(2))
        .open(&orphan)
        .unwrap()
        .put("c", "k", "v")
        .unwrap();
    std::fs::remove_file(orphan.join("MANIFEST")).unwrap();
    match Store::shard_by(hash(2)).open(&orphan) {
        Err(Error::Corrupted(msg)) => assert!(msg.contains("no MANIFEST"), "{msg}"),
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert!(
        orphan.join("shard-000.redb").exists() && orphan.join("shard-001.redb").exists(),
        "data was deleted"
    );
    // Empty shard files without a MANIFEST are what an interrupted creation leaves: replaced.
    let interrupted = dir.path().join("interrupted");
    Store::shard_by(hash(4)).open(&interrupted).unwrap();
    std::fs::remove_file(interrupted.join("MANIFEST")).unwrap();
    std::fs::write(interrupted.join("shard-003.redb"), b"").unwrap();
    std::fs::write(interrupted.join("shard-004.redb.creating"), vec![0u8; 4096]).unwrap();
    let store = Store::shard_by(hash(2)).open(&interrupted).unwrap();
    assert_eq!(store.shard_count(), 2);
    assert!(
        !interrupted.join("shard-002.redb").exists(),
        "a leftover of the interrupted creation remains"
    );
    assert!(!interrupted.join("shard-004.redb.creating").exists());
    // A shard file named in MANIFEST that is gone.
    let missing = dir.path().join("missing");
    Store::shard_by(hash(2)).open(&missing).unwrap();
    std::fs::remove_file(missing.join("shard-001.redb")).unwrap();
    assert!(matches!(Store::open(&missing), Err(Error::Corrupted(_))));
    // A MANIFEST that is not ours.
    let garbled = dir.path().join("garbled");
    std::fs::create_dir(&garbled).unwrap();
    std::fs::write(garbled.join("MANIFEST"), "{not json").unwrap();
    assert!(matches!(Store::open(&garbled), Err(Error::Corrupted(_))));
}

#[test]
fn maintenance_is_locked_while_the_store_is_open_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(hash(2)).open(dir.path()).unwrap();
    store.put("c", "k", "v").unwrap();
    assert!(matches!(Store::repair(dir.path()), Err(Error::Locked(_))));
    assert!(matches!(Store::destroy(dir.path()), Err(Error::Locked(_))));
    // A live read-only check is allowed.
    let report = Store::check(dir.path()).unwrap();
    assert!(report.is_healthy());
    assert_eq!(
        report
            .shards
            .iter()
            .flat_map(|s| &s.collections)
            .map(|(_, n)| n)
            .sum::<u64>(),
        1
    );
    drop(store);
    let report = Store::repair(dir.path()).unwrap();
    assert!(report.is_healthy());
    Store::destroy(dir.path()).unwrap();
    assert!(matches!(Store::open(dir.path()), Err(Error::NotFound(_))));
}

#[test]
#[ignore = "child process entry point, run by the tests in this file"]
fn child_hold_open() {
    if !is_child() {
        return;
    }
    let store = Store::open(std::env::var("HOLD_DIR").unwrap()).unwrap();
    println!("ready");
    // Hold the store until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(store);
}

#[test]
fn maintenance_is_locked_while_another_process_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    Store::shard_by(hash(2)).open(dir.path()).unwrap();
    let mut child = Reaper(vec![spawn_child(
        "child_hold_open",
        &[("HOLD_DIR", dir.path().display().to_string())],
    )]);
    let mut out = BufReader::new(child.0[0].stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before it was ready"
        );
    }
    match Store::repair(dir.path()) {
        Err(Error::Locked(msg)) => assert!(msg.contains("in use"), "{msg}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(matches!(Store::destroy(dir.path()), Err(Error::Locked(_))));
    // Let the child go; then maintenance proceeds.
    let mut stdin = child.0[0].stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    assert!(child.0[0].wait().unwrap().success());
    Store::repair(dir.path()).unwrap();
}
