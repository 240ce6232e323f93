//! Regression for issue 9 (item 3): a shard file the user may not open was reported by
//! `check` as `CORRUPTED`, and `serve` failed naming no file. Run as an unprivileged user
//! (uid 65534; the test needs root to switch to it, as CI has) against a store whose
//! shard-003.redb is mode 000: `check` says the file is unreadable (permission denied), not
//! corrupted, and `serve` refuses to start naming the file and the permission problem.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::cluster::BIN;
use shardkv::Store;

const NOBODY: u32 = 65534;

fn as_nobody(args: &[&str], data: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .expect("run shardkv as uid 65534 (needs root)")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_file_the_user_may_not_open_is_a_permission_problem_not_corruption() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test switches to uid 65534, which needs root"
    );
    let tmp = tempfile::tempdir().unwrap();
    chmod(tmp.path(), 0o755);
    let data = tmp.path().join("store");
    let store = Store::shard_by("hash:8".parse().unwrap())
        .open(&data)
        .unwrap();
    for i in 0..50 {
        store.put("dogs", format!("dog{i}"), "{}").unwrap();
    }
    drop(store);
    // Everything open to all, but one shard file.
    chmod(&data, 0o777);
    for entry in std::fs::read_dir(&data).unwrap() {
        chmod(&entry.unwrap().path(), 0o666);
    }
    chmod(&data.join("shard-003.redb"), 0o000);

    let out = as_nobody(&["check"], &data);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let row = stdout
        .lines()
        .find(|l| l.contains("shard-003.redb"))
        .unwrap_or_else(|| panic!("no row for shard-003: {stdout}{stderr}"));
    assert!(
        row.contains("UNREADABLE") && row.contains("ermission denied"),
        "{row}"
    );
    assert!(!stdout.contains("CORRUPTED"), "{stdout}");

    let out = common::cluster::serve_command(&data, &["--workers", "1"])
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {stderr}");
    assert!(stderr.contains("shard-003.redb"), "{stderr}");
    assert!(stderr.contains("ermission denied"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("corrupt"), "{stderr}");
}
