//! Cluster lifecycle with real processes: N workers answer from N pids (and `-i -K` means
//! CPUs - K, as in PM2); JSON logs are JSON, the workers' included; `status` lists them
//! with restart counts; SIGTERM lets a slow in-flight request finish and exits 0; `stop`
//! stops; a second supervisor, a data directory that is a file, a conflicting scheme and a
//! crash-looping worker all fail clearly instead of spinning; and workers whose supervisor is
//! SIGKILLed exit on their own.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{self, process_gone};
use common::http::{self, Client, ResponseExt};

/// About 3 s of trial division here.
const LARGE_PRIME: u64 = 18_446_744_073_709_551_557;

#[test]
fn n_workers_answer_from_n_pids_and_status_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(&dir.path().join("shards"), &["--workers", "3"]);
    server.wait_workers("3 online", Duration::from_secs(30), cluster::online(3));
    let mut pids = BTreeSet::new();
    for _ in 0..300 {
        pids.insert(http::get(&server.addr, "/healthz").unwrap().pid());
        if pids.len() == 3 {
            break;
        }
    }
    let listed: BTreeSet<u32> = server.online_pids().into_iter().collect();
    assert_eq!(
        pids, listed,
        "answers came from other processes than the listed workers"
    );

    // Kill one so that status has a restart to show.
    let victim = *listed.iter().next().unwrap();
    // SAFETY: kill(2) on a listed worker.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    server.wait_workers("the victim is replaced", Duration::from_secs(30), |w| {
        !w.iter().any(|w| w.pid == victim) && w.iter().filter(|w| w.status == "online").count() == 3
    });
    let out = cluster::shardkv(&["status", "--data", server.data.to_str().unwrap()]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    for header in [
        "id", "pid", "status", "uptime", "restarts", "requests", "memory",
    ] {
        assert!(table.contains(header), "{table}");
    }
    let rows: Vec<&str> = table.lines().filter(|l| l.contains("online")).collect();
    assert_eq!(rows.len(), 3, "{table}");
    for cluster::WorkerRow {
        slot,
        pid,
        restarts,
        ..
    } in server.workers()
    {
        let row = rows
            .iter()
            .find(|r| r.contains(&pid.to_string()))
            .unwrap_or_else(|| panic!("pid {pid} missing:\n{table}"));
        let cells: Vec<&str> = row.split('│').map(str::trim).collect();
        assert_eq!(cells[0], slot.to_string());
        assert_eq!(cells[4], restarts.to_string());
    }
    assert_eq!(server.workers().iter().map(|w| w.restarts).sum::<u64>(), 1);
}

#[test]
fn sigterm_finishes_the_slow_request_in_flight_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "2", "--drain-timeout", "60s"],
    );
    let addr = server.addr.clone();
    let slow = std::thread::spawn(move || {
        Client::new(&addr).get(&format!("/isprime?number={LARGE_PRIME}"))
    });
    server.wait_workers("2 reporting", Duration::from_secs(30), |w| {
        cluster::online(2)(w) && w.iter().all(|w| w.reported)
    });
    wait_prime_running(&server);
    server.signal(libc::SIGTERM);
    let answer = slow.join().unwrap().expect("the in-flight request failed");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["isPrime"], serde_json::json!(true));
    assert_eq!(
        answer.header("connection"),
        Some("close"),
        "a draining worker keeps no connection"
    );
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("supervisor did not exit");
    assert!(status.success(), "supervisor exited with {status}");
    assert!(
        !server.data.join("CLUSTER").exists(),
        "status file left behind"
    );
}

