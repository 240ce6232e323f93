//! Both ends of one configuration: the parent that creates the store, starts the worker
//! processes together, times them and checks the end state, and the worker process itself.
//!
//! The protocol, one line at a time:
//!
//! ```text
//! parent                                  worker i (shardkv bench-worker)
//!   create store, spawn P workers  ───►    open store with the commit mode
//!                                  ◄───    "ready"
//!   all ready: start clock, "go"   ───►    run T threads until go + seconds
//!                                  ◄───    one JSON line: WorkerReport
//!   last exit: stop clock                  exit 0
//!   reopen store, verify
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::workload::{self, Mode, WorkerReport, Workload};
use shardkv::ShardBy;
use shardkv::ShardStats;
use shardkv::Store;
use shardkv::{Error, Result};

/// How long workers may take to open the store and say `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long past its run time a worker may take to report.
const REPORT_GRACE: Duration = Duration::from_secs(60);

/// One point of the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// The write pattern.
    pub workload: Workload,
    /// Shards of the store (`hash:N`).
    pub shards: usize,
    /// Worker processes.
    pub procs: usize,
    /// Threads per worker process.
    pub threads: usize,
    /// Commit mode of every worker.
    pub mode: Mode,
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} shards={} procs={} threads={} {}",
            self.workload, self.shards, self.procs, self.threads, self.mode
        )
    }
}

/// What one configuration measured. Only built for a run whose end state verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// The configuration.
    pub config: Config,
    /// Operations acknowledged by all threads of all processes.
    pub ops: u64,
    /// Wall time from `go` to the last worker's exit.
    pub seconds: f64,
    /// Store counters summed over all processes and shards (commits, writes, writer-lock
    /// wait, the largest group).
    pub store: ShardStats,
}

impl Measured {
    /// Acknowledged operations per second.
    pub fn ops_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Writes per transaction.
    pub fn mean_group(&self) -> f64 {
        ratio(self.store.writes, self.store.commits)
    }

    /// Microseconds waited for the writer lock per transaction.
    pub fn lock_wait_per_commit_us(&self) -> f64 {
        ratio(self.store.lock_wait_us, self.store.commits)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Kills and reaps every worker still running when dropped, so a failed run leaves no
/// process behind.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

enum Line {
    Text(String),
    Closed,
}

/// Runs one configuration in `dir` (which must not hold a store yet) with workers started
/// from `exe`, verifies the end state, and returns the measurements.
pub fn measure(
    exe: &Path,
    dir: &Path,
    config: &Config,
    run_for: Duration,
    seed: u64,
) -> Result<Measured> {
    drop(Store::shard_by(ShardBy::hash(config.shards)?).open(dir)?);
    // Write back what earlier work left dirty (the previous store's deletion, a build), so
    // the file system does not flush it during this configuration's fsyncs and charge it here.
    #[cfg(unix)]
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe {
        libc::sync()
    };

    let mut workers = Workers(Vec::with_capacity(config.procs));
    let mut stdins: Vec<ChildStdin> = Vec::with_capacity(config.procs);
    let (lines_tx, lines) = mpsc::channel::<(usize, Line)>();
    for proc_id in 0..config.procs {
        let mut child = Command::new(exe)
            .arg("bench-worker")
            .arg("--data")
            .arg(dir)
            .args(["--workload", &config.workload.to_string()])
            .args(["--mode", &config.mode.to_string()])
            .args(["--threads", &config.threads.to_string()])
            .args(["--seconds", &run_for.as_secs_f64().to_string()])
            .args(["--proc", &proc_id.to_string()])
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", exe.display()), e))?;
        stdins.extend(child.stdin.take());
        let stdout = child.stdout.take();
        workers.0.push(child);
        let tx = lines_tx.clone();
        // Reading on a thread lets the parent wait with a timeout; the thread ends when the
        // worker's stdout closes, which killing it guarantees.
        std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send((proc_id, Line::Text(line))).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send((proc_id, Line::Closed));
        });
    }
    drop(lines_tx);

