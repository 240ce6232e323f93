//! The small things a new user trips on (issue 10): `GET /` ends with a newline so the count
//! does not run into the shell prompt, and stays a JSON number; `/isprime`'s time is rounded
//! (it printed `0.06200700000000001`); `shardkv bench` never writes into the working
//! directory unless told to, says where its results went, and keeps each progress line
//! whole.

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{self, BIN};
use common::http::{Client, ResponseExt};

#[test]
fn the_counter_ends_with_a_newline_and_isprime_time_is_rounded() {
    let tmp = tempfile::tempdir().unwrap();
    let server = cluster::start(&tmp.path().join("shards"), &["--workers", "1"]);
    server.wait_workers("1 online", Duration::from_secs(30), cluster::online(1));
    let mut client = Client::new(&server.addr);
    for (path, body) in [("/", "1\n"), ("/", "2\n"), ("/count", "2\n")] {
        let r = client.get(path).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), body, "{path}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            serde_json::json!(body.trim().parse::<i64>().unwrap())
        );
    }
    for n in ["1000000007", "97", "1"] {
        let r = client.get(&format!("/isprime?number={n}")).unwrap();
        assert_eq!(r.status, 200);
        let text = r.text();
        let time = text
            .split("\"time\":")
            .nth(1)
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or_else(|| panic!("{text}"));
        let decimals = time.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 3, "time {time} has {decimals} decimals: {text}");
        assert!(time.parse::<f64>().unwrap() >= 0.0);
    }
}

#[test]
fn bench_writes_to_a_fresh_temp_dir_and_keeps_progress_lines_whole() {
    let cwd = tempfile::tempdir().unwrap();
    let tmpdir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "bench",
            "--workloads",
            "hot,inserts",
            "--shards",
            "1",
            "--procs",
            "2",
            "--threads",
            "1",
            "--modes",
            "group",
            "--seconds",
            "0.2",
        ])
        .current_dir(cwd.path())
        .env("TMPDIR", tmpdir.path())
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    // Nothing in the working directory; the results where it says.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
    let said = stderr
        .lines()
        .find_map(|l| l.strip_prefix("results will be written to "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let results = std::path::Path::new(said);
    assert!(results.starts_with(tmpdir.path()), "{said}");
    assert!(results.join("contention.csv").is_file());
    assert!(results.join("contention.svg").is_file());

    // Each configuration's progress is one whole line.
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("] hot ") || l.contains("] inserts "))
        .collect();
    assert_eq!(progress.len(), 2, "{stderr}");
    for (i, line) in progress.iter().enumerate() {
        assert!(line.starts_with(&format!("[{}/2] ", i + 1)), "{line:?}");
        assert!(line.ends_with(" ops/s, verified"), "{line:?}");
    }

    // A second run gets a directory of its own.
    let again = Command::new(BIN)
        .args([
            "bench",
            "--workloads",
            "hot",
            "--shards",
            "1",
            "--procs",
            "1",
            "--threads",
            "1",
            "--modes",
            "group",
            "--seconds",
            "0.1",
        ])
        .current_dir(cwd.path())
        .env("TMPDIR", tmpdir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    let second = stderr
        .lines()
        .find_map(|l| l.strip_prefix("results will be written to "))
        .unwrap();
    assert_ne!(second, said);
    assert!(
        results.join("contention.csv").is_file(),
        "the first run's results survive"
    );
}
