//! Regressions of the status file (`CLUSTER`): `serve --data` with a non-UTF-8 path panicked
//! in the status writer (`expect("status serializes")`), and temporary status files left by a
//! supervisor killed mid-write stayed in the data directory forever.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use common::cluster::{self, online};

#[test]
fn a_non_utf8_data_directory_serves_and_shows_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(OsStr::from_bytes(b"shards-\xff"));
    let mut server = cluster::start(&data, &["--workers", "1"]);
    server.wait_workers("one worker online", Duration::from_secs(30), online(1));
    let health = common::http::get(&server.addr, "/healthz").unwrap();
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
    let shown = std::process::Command::new(cluster::BIN)
        .arg("status")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{table}");
    assert!(table.contains("shards-\u{fffd}"), "{table}");
    server.signal(libc::SIGTERM);
    let exit = server.wait_exit(Duration::from_secs(20));
    assert!(
        exit.is_some_and(|s| s.success()),
        "{}",
        server.stderr_text()
    );
    assert!(!server.stderr_text().contains("panicked"));
}

#[test]
fn temporary_status_files_of_a_killed_supervisor_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    std::fs::create_dir(&data).unwrap();
    for stale in [".CLUSTER.tmp-4242-7", ".CLUSTER.tmp-4243"] {
        std::fs::write(data.join(stale), b"{").unwrap();
    }
    let mut server = cluster::start(&data, &["--workers", "1"]);
    server.wait_workers("one worker online", Duration::from_secs(30), online(1));
    let left: Vec<String> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(".CLUSTER.tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    server.signal(libc::SIGTERM);
    assert!(
        server
            .wait_exit(Duration::from_secs(20))
            .is_some_and(|s| s.success())
    );
}
