//! `serve --workers 100000` forked until the machine fell over and ignored SIGTERM meanwhile;
//! `--workers 999999999999` aborted on an allocation. Workers are now capped at a multiple of
//! the CPUs, with a message saying so, and a stop sent while the cluster starts is obeyed.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster;

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[test]
fn absurd_worker_counts_are_capped_with_a_message() {
    for asked in ["100000", "999999999999"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = cluster::start(&dir.path().join("shards"), &["--workers", asked]);
        let max = shardkv::cluster::MAX_WORKERS_PER_CPU * cpus();
        server.wait_workers(
            "the capped workers are online",
            Duration::from_secs(60),
            |w| w.iter().filter(|w| w.status == "online").count() == max,
        );
        let stderr = server.stderr_text();
        assert!(
            stderr.contains(&format!("--workers {asked} is more than"))
                && stderr.contains(&format!("starting {max} workers")),
            "{stderr}"
        );
        // No more than the cap was ever started.
        assert!(server.workers().len() <= max);
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(Duration::from_secs(30)).expect("stopped");
        assert!(status.success(), "{status}:\n{}", server.stderr_text());
    }
}

#[test]
fn a_stop_sent_while_the_cluster_starts_is_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    let mut child = cluster::serve_command(&data, &["--workers", "100000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reaper = common::Reaper(Vec::new());
    // The status file appears once the supervisor has its signal handlers and lock, before
    // its workers are up: stop it right then.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("CLUSTER").exists() {
        assert!(Instant::now() < deadline, "no status file");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            reaper.0.push(child);
            panic!("the supervisor ignored SIGTERM while starting");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !data.join("CLUSTER").exists(),
        "the status file outlived its supervisor"
    );
}
