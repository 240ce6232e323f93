//! Group commit: concurrent writers of one process share transactions; each is durable and
//! answered on its own; a write whose precondition fails changes nothing and does not fail
//! the others committed with it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redb::{ConcurrencyMode, Database};
use shardkv::{CommitMode, Expect, ShardStats, Store, WriteBatch};

fn stats(store: &Store) -> ShardStats {
    store.stats()[0].clone()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn concurrent_writers_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by("hash:1".parse().unwrap())
        .open(dir.path())
        .unwrap();
    const THREADS: usize = 16;
    const EACH: usize = 40;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = &store;
            s.spawn(move || {
                for i in 0..EACH {
                    store
                        .put("items", format!("{t}-{i}"), format!("v{t}-{i}"))
                        .unwrap();
                    store.incr("counters", "n", 1).unwrap();
                }
            });
        }
    });
    let st = stats(&store);
    let writes = (THREADS * EACH * 2) as u64;
    assert_eq!(st.writes, writes);
    assert!(
        st.commits < writes,
        "{} commits for {writes} writes: no grouping",
        st.commits
    );
    assert!(st.max_group > 1);
    assert_eq!(
        store.get("counters", "n").unwrap(),
        Some((THREADS * EACH).to_string().into_bytes())
    );
    assert_eq!(store.scan("items", ..).unwrap().len(), THREADS * EACH);
    drop(store);
    // Durable: a fresh open sees everything.
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.scan("items", ..).unwrap().len(), THREADS * EACH);
}

#[test]
fn per_write_mode_commits_every_write_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by("hash:1".parse().unwrap())
        .commit_mode(CommitMode::PerWrite)
        .open(dir.path())
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let store = &store;
            s.spawn(move || {
                for _ in 0..25 {
                    store.incr("counters", format!("c{t}"), 1).unwrap();
                }
            });
        }
    });
    let st = stats(&store);
    assert_eq!(st.writes, 100);
    assert_eq!(st.commits, 100);
    assert_eq!(st.max_group, 1);
}

/// Holds redb's writer lock from another handle (as another process would) so writes queue
/// up, then releases it: everything that queued while the lock was held, the leader's own
/// write included, conflicting and not, commits as one group, and the conflicts alone fail.
#[test]
fn failed_precondition_in_a_group_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::shard_by("hash:1".parse().unwrap())
            .open(dir.path())
            .unwrap(),
    );
    store.put("dogs", "taken", "old").unwrap();
    store.put("counters", "words", "not a number").unwrap();

    let mut builder = Database::builder();
    builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
    let blocker_db = builder.open(store.shard_path(0).unwrap()).unwrap();
    let blocker = blocker_db.begin_write().unwrap();
    let before = stats(&store);

    // The first writer leads and waits for the writer lock...
    let leader = {
        let store = store.clone();
        std::thread::spawn(move || store.insert("dogs", "first", "1").unwrap())
    };
    wait_until("the leader waits for the lock", || {
        stats(&store).queued == 1
    });

    // ...while these queue: the leader takes its group only once it holds the lock.
    let mut queued = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        queued.push(std::thread::spawn(move || {
            store.insert("dogs", format!("dog{i}"), "v").unwrap()
        }));
    }
    let conflict = {
        let store = store.clone();
        std::thread::spawn(move || store.insert("dogs", "taken", "new").unwrap())
    };
    let bad_batch = {
        let store = store.clone();
        std::thread::spawn(move || {
            // Writes one key, then fails its check: nothing of it may land.
            let mut b = WriteBatch::new();
            b.put("dogs", "half{taken}", "written?")
                .expect("dogs", "taken", Expect::Absent)
                .put("dogs", "taken", "clobbered");
            store.write(b)
        })
    };
    let bad_incr = {
        let store = store.clone();
        std::thread::spawn(move || store.incr("counters", "words", 1))
    };
    wait_until("14 writes are queued", || stats(&store).queued == 14);
    drop(blocker);

    assert!(leader.join().unwrap());
    for q in queued {
        assert!(
            q.join().unwrap(),
            "an unconditional insert failed beside a conflict"
        );
    }
    assert!(!conflict.join().unwrap());
    assert!(matches!(
        bad_batch.join().unwrap(),
        Err(shardkv::Error::Conflict(_))
    ));
    assert!(matches!(
        bad_incr.join().unwrap(),
        Err(shardkv::Error::InvalidInput(_))
    ));

    let after = stats(&store);
    assert_eq!(
        after.commits - before.commits,
        1,
        "the writes queued behind the lock did not share one commit"
    );
    assert_eq!(after.max_group, 14);
    assert!(
        after.lock_wait_us > before.lock_wait_us,
        "the wait for the lock went uncounted"
    );
    assert_eq!(after.writes - before.writes, 11);
    assert_eq!(after.rejected - before.rejected, 3);
    assert_eq!(store.get("dogs", "taken").unwrap(), Some(b"old".to_vec()));
    assert_eq!(store.get("dogs", "half{taken}").unwrap(), None);
    assert_eq!(
        store.get("counters", "words").unwrap(),
        Some(b"not a number".to_vec())
    );
    for i in 0..10 {
        assert_eq!(
            store.get("dogs", format!("dog{i}")).unwrap(),
            Some(b"v".to_vec())
        );
    }
}
