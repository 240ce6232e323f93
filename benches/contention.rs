//! `cargo bench --bench contention`: a fixed, modest sweep of `shardkv bench` — hot counter,
//! striped counters and inserts, on 1 file and on 8 shards, 8 processes of 1 and 8 threads,
//! one transaction per write and group commit, 1 s each — run through the real binary, with
//! every end state verified. Results go to the target directory's `bench-results/`.

use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-results");
    let status = Command::new(env!("CARGO_BIN_EXE_shardkv"))
        .args([
            "bench",
            "--workloads",
            "hot,striped,inserts",
            "--shards",
            "1,8",
            "--procs",
            "8",
            "--threads",
            "1,8",
            "--modes",
            "per-write,group",
            "--seconds",
            "1",
            "--out",
        ])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("contention bench: shardkv bench exited with {s}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("contention bench: starting shardkv bench: {e}");
            ExitCode::FAILURE
        }
    }
}
