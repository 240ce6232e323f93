//! Contention benchmarks: real processes writing real shard files at once.
//!
//! `shardkv bench` sweeps configurations — workload x shard count x worker processes x
//! threads per process x commit mode — and for each one:
//!
//! 1. creates a fresh store (`hash:N`) in its own scratch directory;
//! 2. starts P `shardkv bench-worker` processes, each opening the store with the commit mode
//!    and reporting `ready`; once all are ready it says `go` to all of them, so they start
//!    together, and starts the clock;
//! 3. each worker runs T threads until its time is up, then prints what its threads were
//!    told succeeded (operations acknowledged per thread) and its store counters (commits,
//!    writes, writer-lock wait, summed over shards);
//! 4. stops the clock when the last worker exits: ops/s is acknowledged operations over that
//!    wall time;
//! 5. **checks the end state** against the acknowledgements and fails the run loudly if it
//!    differs: the `hot` counter equals the acknowledged increments; each `striped` counter
//!    equals the increments acknowledged for it (so their sum equals the total); the
//!    `inserts` keys are exactly the acknowledged ones, each with its value. Each worker's
//!    own write counter must also equal its acknowledged operations.
//!
//! Workloads: `hot` increments one key (every writer on one shard, one key); `striped`
//! increments one of 64 keys picked by a seeded RNG (writes spread over shards); `inserts`
//! inserts unique keys with ~100-byte values. Every acknowledged write is durable (fsync'd),
//! so the numbers price durability, not just CPU; on tmpfs they would not, and the run says so.
//!
//! `shardkv load` ([`load`]) is the HTTP side: it drives a running server like
//! `loadtest -n -c` and checks the counter's answers.
//!
//! Results go to stdout as a markdown table and ratio tables (configurations compared within
//! one run), and to `contention.csv` and `contention.svg` in the output directory. Any
//! worker still running when a run fails is killed.

pub mod http;
pub mod load;
mod plot;
mod process;
mod report;
mod workload;

use std::collections::HashSet;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use plot::svg;
pub use process::{Config, Measured};
pub use report::{csv, ratios, table};
pub use workload::{Mode, Workload};

use shardkv::shard_by::MAX_SHARDS;
use shardkv::{Error, Result};

/// The most worker processes one configuration may start.
pub const MAX_PROCS: usize = 256;
/// The most threads one worker may run.
pub const MAX_THREADS: usize = 256;
/// The longest run of one configuration, in seconds.
pub const MAX_SECONDS: f64 = 3600.0;

/// Arguments of `shardkv bench`. Every list flag takes comma-separated values; the sweep is
/// their product.
#[derive(Clone, Debug, clap::Args)]
#[command(after_long_help = AFTER_HELP)]
pub struct BenchArgs {
    /// Workloads to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "hot,striped,inserts"
    )]
    pub workloads: Vec<Workload>,
    /// Shard counts; each store is created as hash:N (1 to 1024).
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = parse_shards)]
    pub shards: Vec<usize>,
    /// Worker process counts (1 to 256).
    #[arg(long, value_delimiter = ',', default_value = "8", value_parser = parse_procs)]
    pub procs: Vec<usize>,
    /// Threads per worker process (1 to 256).
    #[arg(long, value_delimiter = ',', default_value = "1,8", value_parser = parse_threads)]
    pub threads: Vec<usize>,
    /// Commit modes to compare.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "per-write,group"
    )]
    pub modes: Vec<Mode>,
    /// How long each configuration runs, in seconds (fractions allowed).
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    pub seconds: f64,
    /// Where contention.csv and contention.svg are written (created if missing)
    /// [default: a new directory under the system temp dir, printed; committed results are
    /// only ever rewritten by naming them, as in `--out benches/results`].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Parent of the scratch store directories [default: a new directory under the system
    /// temp dir]. Each configuration's store is deleted after it verifies; a store that fails
    /// verification is kept there for inspection.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of the workers' random choices (striped keys); the same seed replays the same
    /// choices.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

/// The seed used unless `--seed` says otherwise.
pub const DEFAULT_SEED: u64 = 42;

const AFTER_HELP: &str = "\
Each configuration gets a fresh store; its worker processes start together and run for \
--seconds; the run then checks the end state (hot counter = acknowledged increments, each \
stripe = its acknowledged increments, every acknowledged insert present with its value) and \
fails with a non-zero exit if it differs.

