//! Cluster mode: one supervisor, N worker processes, one listening socket.
//!
//! ```text
//!                      shardkv serve (supervisor)
//!   CLUSTER.LOCK ◄──── holds; opens the store first; binds 127.0.0.1:3000 once
//!   CLUSTER      ◄──── rewrites every second: workers, pids, snapshots
//!                 │ fork/exec the same binary, listening fd inherited
//!        ┌────────┼────────┐
//!     worker 0  worker 1  worker N-1     each accepts from the one socket;
//!     stdin ◄── pipe from supervisor     EOF = supervisor gone: drain, exit
//!     stdout ─► "ready", "stats {json}"
//!     stderr ─► logs, forwarded; last line kept for crash reports
//! ```
//!
//! # Contracts
//!
//! - **One socket.** The supervisor binds once and every worker accepts from it, so a
//!   worker's death drops no connection still waiting in the accept queue.
//! - **Restart policy** (after PM2): a worker that exits unexpectedly is restarted after a
//!   per-slot delay that starts at 100 ms and grows ×1.5 to at most 15 s, reset once a worker
//!   stays up 30 s. `max_restarts` consecutive deaths, each within `min_uptime` of starting,
//!   stop the cluster with an error naming the worker's last stderr line; a worker that dies
//!   before any worker was ever ready stops it at once.
//! - **Signals.** SIGTERM / SIGINT (`shardkv stop`): workers stop accepting, finish in-flight
//!   requests for up to the drain timeout, exit; the supervisor exits 0 once all are gone.
//!   A second signal kills them at once. SIGHUP (`shardkv reload`): rolling reload, one slot
//!   at a time: the new worker (from the binary path recorded at start) is ready before the
//!   old one drains. Workers run in their own process group, so a terminal's Ctrl-C reaches
//!   the supervisor alone and becomes an orderly shutdown, never a crash.
//! - **Orphans never serve.** A worker whose supervisor dies (even by SIGKILL) sees its
//!   stdin close, drains, and exits.
pub mod running;
pub mod status;
mod supervisor;
pub mod worker;

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};

use crate::error::{Error, Result};
use crate::server::ServerConfig;
use crate::shard_by::ShardBy;
use crate::store::Store;
use status::{ClusterStatus, SupervisorLock, unix_ms};
use supervisor::Supervisor;

/// How `shardkv serve` runs.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Data directory.
    pub data: PathBuf,
    /// The name `status`, `stop` and `reload` know the cluster by; `None` takes the data
    /// directory's name (suffixed `-2`, `-3`... if a running cluster has it).
    pub name: Option<String>,
    /// Interface to bind.
    pub host: String,
    /// Port to bind (0: the OS chooses).
    pub port: u16,
    /// Workers, after [`resolve_workers`].
    pub workers: usize,
    /// The scheme asked for; `None` keeps an existing store's and makes new ones `hash:8`.
    pub shard_by: Option<ShardBy>,
    /// Worker timeouts.
    pub server: ServerConfig,
    /// Consecutive quick deaths of one slot that stop the cluster.
    pub max_restarts: u32,
    /// A death sooner than this after starting counts toward `max_restarts`.
    pub min_uptime: Duration,
    /// Page cache per shard handle, bytes.
    pub cache_bytes: usize,
    /// `text` or `json`, for the workers' logs too.
    pub log_format: String,
    /// Which ticket service the workers serve (and where the api finds the others).
    pub services: crate::server::tickets::ServiceOptions,
    /// A ready worker that sends no report (one a second) for this long is killed and
    /// replaced.
    pub liveness_timeout: Duration,
}

/// The default of [`ClusterOptions::liveness_timeout`].
pub const DEFAULT_LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest liveness timeout: two report intervals.
pub const MIN_LIVENESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The most workers per CPU `serve` starts: beyond this, more processes only add memory and
/// contention for the same cores and shard locks.
pub const MAX_WORKERS_PER_CPU: usize = 4;

/// Caps `workers` at [`MAX_WORKERS_PER_CPU`] per CPU. Returns the count to start and, if it
/// was capped, a message saying so.
pub fn cap_workers(workers: usize, cpus: usize) -> (usize, Option<String>) {
    let max = MAX_WORKERS_PER_CPU * cpus.max(1);
    if workers <= max {
        return (workers, None);
    }
    let message = format!(
        "--workers {workers} is more than {MAX_WORKERS_PER_CPU} per CPU on this machine \
         ({cpus} CPUs): starting {max} workers"
    );
    (max, Some(message))
}

