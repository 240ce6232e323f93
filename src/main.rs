//! The `shardkv` command line: parse arguments, set up logging, call the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

mod bench;

use clap::{Parser, Subcommand};
use shardkv::cluster::{self, ClusterOptions, status, worker};
use shardkv::server::ServerConfig;
use shardkv::server::tickets::{Service, ServiceOptions};
use shardkv::{ShardBy, Store};

const AFTER_HELP: &str = "\
Examples:
  shardkv serve                              # ./shards, 127.0.0.1:3000, one worker per CPU
  shardkv serve -i 4 --name dogs --shard-by alpha:a-m,n-z --data /tmp/dogs
  shardkv status                             # every running cluster, like pm2 list
  shardkv status dogs                        # one cluster's workers
  shardkv reload dogs                        # like pm2 reload: rolling, zero downtime
  shardkv stop dogs                          # a name or a data directory
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
    /// List every running cluster (like `pm2 list`), or one cluster's workers.
    Status(TargetArgs),
    /// Stop a running cluster gracefully: drain every worker, then exit (like `pm2 stop`).
    Stop {
        #[command(flatten)]
        target: TargetArgs,
        /// How long to wait for the cluster to exit.
        #[arg(long, default_value = "60s", value_parser = parse_duration)]
        wait: Duration,
    },
    /// Replace every worker, one at a time, without dropping a request (like `pm2 reload`).
    Reload {
        #[command(flatten)]
        target: TargetArgs,
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

/// Which cluster `status`, `stop` and `reload` act on.
#[derive(clap::Args)]
struct TargetArgs {
    /// A cluster's name (`serve --name`) or data directory. Without one: every running
    /// cluster for `status`, the only running one for `stop` and `reload`.
    #[arg(value_name = "NAME|DIR", conflicts_with = "data")]
    target: Option<String>,
    /// The data directory the cluster serves (same as giving it as NAME|DIR).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Data directory (created if missing). Defaults to shards, or shards-shows,
    /// shards-reservations, shards-api for a ticket service.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The name `status`, `stop` and `reload` know this cluster by (PM2's --name)
    /// [default: the data directory's name].
    #[arg(long)]
    name: Option<String>,
    /// Interface to bind. The default serves this machine only.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 lets the OS choose (the chosen one is printed). Defaults to the
    /// lesson's: 3000 (all, api), 3001 (shows), 3002 (reservations).
    #[arg(long)]
    port: Option<u16>,
    #[command(flatten)]
    services: ServiceArgs,
    /// Worker processes, as PM2's -i: N > 0 is exactly N, `max` or 0 is one per CPU, -K is
    /// CPUs - K (at least 1).
    #[arg(
        long,
        short = 'i',
        default_value = "max",
        allow_negative_numbers = true,
        value_parser = parse_workers
    )]
    workers: i64,
    /// Routing of a new store: alpha:a-m,n-z (ranges from a to z), alpha:g,n,t (split
    /// points) or hash:N. An existing store keeps its own; giving a different one is an
    /// error. New stores default to hash:8.
    #[arg(long, value_parser = parse_scheme)]
    shard_by: Option<ShardBy>,
    /// Longest time a request may take before it is answered 503 (more than 0).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    request_timeout: Duration,
    /// Longest time a client may take to send a request's headers (also the keep-alive idle
    /// limit; more than 0).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
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
    /// A bare number is milliseconds, as in PM2 (`1000` = `1s`).
    #[arg(long, default_value = "1s", value_parser = parse_pm2_duration)]
    min_uptime: Duration,
    /// Page cache of each shard file, per worker, in MiB.
    #[arg(long, default_value_t = 16)]
    cache_mb: usize,
    /// A worker that sends the supervisor no report (one a second) for this long is stopped
    /// or deadlocked: it is killed and replaced.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    liveness_timeout: Duration,
}

