//! A worker process: serves the HTTP app on the listening socket it inherited from the
//! supervisor, reports to the supervisor over stdout, and drains on SIGTERM, SIGINT, or the
//! end of its stdin (the supervisor died).
//!
//! Protocol on stdout, one line each: `ready` once it accepts; `stats {json}` about once a
//! second (a [`WorkerSnapshot`](crate::server::WorkerSnapshot)). Logs go to stderr.

use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use super::status::peers;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::server::{self, AppState, ServerConfig};
use crate::store::Store;

/// How a worker is started (the hidden `shardkv worker` subcommand).
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The inherited listening socket.
    pub listen_fd: RawFd,
    /// The data directory.
    pub data: PathBuf,
    /// Timeouts.
    pub server: ServerConfig,
    /// Page cache per shard handle, bytes.
    pub cache_bytes: usize,
    /// Async worker threads (1: a current-thread runtime).
    pub threads: usize,
    /// Which ticket service to serve.
    pub services: server::tickets::ServiceOptions,
}

/// Runs a worker until it has drained.
pub fn run(options: WorkerOptions) -> Result<()> {
    // Test builds only (feature `failpoints`): faults named in FAILPOINTS, for this process.
    #[cfg(feature = "failpoints")]
    let _faults = fail::FailScenario::setup();
    // Before the shard files are opened (a store may have up to 1024).
    server::raise_open_file_limit();
    let store = Store::builder()
        .cache_size(options.cache_bytes)
        .open(&options.data)?;
    // SAFETY: the supervisor passes a listening TCP socket it leaves open for us; nothing
    // else in this process owns the descriptor.
    let listener = unsafe { std::net::TcpListener::from_raw_fd(options.listen_fd) };
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("preparing the inherited socket", e))?;
    let data = options.data.clone();
    let state = AppState::in_cluster(
        Registry::new(store),
        &options.server,
        Arc::new(move || peers(&data)),
    );

    let runtime = runtime(options.threads)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Error::io("registering the inherited socket", e))?;
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| Error::io("SIGTERM handler", e))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| Error::io("SIGINT handler", e))?;
        let orphaned = supervisor_gone();

        let router = server::tickets::router(&options.services, state.clone())?;
        report("ready");
        let reporter = tokio::spawn(report_stats(state.clone()));
        #[cfg(feature = "failpoints")]
        crash_after_ready();

        let shutdown = async move {
            let why = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = orphaned => "supervisor gone",
            };
            tracing::info!(pid = std::process::id(), reason = why, "worker draining");
        };
        server::run_router(listener, state.clone(), router, options.server, shutdown)
            .await
            .map_err(|e| Error::io("serving", e))?;
        reporter.abort();
        // A last report, so that the cluster's totals include this worker's final requests.
        if let Ok(json) = serde_json::to_string(&state.snapshot()) {
            report(&format!("stats {json}"));
        }
        tracing::info!(pid = std::process::id(), "worker stopped");
        Ok(())
    });
    // A storage call stuck on the blocking pool (another process holding a shard's writer
    // lock, a hung disk) must not keep a drained worker alive.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The worker's runtime: `threads` async worker threads, or a current-thread runtime for one
/// (no work stealing, no cross-thread wake-ups: the request path stays on one thread). Storage
/// commits run on the shards' committer threads either way.
fn runtime(threads: usize) -> tokio::runtime::Builder {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
}

/// Async threads for each of `workers` worker processes on `cpus` CPUs (see
/// [`default_threads`]). `SHARDKV_WORKER_THREADS` overrides it (for measurements).
pub fn threads_per_worker(workers: usize, cpus: usize) -> usize {
    std::env::var(WORKER_THREADS)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| default_threads(workers, cpus))
        .max(1)
}

/// Each worker's share of the CPUs, less one, and at least one: the worker's other busy
/// threads (a shard's committer, which under writes keeps about half a CPU in the kernel's
/// sync path) need the one left. One worker on 2 CPUs served the durable counter about 12%
/// faster, at about 12% less CPU per request, with 1 async thread than with 2, and
/// `/healthz` no slower (`SHARDKV_WORKER_THREADS=1`, 3 alternating runs each); in the default
/// cluster (one worker per CPU) nothing changes.
pub fn default_threads(workers: usize, cpus: usize) -> usize {
    (cpus / workers.max(1)).saturating_sub(1).max(1)
}

/// Environment variable that sets each worker's async threads.
pub const WORKER_THREADS: &str = "SHARDKV_WORKER_THREADS";

/// Failpoint `worker-crash-after-ready`: `return(MS)` makes the worker exit with status 70
/// MS milliseconds after it reported ready, as a crashing worker would
/// (`FAILPOINTS=worker-crash-after-ready=return(20)`).
#[cfg(feature = "failpoints")]
fn crash_after_ready() {
    fail::fail_point!("worker-crash-after-ready", |ms: Option<String>| {
        let ms: u64 = ms.and_then(|ms| ms.parse().ok()).unwrap_or(0);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            let _ = writeln!(
                std::io::stderr(),
                "injected crash (failpoint worker-crash-after-ready, {ms} ms after ready)"
            );
            std::process::exit(70);
        });
    });
}

/// Resolves when stdin reaches end of file: the supervisor, which holds the other end, has
/// exited (even by SIGKILL, since the kernel closes its descriptors).
fn supervisor_gone() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 64];
        loop {
            match std::io::Read::read(&mut std::io::stdin(), &mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Writes one protocol line to the supervisor. A vanished supervisor is noticed through
/// stdin, so a failed write is ignored.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn report_stats(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let snapshot = state.snapshot();
        if let Ok(json) = serde_json::to_string(&snapshot) {
            // Blocking stdout write: off the async workers.
            let _ = tokio::task::spawn_blocking(move || report(&format!("stats {json}"))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_threads;

    #[test]
    fn each_worker_gets_its_share_of_cpus_less_one_and_at_least_one() {
        // (workers, cpus) -> async threads per worker
        for ((workers, cpus), threads) in [
            ((1, 1), 1),
            ((1, 2), 1),
            ((1, 4), 3),
            ((2, 2), 1),
            ((2, 8), 3),
            ((4, 2), 1),
            ((8, 8), 1),
            ((0, 4), 3),
        ] {
            assert_eq!(
                default_threads(workers, cpus),
                threads,
                "{workers} workers on {cpus} CPUs"
            );
        }
    }
}
