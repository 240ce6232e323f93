//! `cargo bench --bench contention`: a fixed, modest sweep of `shardkv bench` — hot counter,
//! striped counters and inserts, on 1 file and on 8 shards, 8 processes of 1 and 8 threads,
//! one transaction per write and group commit, 1 s each — run through the real binary, with
//! every end state verified. Results go to the target directory's `bench-results/`.

use std::path::Path;
use std::process::ExitCode;

use shardkv::bench::{self, BenchArgs, Mode, Workload};

fn main() -> ExitCode {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-results");
    let args = BenchArgs {
        workloads: vec![Workload::Hot, Workload::Striped, Workload::Inserts],
        shards: vec![1, 8],
        procs: vec![8],
        threads: vec![1, 8],
        modes: vec![Mode::PerWrite, Mode::Group],
        seconds: 1.0,
        out,
        data: None,
        seed: bench::DEFAULT_SEED,
    };
    match bench::run_with_exe(&args, Path::new(env!("CARGO_BIN_EXE_shardkv"))) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contention bench: {e}");
            ExitCode::FAILURE
        }
    }
}
