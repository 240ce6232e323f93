//! The `shardkv` command line: parse arguments, set up logging, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shardkv::{Store, bench};

#[derive(Parser)]
#[command(
    name = "shardkv",
    version,
    about = "A durable sharded key-value store for one machine, and its HTTP server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a store read-only, live (or check and repair it, offline, with --repair).
    Check {
        /// The store's directory.
        #[arg(long, default_value = "shards")]
        data: PathBuf,
        /// Run redb's full integrity check and repair; needs the store to be unused.
        #[arg(long)]
        repair: bool,
    },
    /// Measure contention: single file vs sharded files, threads vs processes, group commit
    /// vs one transaction per write.
    Bench(bench::BenchArgs),
    /// One benchmark process (started by `shardkv bench`).
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { data, repair } => check(&data, repair),
        Command::Bench(args) => bench::run(args),
        Command::BenchWorker(args) => bench::worker(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardkv: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(data: &std::path::Path, repair: bool) -> shardkv::Result<()> {
    let report = if repair {
        Store::repair(data)?
    } else {
        Store::check(data)?
    };
    println!("store {} ({})", data.display(), report.scheme);
    println!(
        "{:>5}  {:<16} {:>12}  {:<14} collections",
        "shard", "file", "bytes", "health"
    );
    for s in &report.shards {
        let health = match &s.health {
            shardkv::ShardHealth::Ok => "ok".to_owned(),
            shardkv::ShardHealth::Repaired => "repaired".to_owned(),
            shardkv::ShardHealth::NeedsRecovery => "needs recovery".to_owned(),
            shardkv::ShardHealth::Corrupted(why) => format!("CORRUPTED: {why}"),
        };
        let collections: Vec<String> = s
            .collections
            .iter()
            .map(|(c, n)| format!("{c}={n}"))
            .collect();
        println!(
            "{:>5}  {:<16} {:>12}  {:<14} {}",
            s.shard,
            s.file,
            s.bytes,
            health,
            collections.join(" ")
        );
    }
    if report.is_healthy() {
        Ok(())
    } else {
        Err(shardkv::Error::Corrupted(
            "some shards are damaged; see above".into(),
        ))
    }
}
