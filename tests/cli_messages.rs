//! The CLI refuses what it cannot do in the user's words, before it touches anything, and
//! accepts PM2's spellings. Regressions for issue 10: `-i max` was rejected; `--min-uptime
//! 1000` meant 1000 s; `--request-timeout 0` was accepted; `alpha:a-m` was silently widened
//! to a-z; errors began with `conflict:` or `not found:` and spoke of library calls; `serve`
//! on a busy port created the store first; `load` against nothing did not say so.

mod common;

use std::time::Duration;

use common::cluster::{self, shardkv};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// No message carries one of the library's category prefixes.
fn assert_plain(message: &str) {
    for prefix in [
        "invalid input:",
        "not found:",
        "conflict:",
        "locked:",
        "corrupted:",
    ] {
        assert!(!message.contains(prefix), "{prefix:?} in {message}");
    }
}

#[test]
fn bad_flags_are_refused_with_the_fix_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("never");
    let data_arg = data.to_str().unwrap();
    for (args, says) in [
        (&["--request-timeout", "0"][..], "must be more than 0"),
        (&["--header-timeout", "0s"], "must be more than 0"),
        (
            &["--request-timeout", "30"],
            "30 needs a unit: 30s, 30ms or 30m",
        ),
        (&["-i", "lots"], "give N, max (one per CPU) or -K"),
        (
            &["--shard-by", "alpha:a-m"],
            "the ranges of alpha:a-m run from a to m, but every key needs a shard",
        ),
        (&["--shard-by", "alpha:c-z"], "Give ranges from a to z"),
        (&["--shard-by", "hash:0"], "hash:0"),
        (
            &["--name", "a/b"],
            "--name \"a/b\" should be 1 to 64 letters",
        ),
    ] {
        let mut full = vec!["serve", "--port", "0", "--data", data_arg];
        full.extend_from_slice(args);
        let out = shardkv(&full);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_plain(&err);
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

#[test]
fn serve_on_a_busy_port_creates_no_store() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let data = tmp.path().join("shards");
    let out = shardkv(&["serve", "--port", &port, "--data", data.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("the port is in use; pick another with --port"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "the store was created before the bind failed"
    );
}

#[test]
fn a_scheme_mismatch_names_the_flag_and_paths_are_absolute() {
    let tmp = tempfile::tempdir().unwrap();
    let server = cluster::start(&tmp.path().join("shards"), &["--workers", "1"]);
    drop(server);
    // A relative --data, from the store's parent directory.
    let out = std::process::Command::new(cluster::BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--data",
            "shards",
            "--shard-by",
            "hash:4",
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    let abs = tmp.path().canonicalize().unwrap().join("shards");
    assert!(
        err.contains(&format!(
            "the store in {} is sharded by hash:8, not hash:4; drop `--shard-by` or use `--shard-by hash:8`",
            abs.display()
        )),
        "{err}"
    );
    assert_plain(&err);

    let out = std::process::Command::new(cluster::BIN)
        .args(["status", "--data", "shards"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "no shardkv cluster is running in {}; start one with `shardkv serve --data {}`",
            abs.display(),
            abs.display()
        )),
        "{err}"
    );
    assert_plain(&err);
}

#[test]
fn load_against_nothing_says_no_server_answers() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let out = shardkv(&["load", &format!("http://{addr}/dogs"), "-n", "5"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("no server answers at http://{addr}")),
        "{err}"
    );
    assert_plain(&err);
}

#[test]
fn workers_max_is_one_per_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let server = cluster::start(&tmp.path().join("shards"), &["-i", "max"]);
    server.wait_workers(
        "one worker per CPU",
        Duration::from_secs(60),
        cluster::online(cpus),
    );
    assert_eq!(server.workers().len(), cpus);
}

/// PM2 reads `--min-uptime 10` as 10 ms: a worker that crashes 300 ms after it is ready has
/// outlived that, so its deaths are not quick and the supervisor keeps restarting it past
/// `--max-restarts`. Read as 10 s, the supervisor would give up after 2 deaths.
#[test]
#[cfg_attr(
    not(feature = "failpoints"),
    ignore = "needs `cargo test --features failpoints`"
)]
fn a_bare_min_uptime_is_milliseconds_as_in_pm2() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = cluster::start_with_env(
        &tmp.path().join("shards"),
        &[
            "--workers",
            "1",
            "--max-restarts",
            "2",
            "--min-uptime",
            "10",
        ],
        &[("FAILPOINTS", "worker-crash-after-ready=return(300)")],
    );
    server.wait_workers("4 restarts of a slot", Duration::from_secs(60), |w| {
        w.iter().any(|w| w.restarts >= 4)
    });
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the supervisor gave up:\n{}",
        server.stderr_text()
    );
    assert!(server.stderr_text().contains("injected crash"));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(30)).is_some());
}