/// The ticket system's services (`shardkv serve --service`).
#[derive(clap::Args)]
struct ServiceArgs {
    /// What to serve: all (counter, dogs, and the ticket monolith under /tickets), or one
    /// ticket service as its own cluster: shows, reservations, or api.
    #[arg(long, default_value = "all", value_parser = parse_service)]
    service: Service,
    /// The api's shows service.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    shows_url: String,
    /// The api's reservations service.
    #[arg(long, default_value = "http://127.0.0.1:3002")]
    reservations_url: String,
    /// How long the api holds seats for a booking in flight; a hold left by a failure is
    /// settled after it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    hold_ttl: Duration,
}

impl ServiceArgs {
    fn options(self) -> ServiceOptions {
        ServiceOptions {
            service: self.service,
            shows_url: self.shows_url,
            reservations_url: self.reservations_url,
            hold_ttl: self.hold_ttl,
        }
    }
}

fn parse_service(s: &str) -> Result<Service, String> {
    s.parse().map_err(|e: shardkv::Error| e.to_string())
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
    #[arg(long, default_value_t = 1)]
    threads: usize,
    #[command(flatten)]
    services: ServiceArgs,
}

/// A routing spec, refusing alphabetical ranges that do not run from `a` to `z`: the store
/// would silently widen the first and last to cover every key.
fn parse_scheme(s: &str) -> Result<ShardBy, String> {
    let scheme: ShardBy = s.parse().map_err(|e: shardkv::Error| user_message(&e))?;
    let Some(("alpha" | "alphabetical", body)) = s
        .trim()
        .split_once(':')
        .map(|(kind, body)| (kind.trim(), body))
    else {
        return Ok(scheme);
    };
    let ranges: Vec<&str> = body.split(',').map(str::trim).collect();
    if !ranges.iter().any(|r| r.contains('-')) {
        return Ok(scheme);
    }
    let lowest = ranges[0]
        .split('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let highest = ranges[ranges.len() - 1]
        .rsplit('-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if lowest.as_str() > "a" || highest.as_str() < "z" {
        return Err(format!(
            "the ranges of {s} run from {lowest} to {highest}, but every key needs a shard: \
             keys before {lowest} would go to the first range and keys after {highest} to the \
             last. Give ranges from a to z, like alpha:a-m,n-z (or split points, like alpha:n)"
        ));
    }
    Ok(scheme)
}

/// PM2's -i: a count, `max` (one per CPU, as 0), or -K (CPUs minus K).
fn parse_workers(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("max") {
        return Ok(0);
    }
    s.parse().map_err(|_| {
        format!("{s:?} is not a worker count: give N, max (one per CPU) or -K (CPUs minus K)")
    })
}

/// `250ms`, `10s`, `5m`, `1h`; `bare` is the scale of a number without a unit, if one is
/// allowed.
fn duration_with(s: &str, bare: Option<f64>) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        match bare {
            Some(scale) => (s, scale),
            // Zero is zero in any unit.
            None if s.parse::<f64>() == Ok(0.0) => (s, 1.0),
            None if s.parse::<f64>().is_ok() => {
                return Err(format!("{s} needs a unit: {s}s, {s}ms or {s}m"));
            }
            None => return Err(format!("{s:?} is not a duration like 500ms, 10s or 2m")),
        }
    };
    match number.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v * scale < 1e9 => {
            Ok(Duration::from_secs_f64(v * scale))
        }
        _ => Err(format!("{s:?} is not a duration like 500ms, 10s or 2m")),
    }
}

/// `250ms`, `10s`, `5m`, `1h`; a bare number is refused as ambiguous.
fn parse_duration(s: &str) -> Result<Duration, String> {
    duration_with(s, None)
}

/// Like [`parse_duration`], refusing zero (which would time out every request).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than 0 (0 would time out every request)".into());
    }
    Ok(d)
}

/// A PM2 duration: units as [`parse_duration`], and a bare number is milliseconds.
fn parse_pm2_duration(s: &str) -> Result<Duration, String> {
    duration_with(s, Some(0.001))
}

