//! Several processes creating one new store at once end with one MANIFEST that all of them
//! use; processes that asked for another scheme are refused, never silently re-routed; and a
//! creator killed half way leaves nothing that stops the next one.

mod common;

use std::io::Read;

use common::{Reaper, is_child, lines_with_prefix, spawn_child};
use shardkv::{Error, Store};

#[test]
#[ignore = "child process entry point, run by the tests in this file"]
fn child_create() {
    if !is_child() {
        return;
    }
    let dir = std::env::var("CREATE_DIR").unwrap();
    let scheme = std::env::var("CREATE_SCHEME").unwrap();
    let id = std::env::var("CREATE_ID").unwrap();
    match Store::shard_by(scheme.parse().unwrap()).open(&dir) {
        Ok(store) => {
            store.put("who", &id, &scheme).unwrap();
            println!("opened {}", store.scheme());
        }
        Err(Error::SchemeMismatch { stored, .. }) => println!("mismatch {stored}"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn files_ending_with(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(suffix)
        })
        .count()
}

#[test]
fn racing_creators_agree_on_one_manifest() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let schemes = ["hash:4", "alpha:a-m,n-z"];
        let mut children = Reaper(
            (0..6)
                .map(|id| {
                    spawn_child(
                        "child_create",
                        &[
                            ("CREATE_DIR", store_dir.display().to_string()),
                            ("CREATE_SCHEME", schemes[id % 2].to_string()),
                            ("CREATE_ID", format!("p{id}")),
                        ],
                    )
                })
                .collect(),
        );
        let mut outcomes = Vec::new();
        for child in &mut children.0 {
            let mut out = Vec::new();
            child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
            assert!(
                child.wait().unwrap().success(),
                "round {round}: a creator failed"
            );
            outcomes.extend(
                lines_with_prefix(&out, "opened ")
                    .into_iter()
                    .map(|s| (true, s)),
            );
            outcomes.extend(
                lines_with_prefix(&out, "mismatch ")
                    .into_iter()
                    .map(|s| (false, s)),
            );
        }
        assert_eq!(outcomes.len(), 6);
        let store = Store::open(&store_dir).unwrap();
        let winner = store.scheme().to_string();
        // Everyone saw the one scheme on disk; exactly the processes that asked for it opened.
        assert!(
            outcomes.iter().all(|(_, s)| *s == winner),
            "round {round}: {outcomes:?}"
        );
        assert_eq!(outcomes.iter().filter(|(opened, _)| *opened).count(), 3);
        let writers = store.scan("who", ..).unwrap();
        assert_eq!(writers.len(), 3);
        assert!(writers.iter().all(|(_, v)| *v == winner.as_bytes()));
        let shard_files = files_ending_with(&store_dir, ".redb");
        assert_eq!(shard_files, store.shard_count());
    }
}

#[test]
fn a_creator_killed_half_way_leaves_a_directory_the_next_one_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let mut creator = Reaper(vec![spawn_child(
        "child_create",
        &[
            ("CREATE_DIR", store_dir.display().to_string()),
            ("CREATE_SCHEME", "hash:1024".to_string()),
            ("CREATE_ID", "victim".to_string()),
        ],
    )]);
    // Kill it once some shard files exist, before it could finish 1024 of them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let made = std::fs::read_dir(&store_dir)
            .map(|d| d.count())
            .unwrap_or(0);
        if made > 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the creator made no files"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    creator.0[0].kill().unwrap();
    creator.0[0].wait().unwrap();
    if store_dir.join("MANIFEST").exists() {
        return; // It finished before the kill landed: nothing to prove this time.
    }
    let store = Store::shard_by("hash:1024".parse().unwrap())
        .open(&store_dir)
        .unwrap();
    store.put("who", "next", "ok").unwrap();
    assert_eq!(store.shard_count(), 1024);
    let leftovers = files_ending_with(&store_dir, ".creating");
    assert_eq!(leftovers, 0);
}
