//! Rolling reload under load drops nothing: after SIGHUP (and after `shardkv reload`) every
//! worker pid is replaced, and not one request of a continuous load fails.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::ResponseExt;
use common::{cluster, load};

fn online(server: &cluster::Cluster) -> BTreeSet<u32> {
    server.online_pids().into_iter().collect()
}

fn wait_reloads(server: &cluster::Cluster, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(server.data.join("CLUSTER")).unwrap_or_default())
                .unwrap_or_default();
        if status["reloads"].as_u64() == Some(n) && status["state"] == "running" {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reload {n} did not finish: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rolling_reload_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "3", "--drain-timeout", "5s"],
    );
    server.wait_workers("3 workers online", Duration::from_secs(30), |w| {
        cluster::online(3)(w)
    });
    let load = load::start(&server.addr, 6);
    load.wait_for(300);

    let first = online(&server);
    server.signal(libc::SIGHUP);
    wait_reloads(&server, 1);
    let second = online(&server);
    assert_eq!(second.len(), 3);
    assert!(
        first.is_disjoint(&second),
        "SIGHUP left a worker in place: {first:?} -> {second:?}"
    );
    load.wait_for(300);

    let out = cluster::shardkv(&["reload", "--data", server.data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "shardkv reload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("reloaded 3 workers"));
    wait_reloads(&server, 2);
    let third = online(&server);
    assert!(
        second.is_disjoint(&third),
        "reload left a worker in place: {second:?} -> {third:?}"
    );
    load.wait_for(300);

    let result = load.finish();
    assert!(
        result.failures.is_empty(),
        "{} requests failed during reloads: {:?}",
        result.failures.len(),
        &result.failures[..result.failures.len().min(5)]
    );
    let values: BTreeSet<i64> = result.acks.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        values.len(),
        result.acks.len(),
        "a value was answered twice"
    );
    // The load was served by all three generations of workers.
    let served: BTreeSet<u32> = result.acks.iter().map(|(_, p)| *p).collect();
    assert!(!served.is_disjoint(&first) && !served.is_disjoint(&third));
    // Totals count the retired workers too: they never go backwards across reloads.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = common::http::get(&server.addr, "/stats").unwrap().json();
        let total = stats["totals"]["by_route"]["GET /"].as_u64().unwrap_or(0);
        if total >= result.acks.len() as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "totals lost retired workers: {total} < {}",
            result.acks.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("2 reloads: {} requests, 0 failed", result.acks.len());
}

#[test]
fn a_reload_finishes_even_if_an_old_worker_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "2", "--drain-timeout", "1s"],
    );
    server.wait_workers(
        "2 workers online",
        Duration::from_secs(30),
        cluster::online(2),
    );
    let hung = server.online_pids()[0];
    // SAFETY: kill(2) on a listed worker; the supervisor SIGKILLs it below.
    unsafe { libc::kill(hung as i32, libc::SIGSTOP) };
    server.signal(libc::SIGHUP);
    wait_reloads(&server, 1);
    assert!(
        cluster::process_gone(hung),
        "the hung worker was not killed"
    );
    assert!(!online(&server).contains(&hung));
}

/// The supervisor records its binary's path at start: after the file is replaced (a rebuild
/// in place), the running executable reads as deleted, yet a reload starts the new file.
#[test]
fn reload_runs_the_binary_rebuilt_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("shardkv");
    std::fs::copy(cluster::BIN, &bin).unwrap();
    let server = cluster::start_binary(&bin, &dir.path().join("shards"), &["--workers", "2"]);
    server.wait_workers(
        "2 workers online",
        Duration::from_secs(30),
        cluster::online(2),
    );
    let before = online(&server);
    // Rebuild in place: a new file renamed over the old path.
    let rebuilt = dir.path().join("shardkv.new");
    std::fs::copy(cluster::BIN, &rebuilt).unwrap();
    std::fs::rename(&rebuilt, &bin).unwrap();
    let exe = std::fs::read_link(format!("/proc/{}/exe", server.pid())).unwrap();
    assert!(exe.to_string_lossy().ends_with("(deleted)"), "{exe:?}");

    server.signal(libc::SIGHUP);
    wait_reloads(&server, 1);
    let after = online(&server);
    assert!(before.is_disjoint(&after));
    for pid in &after {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
        assert_eq!(
            exe, bin,
            "worker {pid} runs {exe:?}, not the rebuilt binary"
        );
    }
}