#[test]
fn stop_command_drains_and_a_second_supervisor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    let mut server = cluster::start(&data, &["--workers", "1"]);
    let (status, stderr) =
        cluster::start_failing(&data, &["--workers", "1"], &[], Duration::from_secs(20));
    assert!(!status.success());
    assert!(stderr.contains("already serving"), "{stderr}");
    assert_eq!(
        http::get(&server.addr, "/healthz").unwrap().text(),
        "ok",
        "the refused supervisor disturbed the first"
    );

    let out = cluster::shardkv(&["stop", "--data", data.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server
            .wait_exit(Duration::from_secs(5))
            .expect("stopped")
            .success()
    );
    let out = cluster::shardkv(&["status", "--data", data.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no shardkv cluster is running"));
    let out = cluster::shardkv(&["stop", "--data", data.to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn bad_data_directories_and_schemes_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let (status, stderr) = cluster::start_failing(&file, &[], &[], Duration::from_secs(10));
    assert!(!status.success());
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");

    let data = dir.path().join("shards");
    drop(cluster::start(
        &data,
        &["--workers", "1", "--shard-by", "hash:4"],
    ));
    let (status, stderr) = cluster::start_failing(
        &data,
        &["--shard-by", "alpha:a-m,n-z"],
        &[],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("sharded by hash:4, not alpha:a-m,n-z"),
        "{stderr}"
    );

    let (status, stderr) = cluster::start_failing(
        &data,
        &["--shard-by", "alpha:a-l,n-z"],
        &[],
        Duration::from_secs(10),
    );
    assert!(!status.success());
    assert!(stderr.contains("gap"), "{stderr}");
}

/// Needs the failpoints build: `cargo test --release --features failpoints`.
#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs `cargo test --features failpoints`"
)]
fn a_crash_looping_worker_makes_the_supervisor_give_up() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (status, stderr) = cluster::start_failing(
        &dir.path().join("shards"),
        &[
            "--workers",
            "2",
            "--max-restarts",
            "3",
            "--min-uptime",
            "5s",
        ],
        &[("FAILPOINTS", "worker-crash-after-ready=return(20)")],
        Duration::from_secs(30),
    );
    assert!(!status.success(), "supervisor exited with {status}");
    assert!(stderr.contains("giving up"), "{stderr}");
    // Giving up is the service being unavailable, not a failed precondition.
    assert!(stderr.contains("shardkv: unavailable: worker"), "{stderr}");
    assert!(!stderr.contains("conflict"), "{stderr}");
    assert!(
        stderr.contains("injected crash"),
        "the message does not name the worker's last words:\n{stderr}"
    );
    assert!(
        stderr.contains("restart_in"),
        "no restart was attempted:\n{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Waits until some worker reports a prime check running. A worker's own answer is live;
/// its peers' come from the status file, so this holds for a long computation only.
fn wait_prime_running(server: &cluster::Cluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http::get(&server.addr, "/stats").unwrap().json()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["isprime_running"] == 0)
    {
        assert!(Instant::now() < deadline, "the prime check never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Regression: an orphaned worker's first log line hit a closed stderr, and the failed write
/// panicked the worker before it could drain.
#[test]
fn workers_of_a_sigkilled_supervisor_finish_in_flight_requests_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    // A drain timeout far beyond the computation, even on a loaded machine.
    let mut server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "2", "--drain-timeout", "60s"],
    );
    server.wait_workers("2 reporting", Duration::from_secs(30), |w| {
        cluster::online(2)(w) && w.iter().all(|w| w.reported)
    });
    let workers = server.online_pids();
    let addr = server.addr.clone();
    let slow = std::thread::spawn(move || {
        Client::new(&addr).get(&format!("/isprime?number={LARGE_PRIME}"))
    });
    wait_prime_running(&server);
    server.signal(libc::SIGKILL);
    server
        .wait_exit(Duration::from_secs(5))
        .expect("supervisor survived SIGKILL");
    let answer = slow
        .join()
        .unwrap()
        .expect("the orphaned worker dropped its in-flight request");
    assert_eq!(answer.status, 200, "{}", answer.text());
    // With nothing left in flight, both exit long before the drain timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers.iter().all(|&p| process_gone(p)) {
        assert!(
            Instant::now() < deadline,
            "orphaned workers still running: {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = cluster::start(
        &dir.path().join("shards"),
        &[
            "--workers",
            "1",
            "--drain-timeout",
            "2s",
            "--header-timeout",
            "60s",
        ],
    );
    let mut idle = std::net::TcpStream::connect(server.addr.trim_start_matches("http://")).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    std::io::Write::write_all(&mut idle, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 512];
    let n = std::io::Read::read(&mut idle, &mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("200 OK"));
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server
        .wait_exit(Duration::from_secs(15))
        .expect("an idle connection held the cluster past its drain timeout");
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed before the drain timeout"
    );
    let mut rest = Vec::new();
    let closed = std::io::Read::read_to_end(&mut idle, &mut rest);
    assert!(closed.is_ok() || closed.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
}

/// A stop sent while the supervisor still waits for its store (here: held by maintenance)
/// is obeyed at once, and leaves no status file behind.
#[test]
fn a_stop_during_startup_is_obeyed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    std::fs::create_dir(&data).unwrap();
    let maintenance = shardkv::StoreLock::exclusive(&data).unwrap();
    let mut serve = std::process::Command::new(cluster::BIN)
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // It publishes a starting status once it holds its claim on the directory.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("CLUSTER").exists() {
        assert!(
            Instant::now() < deadline,
            "serve never claimed the directory"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(5) {
            let _ = serve.kill();
            panic!("serve ignored SIGINT while starting");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    assert!(
        !data.join("CLUSTER").exists(),
        "a stale status file was left"
    );
    drop(maintenance);
}

#[test]
fn minus_k_workers_is_cpus_minus_k_and_json_logs_are_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["-i", "-1", "--log-format", "json"],
    );
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let want = cpus.saturating_sub(1).max(1);
    server.wait_workers("the workers online", Duration::from_secs(30), |w| {
        w.iter().filter(|w| w.status == "online").count() == want
    });
    assert_eq!(http::get(&server.addr, "/").unwrap().status, 200);
    // Stopping makes the workers log too (they drain), through the supervisor's stderr.
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert!(
        server
            .wait_exit(Duration::from_secs(30))
            .expect("stopped")
            .success()
    );
    std::thread::sleep(Duration::from_millis(100));
    let logs = server.stderr_text();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.iter().any(|l| l.contains("worker started")), "{logs}");
    assert!(
        lines.iter().any(|l| l.contains("worker draining")),
        "no worker line: {logs}"
    );
    for line in lines {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(parsed.is_ok(), "not a JSON log line: {line}");
    }
}
