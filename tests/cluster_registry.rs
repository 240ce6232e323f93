//! `shardkv status` works from any directory, like `pm2 list`: every running cluster of the
//! user is listed (name, data directory, address, workers, uptime); `serve --name` names one;
//! `status`, `stop` and `reload` take a name or a data directory; a supervisor killed with
//! SIGKILL leaves no phantom entry. Regression for issue 10: `cd /tmp && shardkv status` said
//! "no shardkv cluster is running in shards" while one served.
//!
//! Each test has its own runtime directory (XDG_RUNTIME_DIR), so parallel tests never see
//! each other's clusters.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::cluster::{self, BIN};

/// Runs `shardkv` in `cwd` with this test's runtime directory.
fn shardkv_in(cwd: &Path, runtime: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", runtime)
        .output()
        .expect("run shardkv")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The listing's row for a cluster name, split into cells.
fn row(listing: &str, name: &str) -> Option<Vec<String>> {
    listing
        .lines()
        .map(|l| {
            l.split('│')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|c| c == name))
}

#[test]
fn status_from_anywhere_lists_every_cluster_and_stop_takes_a_name() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];
    let elsewhere = tempfile::tempdir().unwrap();

    let shards = tmp.path().join("shards");
    let dogs_dir = tmp.path().join("dog-data");
    let a = cluster::start_with_env(&shards, &["--workers", "2"], &env);
    let b = cluster::start_with_env(&dogs_dir, &["--workers", "1", "--name", "dogs"], &env);
    a.wait_workers("2 online", Duration::from_secs(30), cluster::online(2));
    b.wait_workers("1 online", Duration::from_secs(30), cluster::online(1));

    // From an unrelated directory, with no flags: both clusters.
    let out = shardkv_in(elsewhere.path(), &runtime, &["status"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let header = row(&stdout, "name").expect("a header row");
    assert_eq!(
        header,
        [
            "name", "pid", "status", "address", "workers", "uptime", "data"
        ]
    );
    let shards_row = row(&stdout, "shards").unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(shards_row[1], a.pid().to_string());
    assert_eq!(shards_row[2], "running");
    assert_eq!(shards_row[3], a.addr);
    assert_eq!(shards_row[4], "2/2");
    assert!(shards_row[5].ends_with('s'), "{shards_row:?}");
    assert_eq!(
        Path::new(&shards_row[6]),
        shards.canonicalize().unwrap(),
        "data directories are absolute"
    );
    let dogs_row = row(&stdout, "dogs").unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(dogs_row[3], b.addr);
    assert_eq!(dogs_row[4], "1/1");

    // One cluster's workers, by name, from anywhere.
    let out = shardkv_in(elsewhere.path(), &runtime, &["status", "dogs"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with(&format!(
            "shardkv cluster dogs: supervisor pid {}, running on {}",
            b.pid(),
            b.addr
        )),
        "{stdout}"
    );

    // A name that is taken is refused, naming the cluster that has it.
    let other = tmp.path().join("other");
    let (status, stderr) = cluster::start_failing(
        &other,
        &["--workers", "1", "--name", "dogs"],
        &env,
        Duration::from_secs(30),
    );
    assert!(!status.success());
    assert!(
        stderr.contains("a cluster named \"dogs\" is already running")
            && stderr.contains("pick another --name"),
        "{stderr}"
    );

    // With two running, a bare stop asks which one and stops nothing.
    let out = shardkv_in(elsewhere.path(), &runtime, &["stop"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("2 clusters are running"), "{stderr}");
    assert!(!stderr.contains("invalid input:"), "{stderr}");

    // Stop by name, then by data directory.
    let out = shardkv_in(elsewhere.path(), &runtime, &["stop", "dogs"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("stopped cluster dogs in "), "{stdout}");
    let mut b = b;
    assert!(b.wait_exit(Duration::from_secs(30)).unwrap().success());

    let out = shardkv_in(
        elsewhere.path(),
        &runtime,
        &["stop", shards.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let mut a = a;
    assert!(a.wait_exit(Duration::from_secs(30)).unwrap().success());

    let out = shardkv_in(elsewhere.path(), &runtime, &["status"]);
    assert!(out.status.success());
    assert!(
        text(&out).0.starts_with("no shardkv cluster is running"),
        "{}",
        text(&out).0
    );
    assert_eq!(
        std::fs::read_dir(runtime.join("shardkv")).unwrap().count(),
        0,
        "stopped clusters leave no entry"
    );
}

#[test]
fn a_killed_supervisors_entry_is_dropped_and_a_bare_reload_finds_the_only_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let env = [("XDG_RUNTIME_DIR", runtime.to_str().unwrap())];

    let mut killed = cluster::start_with_env(
        &tmp.path().join("a"),
        &["--workers", "1", "--name", "doomed"],
        &env,
    );
    let live = cluster::start_with_env(
        &tmp.path().join("b"),
        &["--workers", "1", "--name", "live"],
        &env,
    );
    live.wait_workers("1 online", Duration::from_secs(30), cluster::online(1));
    killed.signal(libc::SIGKILL);
    assert!(killed.wait_exit(Duration::from_secs(10)).is_some());
    assert!(
        runtime.join("shardkv/doomed.json").exists(),
        "a SIGKILLed supervisor cannot clean up"
    );

    let out = shardkv_in(tmp.path(), &runtime, &["status"]);
    let (stdout, _) = text(&out);
    assert!(row(&stdout, "live").is_some(), "{stdout}");
    assert!(row(&stdout, "doomed").is_none(), "{stdout}");
    assert!(!runtime.join("shardkv/doomed.json").exists());

    // The one running cluster is the default target; the summary's grammar is singular.
    let out = shardkv_in(tmp.path(), &runtime, &["reload", "--wait", "60s"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("reloaded 1 worker of cluster live in "),
        "{stdout}"
    );
    assert!(stdout.contains("(1 reload)"), "{stdout}");

    // The freed name can be taken again once its supervisor is gone.
    let again = cluster::start_with_env(
        &tmp.path().join("c"),
        &["--workers", "1", "--name", "doomed"],
        &env,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = shardkv_in(tmp.path(), &runtime, &["status", "doomed"]);
        if out.status.success() {
            assert!(text(&out).0.contains(&again.addr), "{}", text(&out).0);
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out).1);
        std::thread::sleep(Duration::from_millis(50));
    }
}
