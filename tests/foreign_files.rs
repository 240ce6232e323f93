//! Regression for issue 9 (item 3): files that are not what MANIFEST says. A MANIFEST
//! rewritten to `alpha:a-m,n-z` over the 8 files of a `hash:8` store was served without a
//! word (the counter read 0, acknowledged counter values were handed out again, a second dog
//! of one name was created) and `check` said `ok`. Now each broken layout is a typed error
//! naming the file, at `Store::open`, at `shardkv check` and at `shardkv serve`:
//! an empty, truncated, garbage or newer-format MANIFEST; a missing MANIFEST beside shard
//! files; a missing, truncated or foreign shard file; a MANIFEST that does not match its
//! files, whose check also lists the files it does not name.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster;
use shardkv::{Error, Store};

/// A `hash:8` store with a counter and some dogs, closed.
fn make(dir: &Path) {
    let store = Store::shard_by("hash:8".parse().unwrap())
        .open(dir)
        .unwrap();
    for _ in 0..20 {
        store.incr("counters", "requests", 1).unwrap();
    }
    for i in 0..50 {
        store.put("dogs", format!("dog{i}"), "{}").unwrap();
    }
}

/// Every entry point refuses the store with an error that names `file`.
fn assert_refused(dir: &Path, file: &str, why: &str) {
    match Store::open(dir) {
        Err(Error::Corrupted(m)) => assert!(m.contains(file), "{why}: open: {m}"),
        other => panic!("{why}: Store::open gave {other:?}"),
    }
    let out = cluster::shardkv(&["check", "--data", dir.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{why}: check: {text}");
    assert!(text.contains(file), "{why}: check names no {file}: {text}");
    assert!(!text.contains("panicked"), "{why}: {text}");
    let (status, log) =
        cluster::start_failing(dir, &["--workers", "1"], &[], Duration::from_secs(30));
    assert!(!status.success(), "{why}: serve started");
    assert!(log.contains(file), "{why}: serve names no {file}: {log}");
    assert!(!log.contains("panicked"), "{why}: {log}");
}

fn with_store(why: &str, damage: impl FnOnce(&Path), file: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    make(&dir);
    damage(&dir);
    assert_refused(&dir, file, why);
}

#[test]
fn a_broken_manifest_is_named() {
    let manifest = |dir: &Path| dir.join("MANIFEST");
    with_store(
        "empty",
        |d| std::fs::write(manifest(d), "").unwrap(),
        "MANIFEST",
    );
    with_store(
        "truncated",
        |d| {
            let text = std::fs::read(manifest(d)).unwrap();
            std::fs::write(manifest(d), &text[..text.len() / 2]).unwrap();
        },
        "MANIFEST",
    );
    with_store(
        "garbage",
        |d| std::fs::write(manifest(d), [0xde, 0xad, 0xbe, 0xef, 0, 1, 2]).unwrap(),
        "MANIFEST",
    );
    with_store(
        "newer format",
        |d| {
            let text = std::fs::read_to_string(manifest(d)).unwrap();
            std::fs::write(manifest(d), text.replace("\"format\": 1", "\"format\": 2")).unwrap();
            assert!(matches!(Store::open(d), Err(Error::Corrupted(m)) if m.contains("newer")));
        },
        "MANIFEST",
    );
    // The shard files name themselves: their routing is unknown without MANIFEST.
    with_store(
        "missing",
        |d| std::fs::remove_file(manifest(d)).unwrap(),
        "shard-00",
    );
}

#[test]
fn a_missing_truncated_or_foreign_shard_file_is_named() {
    with_store(
        "missing shard",
        |d| std::fs::remove_file(d.join("shard-003.redb")).unwrap(),
        "shard-003.redb",
    );
    with_store(
        "truncated shard",
        |d| {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(d.join("shard-006.redb"))
                .unwrap();
            f.set_len(1000).unwrap();
        },
        "shard-006.redb",
    );
    // Shard 2 of another store with the same scheme: same name, same range, other store id.
    with_store(
        "foreign shard",
        |d| {
            let other = d.with_file_name("other");
            make(&other);
            std::fs::copy(other.join("shard-002.redb"), d.join("shard-002.redb")).unwrap();
        },
        "shard-002.redb",
    );
}

#[test]
fn a_manifest_that_does_not_match_its_files_is_refused_and_unnamed_files_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    make(&dir);
    // The edit: alpha:a-m,n-z over the 8 hash files, keeping the store id.
    let text = std::fs::read_to_string(dir.join("MANIFEST")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let edited = serde_json::json!({
        "format": 1,
        "store_id": json["store_id"],
        "scheme": "alpha:a-m,n-z",
        "routing": { "kind": "alpha", "splits": ["n"] },
        "shards": ["shard-000.redb", "shard-001.redb"],
    });
    std::fs::write(dir.join("MANIFEST"), edited.to_string()).unwrap();
    assert_refused(&dir, "shard-000.redb", "alpha over hash files");
    let out = cluster::shardkv(&["check", "--data", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let unnamed = stdout
        .lines()
        .find(|l| l.starts_with("shard files MANIFEST does not name"))
        .unwrap_or_else(|| panic!("no list of unnamed files: {stdout}"));
    for i in 2..8 {
        assert!(unnamed.contains(&format!("shard-{i:03}.redb")), "{unnamed}");
    }
    // Restoring the MANIFEST makes the store whole again, with its data.
    std::fs::write(dir.join("MANIFEST"), text).unwrap();
    let store = Store::open(&dir).unwrap();
    assert_eq!(
        store.get("counters", "requests").unwrap().as_deref(),
        Some(&b"20"[..])
    );
    drop(store);
    let out = cluster::shardkv(&["check", "--data", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_identity_table_is_no_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by("hash:2".parse().unwrap())
        .open(dir.path())
        .unwrap();
    assert!(matches!(
        store.put("shardkv:identity", "k", "v"),
        Err(Error::InvalidInput(_))
    ));
    store.put("c", "k", "v").unwrap();
    let keys: Vec<_> = (0..2)
        .flat_map(|i| store.keys_in_shard(i).unwrap())
        .collect();
    assert_eq!(keys, [("c".to_owned(), b"k".to_vec())]);
}