Example: shardkv bench --workloads hot --shards 1,8 --procs 8 --threads 1 --modes per-write,group --seconds 2";

/// Arguments of the hidden `shardkv bench-worker`, which `shardkv bench` starts.
#[derive(Clone, Debug, clap::Args)]
pub struct WorkerArgs {
    /// The store, created by the parent.
    #[arg(long)]
    pub data: PathBuf,
    /// The workload to run.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// The commit mode to open the store with.
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// Threads to run.
    #[arg(long, value_parser = parse_threads)]
    pub threads: usize,
    /// Seconds to run after `go`.
    #[arg(long, value_parser = parse_seconds)]
    pub seconds: f64,
    /// This worker's number, which makes its insert keys unique.
    #[arg(long = "proc")]
    pub proc_id: usize,
    /// The sweep's seed.
    #[arg(long)]
    pub seed: u64,
}

fn count_in(what: &str, n: usize, max: usize) -> Result<usize> {
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(Error::InvalidInput(format!(
            "{what} must be 1 to {max}, not {n}"
        )))
    }
}

fn parse_count(s: &str, what: &str, max: usize) -> std::result::Result<usize, String> {
    let n = s
        .trim()
        .parse()
        .map_err(|_| format!("{what} must be a whole number from 1 to {max}"))?;
    count_in(what, n, max).map_err(|e| e.to_string())
}

fn parse_shards(s: &str) -> std::result::Result<usize, String> {
    parse_count(s, "the shard count", MAX_SHARDS)
}

fn parse_procs(s: &str) -> std::result::Result<usize, String> {
    parse_count(s, "the process count", MAX_PROCS)
}

fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    parse_count(s, "the thread count", MAX_THREADS)
}

fn check_seconds(s: f64) -> Result<Duration> {
    if s > 0.0 && s <= MAX_SECONDS {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(Error::InvalidInput(format!(
            "seconds must be more than 0 and at most {MAX_SECONDS}, not {s}"
        )))
    }
}

fn parse_seconds(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("seconds must be a number, like 2 or 0.5, not {s:?}"))?;
    check_seconds(v).map_err(|e| e.to_string())?;
    Ok(v)
}

/// Checks a list flag: not empty, no value twice, each value valid.
fn check_list<T: Copy + Eq + Hash + std::fmt::Display>(
    flag: &str,
    values: &[T],
    check: impl Fn(T) -> Result<()>,
) -> Result<()> {
    if values.is_empty() {
        return Err(Error::InvalidInput(format!(
            "--{flag} needs at least one value"
        )));
    }
    let mut seen = HashSet::new();
    for &v in values {
        if !seen.insert(v) {
            return Err(Error::InvalidInput(format!("--{flag} lists {v} twice")));
        }
        check(v)?;
    }
    Ok(())
}

impl BenchArgs {
    /// Validates the flags (as the command line does, for callers that build `BenchArgs`
    /// themselves) and returns the configurations in sweep order: workload, then shards,
    /// procs, threads, and mode innermost, so that rows compared most often sit together.
    pub fn configs(&self) -> Result<Vec<Config>> {
        check_list("workloads", &self.workloads, |_| Ok(()))?;
        check_list("shards", &self.shards, |n| {
            count_in("the shard count", n, MAX_SHARDS).map(drop)
        })?;
        check_list("procs", &self.procs, |n| {
            count_in("the process count", n, MAX_PROCS).map(drop)
        })?;
        check_list("threads", &self.threads, |n| {
            count_in("the thread count", n, MAX_THREADS).map(drop)
        })?;
        check_list("modes", &self.modes, |_| Ok(()))?;
        check_seconds(self.seconds)?;
        let mut configs = Vec::new();
        for &workload in &self.workloads {
            for &shards in &self.shards {
                for &procs in &self.procs {
                    for &threads in &self.threads {
                        for &mode in &self.modes {
                            configs.push(Config {
                                workload,
                                shards,
                                procs,
                                threads,
                                mode,
                            });
                        }
                    }
                }
            }
        }
        Ok(configs)
    }
}

/// Runs `shardkv bench`, starting workers from this executable.
pub fn run(args: BenchArgs) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| Error::io("finding the shardkv executable", e))?;
    run_with_exe(&args, &exe).map(drop)
}

