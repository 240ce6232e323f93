//! The cluster's status file and the commands that read it (`status`, `stop`, `reload`).
//!
//! The supervisor holds `CLUSTER.LOCK` (flock, exclusive) for as long as it serves a data
//! directory, and replaces `CLUSTER` (JSON) about once a second and after every change: its
//! pid, address, and every worker's state and latest snapshot. A `CLUSTER` file whose lock
//! is free is stale: no cluster runs there.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::running;
use crate::error::{Error, Result};
use crate::server::{Peers, WorkerSnapshot};
use crate::store::try_lock_file;

/// The status file's name inside the data directory.
pub const STATUS_FILE: &str = "CLUSTER";
/// The supervisor's lock file's name inside the data directory.
pub const SUPERVISOR_LOCK_FILE: &str = "CLUSTER.LOCK";

/// What the supervisor publishes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster's name (`serve --name`).
    #[serde(default)]
    pub name: String,
    /// Supervisor process id.
    pub supervisor_pid: u32,
    /// `running`, `reloading` or `stopping`.
    pub state: String,
    /// The address served, `host:port`.
    pub address: String,
    /// The data directory.
    #[serde(with = "any_path")]
    pub data: PathBuf,
    /// The routing scheme.
    pub scheme: String,
    /// The binary workers run.
    #[serde(with = "any_path")]
    pub binary: PathBuf,
    /// Supervisor start, Unix ms.
    pub started_unix_ms: u64,
    /// When this file was written, Unix ms.
    pub updated_unix_ms: u64,
    /// Rolling reloads completed.
    pub reloads: u64,
    /// Rolling reloads abandoned because a new worker failed to start.
    pub reload_failures: u64,
    /// Workers killed and replaced because they stopped reporting (`--liveness-timeout`).
    #[serde(default)]
    pub silent_kills: u64,
    /// The latest error the supervisor met, if any.
    pub last_error: Option<String>,
    /// One entry per worker process (during a reload, a slot may have two).
    pub workers: Vec<WorkerStatus>,
    /// The counters of every worker that has exited, summed (for totals that never go
    /// backwards).
    pub retired: Option<WorkerSnapshot>,
}

/// One worker process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Slot number, like PM2's id.
    pub id: usize,
    /// Process id.
    pub pid: u32,
    /// `starting`, `online` or `draining`.
    pub status: String,
    /// Start time, Unix ms.
    pub started_unix_ms: u64,
    /// Times this slot's worker was restarted after dying.
    pub restarts: u64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// The worker's latest self-report.
    pub snapshot: Option<WorkerSnapshot>,
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Prefix of the temporary files [`write_status`] renames into place.
const STATUS_TMP_PREFIX: &str = ".CLUSTER.tmp-";

/// Replaces `dir/CLUSTER`: readers see the old or the new file, never a torn one. Not
/// fsync'd: the file describes live processes and means nothing after a crash (a new
/// supervisor replaces it before anything reads it).
pub fn write_status(dir: &Path, status: &ClusterStatus) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(status)
        .map_err(|e| Error::InvalidInput(format!("the cluster status: {e}")))?;
    let tmp = dir.join(format!("{STATUS_TMP_PREFIX}{}", std::process::id()));
    let target = dir.join(STATUS_FILE);
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &target))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", target.display()), e)
        })
}

/// Removes the temporary status files that supervisors killed mid-write left behind. Called
/// by the one supervisor of `dir`, before its first status write.
pub fn remove_stale_status_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(STATUS_TMP_PREFIX))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Paths in the status and registry files: as text when they are UTF-8, else as their
/// bytes, so that any data directory round-trips (Unix paths need not be UTF-8).
pub(crate) mod any_path {
    use std::ffi::OsString;
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        match path.to_str() {
            Some(text) => s.serialize_str(text),
            None => s.collect_seq(path.as_os_str().as_bytes()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Text(text) => PathBuf::from(text),
            Repr::Bytes(bytes) => PathBuf::from(OsString::from_vec(bytes)),
        })
    }
}