/// An error as the CLI says it: the sentence without the library's category prefix, in terms
/// of flags and commands where the library speaks of calls.
fn user_message(e: &shardkv::Error) -> String {
    use shardkv::Error;
    match e {
        Error::InvalidInput(m)
        | Error::NotFound(m)
        | Error::Conflict(m)
        | Error::Locked(m)
        | Error::Corrupted(m) => m.clone(),
        Error::SchemeMismatch {
            dir,
            stored,
            requested,
        } => format!(
            "the store in {} is sharded by {stored}, not {requested}; drop `--shard-by` or use \
             `--shard-by {stored}`",
            dir.display()
        ),
        other => other.to_string(),
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
    // One log line per panic instead of a backtrace note: the store contains panics inside
    // redb (a damaged file) and reports them as errors naming the file.
    std::panic::set_hook(Box::new(|info| {
        let what = (info.payload().downcast_ref::<&str>().copied())
            .or(info.payload().downcast_ref::<String>().map(String::as_str));
        tracing::error!(at = ?info.location(), "internal failure: {}", what.unwrap_or("?"));
    }));
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
            threads: args.threads,
            services: args.services.options(),
        }),
        Command::Status(target) => status_command(&target),
        Command::Stop { target, wait } => resolve(&target).and_then(|data| {
            let status = status::stop(&data, wait)?;
            println!(
                "stopped {} in {} (supervisor pid {})",
                cluster_name(&status),
                data.display(),
                status.supervisor_pid
            );
            Ok(())
        }),
        Command::Reload { target, wait } => resolve(&target).and_then(|data| {
            let s = status::reload(&data, wait)?;
            println!(
                "reloaded {} worker{} of {} in {}",
                s.workers.len(),
                if s.workers.len() == 1 { "" } else { "s" },
                cluster_name(&s),
                data.display()
            );
            print!("{}", status::render_table(&s));
            Ok(())
        }),
        Command::Check { data, repair } => check(&data, repair),
        Command::Bench(args) => bench::run(args),
        Command::Load(args) => bench::load::main(args),
        Command::BenchWorker(args) => bench::worker(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "shardkv: {}", user_message(&e));
            ExitCode::FAILURE
        }
    }
}

fn resolve(target: &TargetArgs) -> shardkv::Result<PathBuf> {
    status::resolve_target(target.target.as_deref(), target.data.as_deref())
}

fn cluster_name(status: &status::ClusterStatus) -> String {
    if status.name.is_empty() {
        "the cluster".into()
    } else {
        format!("cluster {}", status.name)
    }
}

/// `shardkv status`: every running cluster, or with a target, that cluster's workers.
fn status_command(target: &TargetArgs) -> shardkv::Result<()> {
    if target.target.is_none() && target.data.is_none() {
        print!("{}", status::render_list(&cluster::running::list()));
        return Ok(());
    }
    let data = resolve(target)?;
    print!("{}", status::render_table(&status::running_status(&data)?));
    Ok(())
}

fn serve(args: ServeArgs, log_format: String) -> shardkv::Result<()> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let service = args.services.service;
    cluster::serve(ClusterOptions {
        data: args
            .data
            .unwrap_or_else(|| PathBuf::from(service.default_data())),
        name: args.name,
        host: args.host,
        port: args.port.unwrap_or(service.default_port()),
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
        services: args.services.options(),
        liveness_timeout: args.liveness_timeout,
    })
}

fn check(data: &Path, repair: bool) -> shardkv::Result<()> {
    let data = &status::absolute(data);
    let report = if repair {
        Store::repair(data)
    } else {
        Store::check(data)
    }
    .map_err(|e| match e {
        shardkv::Error::NotFound(_) => shardkv::Error::NotFound(format!(
            "there is no store in {} (no MANIFEST); `shardkv serve --data {}` creates one",
            data.display(),
            data.display()
        )),
        other => other,
    })?;
    print!("{}", report.render(data, repair));
    if report.is_healthy() {
        Ok(())
    } else {
        Err(shardkv::Error::Corrupted(
            "the store has problems; see above".into(),
        ))
    }
}