/// The scheme of a new store when `--shard-by` is not given.
pub const DEFAULT_SCHEME: &str = "hash:8";

/// PM2's `-i` convention: `n > 0` is exactly `n`; `0` is one per CPU; `-k` is CPUs minus
/// `k`, at least 1.
pub fn resolve_workers(n: i64, cpus: usize) -> usize {
    match n {
        1.. => usize::try_from(n).unwrap_or(usize::MAX),
        0 => cpus.max(1),
        _ => {
            let k = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
            cpus.saturating_sub(k).max(1)
        }
    }
}

/// Opens (or creates) the store the way `serve` does: an explicit scheme must match an
/// existing store; without one, an existing store keeps its scheme and a new one gets
/// [`DEFAULT_SCHEME`].
pub fn open_store(data: &Path, shard_by: Option<&ShardBy>, cache_bytes: usize) -> Result<Store> {
    let with = |scheme: ShardBy| Store::shard_by(scheme).cache_size(cache_bytes).open(data);
    match shard_by {
        Some(scheme) => with(scheme.clone()),
        None => match Store::builder().cache_size(cache_bytes).open(data) {
            Err(Error::NotFound(_)) => with(DEFAULT_SCHEME.parse()?),
            opened => opened,
        },
    }
}

/// Runs a cluster until it is stopped. Returns an error if it could not start or gave up on
/// a crashing worker.
pub fn serve(mut options: ClusterOptions) -> Result<()> {
    if let Some(name) = &options.name {
        running::check_name(name)?;
    }
    options.services.validate()?;
    // Before any file is opened: the workers inherit the raised limit.
    crate::server::raise_open_file_limit();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let (workers, capped) = cap_workers(options.workers, cpus);
    if let Some(message) = capped {
        tracing::warn!("{message}");
    }
    options.workers = workers.max(1);
    // Workers report once a second: a shorter limit would kill healthy ones.
    if options.liveness_timeout < MIN_LIVENESS_TIMEOUT {
        tracing::warn!(
            "a liveness timeout of {:?} is under the {MIN_LIVENESS_TIMEOUT:?} minimum; using that",
            options.liveness_timeout
        );
        options.liveness_timeout = MIN_LIVENESS_TIMEOUT;
    }
    if let Ok(meta) = std::fs::metadata(&options.data)
        && !meta.is_dir()
    {
        return Err(Error::InvalidInput(format!(
            "data directory {} is a file, not a directory",
            status::absolute(&options.data).display()
        )));
    }
    // First: a busy port must fail before anything is created on disk.
    let listener = bind(&options.host, options.port)?;
    crate::store::create_dir_durably(&options.data)?;
    let data = options
        .data
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", options.data.display()), e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let runtime_context = runtime.enter();
    // Before anything slow: where the default action of SIGHUP would kill the supervisor,
    // a reload sent while it starts is ignored, and a stop is obeyed.
    let mut signals = vec![
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::hangup(), "SIGHUP"),
    ]
    .into_iter()
    .map(|(kind, name)| {
        signal(kind)
            .map(|stream| (stream, name))
            .map_err(|e| Error::io(format!("{name} handler"), e))
    })
    .collect::<Result<Vec<_>>>()?;
    let _claim = SupervisorLock::acquire(&data)?;
    status::remove_stale_status_files(&data);
    let address = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    let started = SystemTime::now();
    // Listed by `shardkv status` from anywhere until this function returns. A name asked
    // for and taken is an error; an unusable runtime directory only costs the listing.
    let entry = running::Entry {
        name: options
            .name
            .clone()
            .unwrap_or_else(|| running::default_name(&data)),
        data: data.clone(),
        supervisor_pid: std::process::id(),
        address: address.to_string(),
        started_unix_ms: unix_ms(started),
    };
    let (_registration, entry) = match running::register(entry.clone(), options.name.is_some()) {
        Ok((registration, entry)) => (Some(registration), entry),
        Err(e @ Error::Conflict(_)) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "not listed for `shardkv status` (use --data to find it)");
            (None, entry)
        }
    };
    options.name = Some(entry.name.clone());
    // Gone when this function returns, however it returns: no status outlives its supervisor.
    let _status_file = RemoveOnDrop(data.join(status::STATUS_FILE));
    // Replaces a dead supervisor's status at once, so that status, stop and reload never
    // act on its pid. Serving never needs the file: on a full disk it goes on without it,
    // removing the dead one's (removal needs no space).
    if let Err(e) = status::write_status(
        &data,
        &ClusterStatus {
            name: entry.name.clone(),
            supervisor_pid: std::process::id(),
            state: "starting".into(),
            address: address.to_string(),
            data: data.clone(),
            started_unix_ms: unix_ms(started),
            updated_unix_ms: unix_ms(SystemTime::now()),
            ..ClusterStatus::default()
        },
    ) {
        tracing::warn!(error = %e, "could not write the status file; serving without it");
        let _ = std::fs::remove_file(data.join(status::STATUS_FILE));
    }
    // Opened here, before any worker: a bad directory or scheme fails now, and workers never
    // race to create the store. Held open while serving, which also keeps repairs away. The
    // open may be long (a wait for maintenance, a recovery), so it runs on its own thread
    // while this one listens for a stop.
    let opening = {
        let (data, shard_by, cache) = (data.clone(), options.shard_by.clone(), options.cache_bytes);
        runtime.spawn_blocking(move || open_store(&data, shard_by.as_ref(), cache))
    };
    let opened = runtime.block_on(async {
        tokio::pin!(opening);
        loop {
            let [(term, _), (int, _), (hup, _)] = &mut signals[..] else {
                unreachable!("three signal streams");
            };
            tokio::select! {
                opened = &mut opening => return Some(opened),
                _ = term.recv() => return None,
                _ = int.recv() => return None,
                _ = hup.recv() => tracing::info!("reload ignored: the cluster is still starting"),
            }
        }
    });
    let store = match opened {
        None => {
            tracing::info!("stopped before serving");
            // Without waiting for the open: a process exit is as safe for redb as a crash.
            drop(runtime_context);
            runtime.shutdown_background();
            return Ok(());
        }
        Some(Err(e)) => return Err(Error::io("opening the store", std::io::Error::other(e))),
        Some(Ok(store)) => store?,
    };
    // The one path every worker is started from, even after the file is rebuilt in place.
    let binary = std::env::current_exe().map_err(|e| Error::io("finding the shardkv binary", e))?;
    tracing::info!(
        name = %entry.name,
        pid = std::process::id(),
        %address,
        workers = options.workers,
        scheme = %store.scheme(),
        data = %data.display(),
        "supervisor starting"
    );
    let scheme = store.scheme().to_string();
    let result = runtime.block_on(async {
        let mut supervisor = Supervisor::new(
            options,
            data.clone(),
            binary,
            &listener,
            address.to_string(),
            scheme,
        );
        supervisor.run(signals).await
    });
    drop(listener);
    drop(store);
    result
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn bind(host: &str, port: u16) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind((host, port)).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (the port is in use; pick another with --port, or 0 for any)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            _ => "",
        };
        Error::io(format!("binding {host}:{port}{hint}"), e)
    })?;
    let fd = listener.as_raw_fd();
    // SAFETY: fd is a valid socket owned by `listener`; these calls have no memory effects.
    unsafe {
        // std listens with a backlog of 128; a burst of clients wants more.
        libc::listen(fd, 1024);
        // Inherited by the workers (std opens every descriptor close-on-exec).
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(Error::io(
                "sharing the listening socket",
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_are_capped_at_a_multiple_of_the_cpus_with_a_message() {
        assert_eq!(cap_workers(8, 2), (8, None));
        let (n, message) = cap_workers(100_000, 2);
        assert_eq!(n, 2 * MAX_WORKERS_PER_CPU);
        let message = message.unwrap();
        assert!(
            message.contains("100000") && message.contains("2 CPUs"),
            "{message}"
        );
        assert_eq!(cap_workers(999_999_999_999, 16).0, 16 * MAX_WORKERS_PER_CPU);
    }

    #[test]
    fn workers_follow_pm2() {
        assert_eq!(resolve_workers(4, 2), 4);
        assert_eq!(resolve_workers(0, 8), 8);
        assert_eq!(resolve_workers(-1, 8), 7);
        assert_eq!(resolve_workers(-1, 1), 1);
        assert_eq!(resolve_workers(-100, 8), 1);
        assert_eq!(resolve_workers(i64::MIN, 8), 1);
    }
}
