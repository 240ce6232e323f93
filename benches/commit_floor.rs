//! What one durable commit costs on this machine, one writer, one increment per commit: the
//! floor under every group commit, and so under the durable counter's requests/s.
//!
//! - `fdatasync`: overwrite one 4 KiB page and sync it, about what Redis pays per event-loop
//!   iteration with `appendfsync always`;
//! - redb `SingleWriter`, as a one-process database would commit;
//! - redb `MultiWriter` opened by `Builder::create` (redb's own file backend);
//! - a shardkv shard (`MultiWriter`, shardkv's file backend), through `Store::incr`.
//!
//! Rounds alternate the four, so that drift on a shared machine hits each alike.
//!
//! `cargo run --release --example commit_floor [COMMITS_PER_ROUND] [ROUNDS]`

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use redb::{ConcurrencyMode, Database, TableDefinition};
use shardkv::{ShardBy, Store};

const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Microseconds per iteration of `step`, over `n` iterations.
fn per_op(n: u64, mut step: impl FnMut(u64)) -> f64 {
    let started = Instant::now();
    for i in 0..n {
        step(i);
    }
    started.elapsed().as_secs_f64() * 1e6 / n as f64
}

fn fdatasync(dir: &Path, n: u64) -> f64 {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("page"))
        .expect("creating the page file");
    file.write_all_at(&[0; 4096], 0).expect("writing");
    file.sync_all().expect("syncing");
    per_op(n, |i| {
        file.write_all_at(&[i as u8; 4096], 0).expect("writing");
        file.sync_data().expect("syncing");
    })
}

fn redb(dir: &Path, mode: ConcurrencyMode, name: &str, n: u64) -> f64 {
    let mut builder = Database::builder();
    builder.set_concurrency_mode(mode);
    let db = builder
        .create(dir.join(name))
        .expect("creating the database");
    per_op(n, |i| {
        let txn = db.begin_write().expect("beginning");
        txn.open_table(COUNTERS)
            .expect("opening the table")
            .insert("requests", i)
            .expect("inserting");
        txn.commit().expect("committing");
    })
}

fn shardkv(dir: &Path, n: u64) -> f64 {
    let store = Store::shard_by(ShardBy::hash(1).expect("one shard"))
        .open(dir.join("store"))
        .expect("opening the store");
    per_op(n, |_| {
        store.incr("counters", "requests", 1).expect("incrementing");
    })
}

/// A positive count from the command line, `default` if absent; anything else ends the
/// program with a message.
fn count(arg: Option<String>, name: &str, default: u64) -> u64 {
    let Some(arg) = arg else { return default };
    match arg.parse::<u64>() {
        Ok(n) if n > 0 => n,
        _ => {
            eprintln!("commit_floor: {name} must be a whole number of at least 1, not {arg:?}");
            eprintln!("usage: commit_floor [COMMITS_PER_ROUND] [ROUNDS]");
            std::process::exit(2);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n = count(args.next(), "COMMITS_PER_ROUND", 1000);
    let rounds = count(args.next(), "ROUNDS", 5) as usize;
    let rows = [
        "fdatasync of one 4 KiB page",
        "redb SingleWriter commit",
        "redb MultiWriter commit (redb's file backend)",
        "shardkv shard commit (MultiWriter, lseek backend)",
    ];
    let mut samples = vec![Vec::new(); rows.len()];
    for round in 0..rounds {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = tmp.path();
        samples[0].push(fdatasync(dir, n));
        samples[1].push(redb(dir, ConcurrencyMode::SingleWriter, "single.redb", n));
        samples[2].push(redb(dir, ConcurrencyMode::MultiWriter, "multi.redb", n));
        samples[3].push(shardkv(dir, n));
        eprintln!("round {}/{rounds} done", round + 1);
    }
    println!("| per commit, one writer | median µs | min µs | max µs | commits/s at the median |");
    println!("|---|--:|--:|--:|--:|");
    for (row, mut s) in rows.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        let median = s[s.len() / 2];
        println!(
            "| {row} | {median:.0} | {:.0} | {:.0} | {:.0} |",
            s[0],
            s[s.len() - 1],
            1e6 / median
        );
    }
    println!();
    println!("{rounds} rounds of {n} commits each, rows alternating within each round");
}
