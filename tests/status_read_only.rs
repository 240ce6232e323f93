//! `shardkv status` works for a user who may read the data directory but not write it.
//! Regression for issue 10: status opened `CLUSTER.LOCK` for writing and failed with
//! "Permission denied". As root (CI), the status command runs as `nobody`; as anyone else,
//! the lock file and directory are made read-only for their owner.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::cluster::{self, BIN};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn status_needs_only_read_access() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("shards");
    let server = cluster::start(&data, &["--workers", "1"]);
    server.wait_workers("1 online", Duration::from_secs(30), cluster::online(1));

    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut status = if root {
        // A copy of the binary that `nobody` may run, wherever the checkout lives.
        let bin = tmp.path().join("shardkv");
        std::fs::copy(BIN, &bin).unwrap();
        chmod(&bin, 0o755);
        chmod(tmp.path(), 0o755);
        let mut cmd = Command::new(&bin);
        cmd.uid(65534).gid(65534);
        cmd
    } else {
        Command::new(BIN)
    };
    if !root {
        chmod(&data.join("CLUSTER.LOCK"), 0o444);
        chmod(&data, 0o555);
    }
    let lock = data.join("CLUSTER.LOCK");
    let mode = std::fs::metadata(&lock).unwrap().permissions().mode();
    assert_eq!(mode & 0o022, 0, "the lock must not be writable by others");

    let out = status
        .args(["status", "--data", data.to_str().unwrap()])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    if !root {
        chmod(&data, 0o755);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!(
            "supervisor pid {}, running on {}",
            server.pid(),
            server.addr
        )),
        "{stdout}"
    );
    assert!(stdout.contains("online"), "{stdout}");
}
