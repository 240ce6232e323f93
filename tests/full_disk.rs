//! Regression for issue 9 (item 5): on a full disk `serve` refused to start, because it could
//! not write its `CLUSTER` status file, so a restarted server served not even reads. The
//! status file is never needed to serve: on a full disk (a 4 MiB tmpfs, filled) the server
//! starts, reads answer 200, writes answer 201 or a 503 JSON, what was acknowledged survives
//! a restart, and SIGTERM stops it with 0. Needs root for `mount` (CI runs as root).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cluster;
use common::http::{Client, ResponseExt};

/// A tmpfs mounted for the test, unmounted on drop (after the servers, declared later, stop).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn stop(mut c: cluster::Cluster) {
    c.signal(libc::SIGTERM);
    let status = c.wait_exit(Duration::from_secs(30)).expect("serve stops");
    assert!(status.success(), "{status}: {}", c.stderr_text());
}

#[test]
fn a_full_disk_still_serves_reads_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&tmp.path().join("disk"), "4m");
    let data = disk.0.join("store");
    let c = cluster::start(&data, &["--workers", "1", "--shard-by", "hash:2"]);
    let mut client = Client::new(&c.addr);
    for _ in 0..5 {
        assert_eq!(client.get("/").unwrap().status, 200);
    }
    let r = client
        .post_json("/dogs", r#"{"name":"rex","color":"red"}"#)
        .unwrap();
    assert_eq!(r.status, 201);
    drop(client);
    stop(c);

    // Fill the disk to the last byte.
    let mut filler = std::fs::File::create(disk.0.join("filler")).unwrap();
    let chunk = vec![0xa5u8; 64 << 10];
    loop {
        match filler.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    while filler.write(&[0]).is_ok_and(|n| n == 1) {}
    drop(filler);

    let c = cluster::start(&data, &["--workers", "1"]);
    let mut client = Client::new(&c.addr);
    assert_eq!(client.get("/count").unwrap().json(), 5);
    assert_eq!(client.get("/dogs/rex").unwrap().json()["color"], "red");
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        let body = format!(r#"{{"name":"pup{i}","color":"blue"}}"#);
        let r = client.post_json("/dogs", &body).unwrap();
        match r.status {
            201 => acknowledged.push(format!("pup{i}")),
            503 => assert!(r.json()["error"].is_string()),
            other => panic!("POST on a full disk answered {other}: {}", r.text()),
        }
    }
    assert_eq!(client.get("/count").unwrap().json(), 5);
    drop(client);
    stop(c);

    // With room again, everything acknowledged is there.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    let c = cluster::start(&data, &["--workers", "1"]);
    let mut client = Client::new(&c.addr);
    assert_eq!(client.get("/dogs/rex").unwrap().status, 200);
    for name in &acknowledged {
        assert_eq!(
            client.get(&format!("/dogs/{name}")).unwrap().status,
            200,
            "{name}"
        );
    }
    drop(client);
    stop(c);
}
