//! Liveness: a worker that stops making progress (SIGSTOP, as a deadlock or a starved process
//! would look) may hold a shard's writer lock that every writer in the cluster waits for. The
//! supervisor hears from each worker once a second; one silent for `--liveness-timeout` is
//! killed and replaced, the reason logged and kept in the status file, and writes resume.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{self, process_gone};

/// `GET /` over a fresh connection; `true` on a 200.
fn hit(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1500)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(1500)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

#[test]
fn a_stopped_worker_is_killed_and_replaced_and_writes_resume() {
    let dir = tempfile::tempdir().unwrap();
    // One shard: every write in the cluster goes through one writer lock, which the stopped
    // worker may well be holding.
    let mut server = cluster::start(
        &dir.path().join("shards"),
        &[
            "--workers",
            "2",
            "--shard-by",
            "hash:1",
            "--liveness-timeout",
            "3s",
        ],
    );
    server.wait_workers("2 workers report", Duration::from_secs(20), |w| {
        w.iter()
            .filter(|w| w.status == "online" && w.reported)
            .count()
            == 2
    });
    let addr = server.addr.trim_start_matches("http://").to_owned();

    // Load: four clients writing as fast as they can, each success time-stamped.
    let stop = Arc::new(AtomicBool::new(false));
    let successes = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, successes) = (addr.clone(), stop.clone(), successes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if hit(&addr) {
                        successes.lock().unwrap().push(Instant::now());
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let victim = server.online_pids()[0];
    // SAFETY: kill(2) on a worker of our own cluster.
    unsafe {
        libc::kill(victim as i32, libc::SIGSTOP);
    }
    let stopped_at = Instant::now();
    let deadline = stopped_at + Duration::from_secs(10);
    while !process_gone(victim) {
        assert!(
            Instant::now() < deadline,
            "the stopped worker {victim} was not killed within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed_after = stopped_at.elapsed();
    server.wait_workers("a replacement is online", Duration::from_secs(10), |w| {
        w.iter().filter(|w| w.status == "online").count() == 2 && w.iter().all(|w| w.pid != victim)
    });
    // Writes go on after the kill.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let successes = successes.lock().unwrap().clone();
    let killed_at = stopped_at + killed_after;
    let after_kill = successes.iter().filter(|&&t| t > killed_at).count();
    // Within the 3 s timeout plus the supervisor's 1 s tick (and a second of slack for a
    // loaded machine); the default is 10 s.
    assert!(
        killed_after < Duration::from_secs(6),
        "killed {killed_after:?} after it stopped"
    );
    assert!(after_kill > 10, "only {after_kill} writes after the kill");
    assert!(
        successes
            .iter()
            .any(|&t| t > killed_at && t < killed_at + Duration::from_secs(2)),
        "writes did not resume within 2 s of the kill"
    );

    // The reason is logged and kept in the status file; the slot counts a restart.
    let stderr = server.stderr_text();
    assert!(stderr.contains("sent no report"), "{stderr}");
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(server.data.join("CLUSTER")).unwrap()).unwrap();
    let last_error = status["last_error"].as_str().unwrap_or_default();
    assert!(
        last_error.contains(&format!("pid {victim}")) && last_error.contains("no report"),
        "{status}"
    );
    assert!(server.workers().iter().any(|w| w.restarts == 1), "{status}");
    assert_eq!(status["silent_kills"], 1, "{status}");
    let shown = common::cluster::shardkv(&["status", "--data", server.data.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(
        table.contains("1 worker killed and replaced for not reporting"),
        "{table}"
    );
    server.signal(libc::SIGTERM);
    assert!(
        server
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
}