    let next_line = |deadline: Instant, waiting_for: &str| -> Result<(usize, Line)> {
        let left = deadline.saturating_duration_since(Instant::now());
        lines.recv_timeout(left).map_err(|_| {
            Error::io(
                "running the benchmark",
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("timed out waiting for workers to {waiting_for}"),
                ),
            )
        })
    };
    let worker_failed = |proc_id: usize, what: &str| {
        Error::io(
            "running the benchmark",
            std::io::Error::other(format!("worker {proc_id} {what} (its stderr is above)")),
        )
    };

    let ready_by = Instant::now() + READY_TIMEOUT;
    let mut ready = 0;
    while ready < config.procs {
        match next_line(ready_by, "open the store")? {
            (_, Line::Text(l)) if l == "ready" => ready += 1,
            (p, Line::Text(l)) => return Err(worker_failed(p, &format!("said {l:?}"))),
            (p, Line::Closed) => return Err(worker_failed(p, "exited before it was ready")),
        }
    }

    let started = Instant::now();
    for stdin in &mut stdins {
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| Error::io("telling workers to go", e))?;
    }
    drop(stdins);

    let report_by = started + run_for + REPORT_GRACE;
    let mut reports: Vec<Option<WorkerReport>> = vec![None; config.procs];
    let mut closed = 0;
    while closed < config.procs {
        match next_line(report_by, "report")? {
            (p, Line::Text(l)) => {
                let report: WorkerReport = serde_json::from_str(&l)
                    .map_err(|_| worker_failed(p, &format!("said {l:?}")))?;
                if report.proc_id != p || report.threads.len() != config.threads {
                    return Err(worker_failed(p, "sent a report that is not its own"));
                }
                reports[p] = Some(report);
            }
            (p, Line::Closed) if reports[p].is_none() => {
                return Err(worker_failed(p, "exited without a report"));
            }
            (_, Line::Closed) => closed += 1,
        }
    }
    for (p, child) in workers.0.iter_mut().enumerate() {
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("waiting for worker {p}"), e))?;
        if !status.success() {
            return Err(worker_failed(p, &format!("failed ({status})")));
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let reports: Vec<WorkerReport> = reports.into_iter().flatten().collect();

    let store = Store::open(dir)?;
    workload::verify(&store, config.workload, &reports)?;
    let ops: u64 = reports.iter().map(WorkerReport::ops).sum();
    if ops == 0 {
        return Err(Error::InvalidInput(format!(
            "{config}: no operation completed in {:.2} s, so nothing was measured; run longer",
            run_for.as_secs_f64()
        )));
    }
    let mut store = ShardStats::default();
    for r in &reports {
        store += &r.store;
    }
    Ok(Measured {
        config: *config,
        ops,
        seconds,
        store,
    })
}

/// The arguments of one worker process.
pub struct WorkerSpec {
    /// The store, created by the parent.
    pub data: PathBuf,
    /// The write pattern.
    pub workload: Workload,
    /// Commit mode.
    pub mode: Mode,
    /// Threads to run.
    pub threads: usize,
    /// How long to run after `go`.
    pub run_for: Duration,
    /// This worker's number.
    pub proc_id: usize,
    /// The sweep's seed.
    pub seed: u64,
}

/// The worker process: opens the store, says `ready`, waits for `go`, runs its threads, and
/// prints its report as one JSON line.
pub fn work(spec: &WorkerSpec) -> Result<()> {
    let store = Store::builder()
        .commit_mode(spec.mode.commit_mode())
        .open(&spec.data)?;
    let mut out = std::io::stdout().lock();
    let say = |out: &mut std::io::StdoutLock<'_>, line: &str| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("writing to the parent", e))
    };
    say(&mut out, "ready")?;
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| Error::io("reading from the parent", e))?;
    if line.trim() != "go" {
        return Err(Error::InvalidInput(format!(
            "expected \"go\" from the parent, got {:?}",
            line.trim()
        )));
    }
    let deadline = Instant::now() + spec.run_for;
    let stop = AtomicBool::new(false);
    let tallies = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let (store, stop) = (&store, &stop);
                s.spawn(move || {
                    workload::run_thread(
                        store,
                        spec.workload,
                        spec.proc_id,
                        t,
                        spec.seed,
                        deadline,
                        stop,
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(thread_panicked())))
            .collect::<Result<Vec<_>>>()
    })?;
    let report = WorkerReport::new(spec.proc_id, tallies, &store.stats());
    let json = serde_json::to_string(&report)
        .map_err(|e| Error::io("encoding the report", std::io::Error::other(e)))?;
    say(&mut out, &json)
}

fn thread_panicked() -> Error {
    Error::io(
        "benchmark thread",
        std::io::Error::other("a benchmark thread panicked"),
    )
}