/// Runs the sweep with workers started from `exe` (a `shardkv` binary): prints progress to
/// stderr and the tables to stdout, writes `contention.csv` and `contention.svg` to
/// `args.out`, and returns the measurements. Fails on the first configuration that does not
/// verify.
pub fn run_with_exe(args: &BenchArgs, exe: &Path) -> Result<Vec<Measured>> {
    let configs = args.configs()?;
    let run_for = check_seconds(args.seconds)?;
    let out = match &args.out {
        Some(out) => {
            std::fs::create_dir_all(out)
                .map_err(|e| Error::io(format!("creating {}", out.display()), e))?;
            out.clone()
        }
        None => fresh_out_dir()?,
    };
    eprintln!(
        "results will be written to {}",
        std::path::absolute(&out)
            .unwrap_or_else(|_| out.clone())
            .display()
    );
    let scratch = Scratch::new(args.data.as_deref())?;
    if let Some(warning) = tmpfs_warning(&scratch.path) {
        eprintln!("warning: {warning}");
    }

    let mut results = Vec::with_capacity(configs.len());
    for (i, config) in configs.iter().enumerate() {
        // One whole line per configuration, written once it is measured: a worker's log
        // line can come between two progress lines, never inside one.
        let progress = format!("[{}/{}] {config} ...", i + 1, configs.len());
        let dir = scratch.path.join(format!("run-{:03}", i + 1));
        match process::measure(exe, &dir, config, run_for, args.seed) {
            Ok(m) => {
                eprintln!("{progress} {:.0} ops/s, verified", m.ops_per_sec());
                remove_store(&dir)?;
                results.push(m);
            }
            Err(e) => {
                eprintln!("{progress} FAILED");
                if dir.exists() {
                    eprintln!("store of the failed run kept at {}", dir.display());
                }
                return Err(e);
            }
        }
    }

    let title = format!(
        "shardkv contention: ops/s per configuration ({} s each, seed {})",
        args.seconds, args.seed
    );
    write_file(&out.join("contention.csv"), &csv(&results))?;
    write_file(&out.join("contention.svg"), &svg(&results, &title))?;
    println!(
        "{} configurations, {} s each, seed {}; every end state verified.\n",
        results.len(),
        args.seconds,
        args.seed
    );
    print!("{}", table(&results));
    println!(
        "\nmean group: writes per transaction. lock wait per commit: time spent waiting for \
         redb's cross-process writer lock, summed over all processes (their waits overlap), \
         divided by commits."
    );
    print!("{}", ratios(&results));
    eprintln!(
        "wrote {} and {}",
        out.join("contention.csv").display(),
        out.join("contention.svg").display()
    );
    Ok(results)
}

/// Runs one benchmark worker process.
pub fn worker(args: WorkerArgs) -> Result<()> {
    count_in("the thread count", args.threads, MAX_THREADS)?;
    process::work(&process::WorkerSpec {
        run_for: check_seconds(args.seconds)?,
        data: args.data,
        workload: args.workload,
        mode: args.mode,
        threads: args.threads,
        proc_id: args.proc_id,
        seed: args.seed,
    })
}

/// A new, empty directory for one run's results under the system temp dir.
fn fresh_out_dir() -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = std::env::temp_dir();
    for n in 0..100 {
        let path = base.join(format!(
            "shardkv-bench-results-{stamp}-{}-{n}",
            std::process::id()
        ));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        }
    }
    Err(Error::InvalidInput(format!(
        "could not create a results directory in {}; pass --out",
        base.display()
    )))
}

/// The parent of the per-configuration stores. One this run created is removed at the end
/// if empty (a failed run's store stays).
struct Scratch {
    path: PathBuf,
    created: bool,
}