/// Reads `dir/CLUSTER`, if present and parseable.
pub fn read_status(dir: &Path) -> Option<ClusterStatus> {
    let text = std::fs::read(dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Every worker's latest snapshot, with restart counts, and the exited workers' totals, for
/// `/stats` and `/metrics`.
pub fn peers(dir: &Path) -> Option<Peers> {
    let status = read_status(dir)?;
    let workers = status
        .workers
        .into_iter()
        .filter_map(|w| {
            w.snapshot.map(|mut snap| {
                snap.restarts = w.restarts;
                snap.slot = Some(w.id);
                snap.status = w.status;
                snap
            })
        })
        .collect();
    Some(Peers {
        workers,
        retired: status.retired.unwrap_or_default(),
    })
}

/// The supervisor's exclusive claim on a data directory. Dropping it releases the claim.
#[derive(Debug)]
pub struct SupervisorLock {
    _file: File,
}

impl SupervisorLock {
    /// Claims `dir` for this supervisor, or fails naming the one that has it.
    pub fn acquire(dir: &Path) -> Result<SupervisorLock> {
        let path = dir.join(SUPERVISOR_LOCK_FILE);
        // `status` and `stop` probe this lock shared for an instant: retry briefly so that a
        // probe is never mistaken for a running supervisor.
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut taken = try_lock_file(&path, true)?;
        while taken.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            taken = try_lock_file(&path, true)?;
        }
        match taken {
            Some(file) => Ok(SupervisorLock { _file: file }),
            None => {
                let who = read_status(dir)
                    .map(|s| {
                        format!(
                            " (supervisor pid {}, serving {})",
                            s.supervisor_pid, s.address
                        )
                    })
                    .unwrap_or_default();
                Err(Error::Locked(format!(
                    "another shardkv serve is already serving {}{who}; stop it first with `shardkv stop --data {}`",
                    dir.display(),
                    dir.display()
                )))
            }
        }
    }
}

/// Whether a supervisor holds `dir` right now. Needs only read access: the lock file is
/// opened read-only, so a user who may read but not write the directory can ask.
pub fn is_running(dir: &Path) -> Result<bool> {
    let path = dir.join(SUPERVISOR_LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(false),
        Err(std::fs::TryLockError::WouldBlock) => Ok(true),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", path.display()), e))
        }
    }
}

