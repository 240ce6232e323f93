//! Several processes creating one new store at once end with one MANIFEST that all of them
//! use; processes that asked for another scheme are refused, never silently re-routed.

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
        let shard_files = std::fs::read_dir(&store_dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".redb")
            })
            .count();
        assert_eq!(shard_files, store.shard_count());
    }
}
