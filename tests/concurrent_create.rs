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

/// Starts a creator of a `hash:1024` store and freezes it (SIGSTOP) once it has made some
/// shard files. Returns it frozen, or `None` if it had already written MANIFEST (it finished
/// before the stop landed).
fn freeze_a_creator_half_way(store_dir: &std::path::Path) -> Option<Reaper> {
    let creator = Reaper(vec![spawn_child(
        "child_create",
        &[
            ("CREATE_DIR", store_dir.display().to_string()),
            ("CREATE_SCHEME", "hash:1024".to_string()),
            ("CREATE_ID", "victim".to_string()),
        ],
    )]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let made = std::fs::read_dir(store_dir).map(|d| d.count()).unwrap_or(0);
        if made > 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the creator made no files"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe {
        libc::kill(creator.0[0].id() as i32, libc::SIGSTOP);
    }
    // Frozen: what is on disk now is what the kill leaves.
    (!store_dir.join("MANIFEST").exists()).then_some(creator)
}

#[test]
fn a_creator_killed_half_way_leaves_a_directory_the_next_one_can_use() {
    // Each attempt is a fresh directory; an attempt whose creator finished before it was
    // frozen proves nothing, so the test insists on one that did not.
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let Some(mut creator) = freeze_a_creator_half_way(&store_dir) else {
            continue;
        };
        creator.0[0].kill().unwrap();
        creator.0[0].wait().unwrap();
        assert!(!store_dir.join("MANIFEST").exists(), "attempt {attempt}");
        let store = Store::shard_by("hash:1024".parse().unwrap())
            .open(&store_dir)
            .unwrap();
        store.put("who", "next", "ok").unwrap();
        assert_eq!(store.shard_count(), 1024);
        let leftovers = files_ending_with(&store_dir, ".creating");
        assert_eq!(leftovers, 0);
        return;
    }
    panic!("in 5 attempts, the creator always finished before it could be stopped half way");
}