/// `dir` made absolute (without resolving symlinks if it does not exist), for messages.
pub fn absolute(dir: &Path) -> PathBuf {
    dir.canonicalize()
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

/// The running cluster's status, or a clear error when none runs in `dir`.
pub fn running_status(dir: &Path) -> Result<ClusterStatus> {
    let dir = &absolute(dir);
    if !is_running(dir)? {
        return Err(Error::NotFound(format!(
            "no shardkv cluster is running in {}; start one with `shardkv serve --data {}`",
            dir.display(),
            dir.display()
        )));
    }
    // The supervisor writes a status right after taking the lock; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = read_status(dir) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(Error::NotFound(format!(
                "a supervisor holds {} but has published no status",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `status`, `stop` and `reload` act on: `--data DIR`, or a positional name or data
/// directory, or, with neither, the one cluster this user runs.
pub fn resolve_target(target: Option<&str>, data: Option<&Path>) -> Result<PathBuf> {
    if let Some(data) = data {
        return Ok(absolute(data));
    }
    let running = running::list();
    let Some(target) = target else {
        return match running.as_slice() {
            [one] => Ok(one.data.clone()),
            [] => Err(Error::NotFound(
                "no shardkv cluster is running; start one with `shardkv serve --data DIR`".into(),
            )),
            many => Err(Error::InvalidInput(format!(
                "{} clusters are running ({}); say which, by name or data directory",
                many.len(),
                many.iter()
                    .map(|e| format!("{} in {}", e.name, e.data.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
            ))),
        };
    };
    if let Some(entry) = running.iter().find(|e| e.name == target) {
        return Ok(entry.data.clone());
    }
    let path = Path::new(target);
    if path.is_dir() {
        return Ok(absolute(path));
    }
    let names: Vec<&str> = running.iter().map(|e| e.name.as_str()).collect();
    Err(Error::NotFound(if names.is_empty() {
        format!(
            "no cluster is named {target:?} and no directory {} exists; no shardkv cluster is running",
            absolute(path).display()
        )
    } else {
        format!(
            "no cluster is named {target:?} and no directory {} exists; running: {}",
            absolute(path).display(),
            names.join(", ")
        )
    }))
}

/// `shardkv status` without a target: every running cluster of this user, like `pm2 list`.
pub fn render_list(entries: &[running::Entry]) -> String {
    if entries.is_empty() {
        return "no shardkv cluster is running; start one with `shardkv serve --data DIR`\n".into();
    }
    let now = unix_ms(SystemTime::now());
    let mut rows: Vec<Vec<String>> = vec![
        [
            "name", "pid", "status", "address", "workers", "uptime", "data",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for e in entries {
        let status = read_status(&e.data);
        let (state, workers) = match &status {
            Some(s) => (
                s.state.clone(),
                format!(
                    "{}/{}",
                    s.workers.iter().filter(|w| w.status == "online").count(),
                    s.workers.iter().map(|w| w.id).max().map_or(0, |m| m + 1)
                ),
            ),
            None => ("starting".into(), "-".into()),
        };
        rows.push(vec![
            e.name.clone(),
            e.supervisor_pid.to_string(),
            state,
            format!("http://{}", e.address),
            workers,
            human_duration(now.saturating_sub(e.started_unix_ms)),
            e.data.display().to_string(),
        ]);
    }
    let mut out = grid(&rows);
    out.push_str("workers: online/slots. One cluster's workers: shardkv status NAME\n");
    out
}

/// Rows as a table with a rule under the header, like `pm2 list`.
fn grid(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| "─".repeat(w + 2))
        .collect::<Vec<_>>()
        .join("┼");
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!(" {cell:<w$} "))
            .collect();
        out.push_str(cells.join("│").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&rule);
            out.push('\n');
        }
    }
    out
}

/// `shardkv status NAME`: one cluster's workers, like `pm2 list`.
pub fn render_table(status: &ClusterStatus) -> String {
    let now = unix_ms(SystemTime::now());
    let name = if status.name.is_empty() {
        String::new()
    } else {
        format!(" {}", status.name)
    };
    let mut out = format!(
        "shardkv cluster{name}: supervisor pid {}, {} on http://{}, data {}, {} ({} reload{})\n",
        status.supervisor_pid,
        status.state,
        status.address,
        status.data.display(),
        status.scheme,
        status.reloads,
        if status.reloads == 1 { "" } else { "s" }
    );
    if status.silent_kills > 0 {
        out.push_str(&format!(
            "{} worker{} killed and replaced for not reporting (--liveness-timeout)\n",
            status.silent_kills,
            if status.silent_kills == 1 { "" } else { "s" }
        ));
    }
    let header = [
        "id", "pid", "status", "uptime", "restarts", "requests", "memory",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.map(str::to_owned).to_vec()];
    for w in &status.workers {
        rows.push(vec![
            w.id.to_string(),
            w.pid.to_string(),
            w.status.clone(),
            human_duration(now.saturating_sub(w.started_unix_ms)),
            w.restarts.to_string(),
            w.snapshot
                .as_ref()
                .map_or("-".into(), |s| s.requests.to_string()),
            human_bytes(w.rss_bytes),
        ]);
    }
    out.push_str(&grid(&rows));
    out
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn human_bytes(b: u64) -> String {
    match b {
        0 => "-".into(),
        1..1_048_576 => format!("{:.1}kb", b as f64 / 1024.0),
        _ => format!("{:.1}mb", b as f64 / 1_048_576.0),
    }
}

/// Sends `signal` to the supervisor serving `dir`.
pub fn signal_supervisor(dir: &Path, signal: libc::c_int) -> Result<ClusterStatus> {
    let status = running_status(dir)?;
    let pid = libc::pid_t::try_from(status.supervisor_pid)
        .map_err(|_| Error::Corrupted("bad supervisor pid in CLUSTER".into()))?;
    // SAFETY: kill has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(Error::io(
            format!("signalling supervisor {pid}"),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(status)
}

/// `shardkv stop`: asks the supervisor to drain and waits until it has exited.
pub fn stop(dir: &Path, wait: Duration) -> Result<ClusterStatus> {
    let status = signal_supervisor(dir, libc::SIGTERM)?;
    let deadline = Instant::now() + wait;
    while is_running(dir)? {
        if Instant::now() > deadline {
            return Err(Error::Unavailable(format!(
                "supervisor {} is still draining after {} s; wait longer with `--wait`",
                status.supervisor_pid,
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(status)
}

/// `shardkv reload`: asks for a rolling reload and waits until it has completed.
pub fn reload(dir: &Path, wait: Duration) -> Result<ClusterStatus> {
    let before = signal_supervisor(dir, libc::SIGHUP)?;
    let deadline = Instant::now() + wait;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = running_status(dir)?;
        if now.reloads > before.reloads && now.state == "running" {
            return Ok(now);
        }
        if now.reload_failures > before.reload_failures {
            return Err(Error::Conflict(format!(
                "reload abandoned, the old workers keep serving: {}",
                now.last_error.unwrap_or_default()
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Unavailable(format!(
                "the reload of {} did not complete within {} s; wait longer with `--wait`",
                dir.display(),
                wait.as_secs()
            )));
        }
    }
}
