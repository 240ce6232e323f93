//! The `shardkv` command line: parse arguments, set up logging, call the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shardkv::cluster::{self, ClusterOptions, status, worker};
use shardkv::server::ServerConfig;
use shardkv::{ShardBy, ShardHealth, Store, bench};

const AFTER_HELP: &str = "\
Examples:
  shardkv serve                              # ./shards, 127.0.0.1:3000, one worker per CPU
  shardkv serve --workers 4 --shard-by alpha:a-m,n-z --data /tmp/dogs
  shardkv status                             # like pm2 list
  shardkv reload                             # like pm2 reload: rolling, zero downtime
  shardkv stop
  shardkv load -n 20000 -c 64                # HTTP load on the counter, answers checked
  shardkv bench --seconds 2                  # one file vs sharded files, group commit vs not
  shardkv check --data shards";

#[derive(Parser)]
#[command(
    name = "shardkv",
    version,
    about = "A durable sharded key-value store for one machine, and its HTTP server in cluster mode",
    after_help = AFTER_HELP
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the request counter and dog registry over HTTP, from N worker processes on one
    /// port under a supervisor (like `pm2 start -i N`).
    Serve(ServeArgs),
    /// Show the running cluster's workers (like `pm2 list`).
    Status {
        /// The data directory the cluster serves.
        #[arg(long, default_value = "shards")]
        data: PathBuf,
    },
    /// Stop the running cluster gracefully: drain every worker, then exit (like `pm2 stop`).
    Stop {
        /// The data directory the cluster serves.
        #[arg(long, default_value = "shards")]
        data: PathBuf,
        /// How long to wait for the cluster to exit.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Replace every worker, one at a time, without dropping a request (like `pm2 reload`).
    Reload {
        /// The data directory the cluster serves.
        #[arg(long, default_value = "shards")]
        data: PathBuf,
        /// How long to wait for the reload to finish.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Verify a store read-only while it is live; with --repair, run redb's integrity check
    /// and repair (refused while the store is in use).
    Check {
        /// The store's directory.
        #[arg(long, default_value = "shards")]
        data: PathBuf,
        /// Run the full integrity check and repair; needs the store to be unused.
        #[arg(long)]
        repair: bool,
    },
    /// Measure contention: single file vs sharded files, threads vs processes, group commit
    /// vs one transaction per write.
    Bench(bench::BenchArgs),
    /// Drive a running server with HTTP load (like `loadtest -n N -c C`) and check that the
    /// counter's answers are exact.
    Load(bench::load::LoadArgs),
    /// One benchmark process (started by `shardkv bench`).
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
    /// One worker process (started by `shardkv serve`).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (created if missing).
    #[arg(long, default_value = "shards")]
    data: PathBuf,
    /// Interface to bind. The default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 lets the OS choose (the chosen one is printed).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Worker processes, as PM2's -i: N > 0 is exactly N, 0 is one per CPU, -K is CPUs - K
    /// (at least 1).
    #[arg(long, short = 'i', default_value_t = 0, allow_negative_numbers = true)]
    workers: i64,
    /// Routing of a new store: alpha:a-m,n-z, alpha:g,n,t or hash:N. An existing store keeps
    /// its own; giving a different one is an error. New stores default to hash:8.
    #[arg(long, value_parser = parse_scheme)]
    shard_by: Option<ShardBy>,
    /// Longest time a request may take before it is answered 503.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Longest time a client may take to send a request's headers (also the keep-alive idle
    /// limit).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,
    /// On stop or reload, how long a worker finishes in-flight requests before it closes
    /// what is left.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Consecutive quick deaths of a worker (each within --min-uptime of starting) after
    /// which the supervisor gives up.
    #[arg(long, default_value_t = 16)]
    max_restarts: u32,
    /// A worker that dies sooner than this after starting counts toward --max-restarts.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_uptime: Duration,
    /// Page cache of each shard file, per worker, in MiB.
    #[arg(long, default_value_t = 16)]
    cache_mb: usize,
    /// A worker that sends the supervisor no report (one a second) for this long is stopped
    /// or deadlocked: it is killed and replaced.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    liveness_timeout: Duration,
}

#[derive(clap::Args)]
struct WorkerArgs {
    #[arg(long)]
    listen_fd: i32,
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_parser = parse_duration)]
    request_timeout: Duration,
    #[arg(long, value_parser = parse_duration)]
    header_timeout: Duration,
    #[arg(long, value_parser = parse_duration)]
    drain_timeout: Duration,
    #[arg(long)]
    cache_bytes: usize,
}

fn parse_scheme(s: &str) -> Result<ShardBy, String> {
    s.parse().map_err(|e: shardkv::Error| e.to_string())
}

/// `250ms`, `10s`, `5m`, or plain seconds (`1.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale < 1e9 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!("{s:?} is not a duration like 500ms, 10s or 2m")),
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr (a supervisor gone, a pipe reader killed) must not turn a log line
        // into a panic: an orphaned worker still has requests to finish.
        .log_internal_errors(false)
        .with_target(false);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let result = match cli.command {
        Command::Serve(args) => serve(args, cli.log_format),
        Command::Worker(args) => worker::run(worker::WorkerOptions {
            listen_fd: args.listen_fd,
            data: args.data,
            server: ServerConfig {
                header_read_timeout: args.header_timeout,
                request_timeout: args.request_timeout,
                drain_timeout: args.drain_timeout,
            },
            cache_bytes: args.cache_bytes,
        }),
        Command::Status { data } => {
            status::running_status(&data).map(|s| print!("{}", status::render_table(&s)))
        }
        Command::Stop { data, wait } => status::stop(&data, wait).map(|pid| {
            println!(
                "stopped the cluster in {} (supervisor pid {pid})",
                data.display()
            );
        }),
        Command::Reload { data, wait } => status::reload(&data, wait).map(|s| {
            println!("reloaded {} workers in {}", s.workers.len(), data.display());
            print!("{}", status::render_table(&s));
        }),
        Command::Check { data, repair } => check(&data, repair),
        Command::Bench(args) => bench::run(args),
        Command::Load(args) => bench::load::main(args),
        Command::BenchWorker(args) => bench::worker(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "shardkv: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs, log_format: String) -> shardkv::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    cluster::serve(ClusterOptions {
        data: args.data,
        host: args.host,
        port: args.port,
        workers: cluster::resolve_workers(args.workers, cpus),
        shard_by: args.shard_by,
        server: ServerConfig {
            header_read_timeout: args.header_timeout,
            request_timeout: args.request_timeout,
            drain_timeout: args.drain_timeout,
        },
        max_restarts: args.max_restarts.max(1),
        min_uptime: args.min_uptime,
        cache_bytes: args.cache_mb.max(1) << 20,
        log_format,
        liveness_timeout: args.liveness_timeout,
    })
}

fn check(data: &Path, repair: bool) -> shardkv::Result<()> {
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
            ShardHealth::Ok => "ok".to_owned(),
            ShardHealth::Repaired => "repaired".to_owned(),
            ShardHealth::NeedsRecovery => "needs recovery".to_owned(),
            ShardHealth::Corrupted(why) => format!("CORRUPTED: {why}"),
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
