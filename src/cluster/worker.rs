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

/// A testing hook: a worker started with this variable set exits with status 70 this many
/// milliseconds after it is ready, as a crashing worker would.
pub const FAULT_CRASH_AFTER_MS: &str = "SHARDKV_FAULT_CRASH_AFTER_MS";

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
}

/// Runs a worker until it has drained.
pub fn run(options: WorkerOptions) -> Result<()> {
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

    let runtime = tokio::runtime::Builder::new_multi_thread()
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

        report("ready");
        let reporter = tokio::spawn(report_stats(state.clone()));
        if let Some(ms) = std::env::var(FAULT_CRASH_AFTER_MS)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = writeln!(
                    std::io::stderr(),
                    "injected crash ({FAULT_CRASH_AFTER_MS}={ms})"
                );
                std::process::exit(70);
            });
        }

        let shutdown = async move {
            let why = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = orphaned => "supervisor gone",
            };
            tracing::info!(pid = std::process::id(), reason = why, "worker draining");
        };
        server::run(listener, state.clone(), options.server, shutdown)
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
