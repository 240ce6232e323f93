//! `shardkv bench` end to end through the real binary: a tiny sweep (2 processes, 1 thread,
//! 0.2 s, 1 and 2 shards, both commit modes, every workload) completes, verifies every end
//! state, measures work, and writes its CSV and SVG; bad flags fail clearly and start nothing.

use std::process::Command;

// The bench orchestrator is part of the binary; this test drives it with a fake worker.
#[path = "../src/bench/mod.rs"]
#[allow(dead_code)]
mod bench;

fn shardkv(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shardkv"))
        .args(args)
        .output()
        .expect("run shardkv")
}

#[test]
fn tiny_sweep_verifies_and_measures_every_configuration() {
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = shardkv(&[
        "bench",
        "--workloads",
        "hot,striped,inserts",
        "--shards",
        "1,2",
        "--procs",
        "2",
        "--threads",
        "1",
        "--modes",
        "per-write,group",
        "--seconds",
        "0.2",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("[12/12] inserts shards=2 procs=2 threads=1 group ..."));
    assert_eq!(stderr.matches(", verified").count(), 12, "{stderr}");

    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .filter(|l| {
            l.starts_with("| hot") || l.starts_with("| striped") || l.starts_with("| inserts")
        })
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .filter(|cells: &Vec<&str>| cells.len() == 12)
        .collect();
    assert_eq!(rows.len(), 12, "{stdout}");
    for row in &rows {
        assert_eq!(row[11], "yes", "{row:?}");
        let ops: u64 = row[5].parse().unwrap();
        assert!(ops > 0, "{row:?}");
    }
    assert!(stdout.contains("shards=2 vs shards=1"), "{stdout}");
    assert!(stdout.contains("mode=group vs mode=per-write"), "{stdout}");

    let csv = std::fs::read_to_string(out.path().join("contention.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 12);
    let svg = std::fs::read_to_string(out.path().join("contention.svg")).unwrap();
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    // Every verified store was deleted.
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[test]
fn bad_flags_fail_before_starting_anything() {
    for (args, says) in [
        (
            &["bench", "--procs", "0"][..],
            "process count must be 1 to 256",
        ),
        (&["bench", "--workloads", "lukewarm"], "lukewarm"),
        (
            &["bench", "--shards", "2000"],
            "shard count must be 1 to 1024",
        ),
    ] {
        let run = shardkv(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// A worker that dies takes the run down with a clear error, and every other worker the run
/// started is killed rather than left running.
#[cfg(unix)]
#[test]
fn a_failed_worker_fails_the_run_and_no_worker_outlives_it() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use crate::bench::{BenchArgs, Mode, Workload, run_with_exe};

    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("pid1");
    // Worker 1 hangs forever; worker 0 fails once worker 1 is up.
    let script = tmp.path().join("fake-shardkv");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$*\" in\n\
             *'--proc 0'*) while [ ! -s '{p}' ]; do sleep 0.01; done; echo 'boom' >&2; exit 3;;\n\
             *) echo $$ > '{p}.tmp'; mv '{p}.tmp' '{p}'; exec sleep 1000;;\nesac\n",
            p = pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let args = BenchArgs {
        workloads: vec![Workload::Hot],
        shards: vec![1],
        procs: vec![2],
        threads: vec![1],
        modes: vec![Mode::Group],
        seconds: 0.1,
        out: Some(tmp.path().join("out")),
        data: Some(tmp.path().join("data")),
        seed: 1,
    };
    let started = Instant::now();
    let err = run_with_exe(&args, &script).unwrap_err().to_string();
    assert!(err.contains("worker 0 exited before it was ready"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));

    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let alive = Command::new("kill")
        .args(["-0", pid.trim()])
        .status()
        .unwrap()
        .success();
    assert!(!alive, "worker 1 (pid {}) is still running", pid.trim());
    // The failed run's store is kept for inspection.
    assert!(tmp.path().join("data/run-001/MANIFEST").exists());
}