impl Scratch {
    fn new(parent: Option<&Path>) -> Result<Scratch> {
        let (path, created) = match parent {
            Some(p) => (p.to_path_buf(), !p.exists()),
            None => (
                std::env::temp_dir().join(format!("shardkv-bench-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        // A leftover store would make the next run open it instead of a fresh one.
        let busy = std::fs::read_dir(&path)
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("run-"));
        if busy {
            return Err(Error::InvalidInput(format!(
                "{} already holds run-* stores from an earlier run; remove them or pick another --data",
                path.display()
            )));
        }
        Ok(Scratch { path, created })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_dir(&self.path);
        }
    }
}

fn remove_store(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}

fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// On tmpfs fsync costs nothing, so the numbers would not price durability.
fn tmpfs_warning(dir: &Path) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut fs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
        // SAFETY: `path` is NUL-terminated and `fs` is a valid buffer for one statfs.
        let rc = unsafe { libc::statfs(path.as_ptr(), fs.as_mut_ptr()) };
        // f_type's integer type differs between targets.
        #[allow(clippy::unnecessary_cast)]
        // SAFETY: all-zero is a valid statfs (plain integers), and statfs filled it on success.
        let f_type = unsafe { fs.assume_init() }.f_type as i64;
        if rc == 0 && f_type == TMPFS_MAGIC {
            return Some(format!(
                "{} is on tmpfs, where fsync is free: these numbers do not include durability; \
                 pass --data on a real disk",
                dir.display()
            ));
        }
    }
    let _ = dir;
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<BenchArgs, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_the_documented_sweep() {
        let a = parse(&[]).unwrap();
        assert_eq!(
            a.workloads,
            [Workload::Hot, Workload::Striped, Workload::Inserts]
        );
        assert_eq!(a.shards, [1, 8]);
        assert_eq!(a.procs, [8]);
        assert_eq!(a.threads, [1, 8]);
        assert_eq!(a.modes, [Mode::PerWrite, Mode::Group]);
        assert_eq!(a.seconds, 2.0);
        assert_eq!(a.out, None);
        assert_eq!(a.data, None);
        assert_eq!(a.seed, DEFAULT_SEED);
        assert_eq!(a.configs().unwrap().len(), 3 * 2 * 2 * 2);
    }

    #[test]
    fn lists_parse_and_the_sweep_is_their_product_mode_innermost() {
        let a = parse(&[
            "--workloads",
            "striped,hot",
            "--shards",
            "8,1",
            "--procs",
            "2,4",
            "--threads",
            "3",
            "--modes",
            "group",
            "--seconds",
            "0.5",
        ])
        .unwrap();
        let configs = a.configs().unwrap();
        assert_eq!(configs.len(), 2 * 2 * 2);
        assert_eq!(
            configs[0],
            Config {
                workload: Workload::Striped,
                shards: 8,
                procs: 2,
                threads: 3,
                mode: Mode::Group
            }
        );
        assert_eq!(configs[1].procs, 4);
        assert_eq!(configs[2].shards, 1);
        assert_eq!(configs[7].workload, Workload::Hot);
        assert_eq!(
            configs[0].to_string(),
            "striped shards=8 procs=2 threads=3 group"
        );
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        for (args, says) in [
            (&["--procs", "0"][..], "process count must be 1 to 256"),
            (&["--workloads", "hot,lukewarm"], "lukewarm"),
            (&["--shards", "1025"], "shard count must be 1 to 1024"),
            (&["--shards", "0"], "shard count must be 1 to 1024"),
            (&["--shards", "eight"], "whole number"),
            (&["--threads", "0"], "thread count must be 1 to 256"),
            (&["--modes", "batch"], "batch"),
            (&["--seconds", "0"], "more than 0"),
            (&["--seconds", "NaN"], "more than 0"),
            (&["--seconds=-1"], "more than 0"),
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should fail"));
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }

    #[test]
    fn library_callers_get_the_same_checks() {
        let mut a = parse(&[]).unwrap();
        a.procs = vec![0];
        assert!(
            a.configs()
                .unwrap_err()
                .to_string()
                .contains("process count")
        );
        let mut a = parse(&[]).unwrap();
        a.shards = vec![8, 8];
        assert!(a.configs().unwrap_err().to_string().contains("twice"));
        let mut a = parse(&[]).unwrap();
        a.workloads.clear();
        assert!(
            a.configs()
                .unwrap_err()
                .to_string()
                .contains("at least one")
        );
        let mut a = parse(&[]).unwrap();
        a.seconds = f64::INFINITY;
        assert!(a.configs().is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn tmpfs_is_called_out_and_a_disk_is_not() {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            assert!(tmpfs_warning(shm).is_some_and(|w| w.contains("tmpfs")));
        }
        assert_eq!(tmpfs_warning(Path::new("/proc")), None);
    }

    #[test]
    fn a_scratch_dir_holding_old_stores_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run-001")).unwrap();
        let err = Scratch::new(Some(dir.path())).err().unwrap();
        assert!(err.to_string().contains("earlier run"), "{err}");
    }
}
