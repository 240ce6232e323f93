//! `shardkv load`: drives a running server like `loadtest -n N -c C`, and checks the request
//! counter's answers.
//!
//! C client threads share N requests, each on its own keep-alive connection. For the counter
//! route (`/`) the run is validated, assuming no other client increments the counter
//! meanwhile: every answer must be a number, unique, within `base+1..=final` (read from
//! `/count` before and after), and the increments nobody was told about,
//! `final - base - answered`, may not exceed the failed requests. The verdict is **EXACT**
//! when nothing failed and the answers are exactly `base+1..=base+N`; **CONSISTENT** when
//! some requests failed but nothing contradicts the counter; otherwise **NOT EXACT**. Any
//! failed request or a verdict other than EXACT makes the command exit non-zero.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::http::{self, Client};
use shardkv::{Error, Result};

/// Arguments of `shardkv load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// The server, optionally with the path to request (default `/`, the counter).
    #[arg(default_value = "http://127.0.0.1:3000")]
    pub url: String,
    /// Total requests.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub requests: usize,
    /// Concurrent clients, each on its own keep-alive connection.
    #[arg(short = 'c', long, default_value_t = 32)]
    pub concurrency: usize,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// What a load run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Path requested.
    pub path: String,
    /// Requests sent.
    pub requests: usize,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Answers with a 2xx status.
    pub ok: usize,
    /// Failed requests: I/O errors and non-2xx answers.
    pub failed: usize,
    /// Failures by kind.
    pub errors: BTreeMap<String, usize>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Requests per second.
    pub per_second: f64,
    /// Latency percentiles, milliseconds.
    pub latency_ms: Latency,
    /// 2xx answers by worker pid.
    pub by_worker: BTreeMap<u32, usize>,
    /// The counter check, for `/`.
    pub counter: Option<CounterCheck>,
}

/// Latency percentiles of the answered and failed requests, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// The request counter's answers, checked.
#[derive(Debug, Clone, Serialize)]
pub struct CounterCheck {
    /// `/count` before the run.
    pub base: i64,
    /// `/count` after the run.
    pub last: i64,
    /// Values answered more than once (must be 0).
    pub duplicates: usize,
    /// Values answered outside `base+1..=last` (must be 0).
    pub out_of_range: usize,
    /// 2xx answers whose body was not a number (must be 0).
    pub unparseable: usize,
    /// Increments counted without an answer: `last - base - answered` (at most `failed`).
    pub unanswered: i64,
    /// No failures, and the answers are exactly `base+1..=base+N`.
    pub exact: bool,
    /// Nothing contradicts the counter (failed requests may hide increments).
    pub consistent: bool,
}

struct ClientResult {
    latencies_us: Vec<u32>,
    values: Vec<i64>,
    unparseable: usize,
    errors: BTreeMap<String, usize>,
    by_worker: BTreeMap<u32, usize>,
}

/// Splits `http://host:port/path?q` into `host:port` and `/path?q`.
fn split_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if rest.starts_with("https://") || url.starts_with("https://") {
        return Err(Error::InvalidInput(
            "https is not supported; use http://".into(),
        ));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(Error::InvalidInput(format!(
            "{url:?} should look like http://127.0.0.1:3000[/path]"
        )));
    }
    Ok((host.to_owned(), path.to_owned()))
}

/// Fails with a message in the user's words when nothing answers at `addr`, naming the
/// clusters this user runs, if any.
fn probe(addr: &str) -> Result<()> {
    let Err(e) = std::net::TcpStream::connect(addr) else {
        return Ok(());
    };
    let running = shardkv::cluster::running::list();
    let hint = if running.is_empty() {
        "no shardkv cluster of yours is running; start one with `shardkv serve`".to_owned()
    } else {
        format!(
            "your running clusters: {}",
            running
                .iter()
                .map(|c| format!("{} on http://{}", c.name, c.address))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(Error::NotFound(format!(
        "no server answers at http://{addr} ({e}); {hint}"
    )))
}

fn read_count(addr: &str) -> Result<i64> {
    let r = http::get(addr, "/count").map_err(|e| Error::io(format!("GET {addr}/count"), e))?;
    std::str::from_utf8(&r.body)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .filter(|_| r.status == 200)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{addr}/count answered {} {:?}: is this a shardkv server?",
                r.status,
                r.text()
            ))
        })
}

/// Checks a counter's answers against its values before and after the run.
fn check_counter(
    base: i64,
    last: i64,
    values: &[i64],
    unparseable: usize,
    failed: usize,
    requests: usize,
) -> CounterCheck {
    let distinct: BTreeSet<i64> = values.iter().copied().collect();
    let duplicates = values.len() - distinct.len();
    let out_of_range = values.iter().filter(|&&v| v <= base || v > last).count();
    let unanswered = last - base - values.len() as i64;
    let consistent = duplicates == 0
        && out_of_range == 0
        && unparseable == 0
        && (0..=failed as i64).contains(&unanswered);
    CounterCheck {
        base,
        last,
        duplicates,
        out_of_range,
        unparseable,
        unanswered,
        exact: consistent && failed == 0 && unanswered == 0 && values.len() == requests,
        consistent,
    }
}

/// Runs the load; prints progress on stderr once a second.
pub fn run_load(args: &LoadArgs) -> Result<LoadReport> {
    if args.requests == 0 || args.concurrency == 0 {
        return Err(Error::InvalidInput("-n and -c must be at least 1".into()));
    }
    let (addr, path) = split_url(&args.url)?;
    probe(&addr)?;
    // `/?anything` counts too.
    let counter = path == "/" || path.starts_with("/?");
    let base = if counter {
        Some(read_count(&addr)?)
    } else {
        None
    };
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..args.concurrency.min(args.requests))
        .map(|_| {
            let (addr, path, next, done) = (addr.clone(), path.clone(), next.clone(), done.clone());
            let total = args.requests;
            std::thread::spawn(move || {
                let mut client = Client::new(&addr);
                let mut out = ClientResult {
                    latencies_us: Vec::new(),
                    values: Vec::new(),
                    unparseable: 0,
                    errors: BTreeMap::new(),
                    by_worker: BTreeMap::new(),
                };
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let answer = client.get(&path);
                    out.latencies_us
                        .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    match answer {
                        Ok(r) if (200..300).contains(&r.status) => {
                            if let Some(pid) = r.worker_pid() {
                                *out.by_worker.entry(pid).or_default() += 1;
                            }
                            if counter {
                                match std::str::from_utf8(&r.body)
                                    .ok()
                                    .and_then(|t| t.trim().parse().ok())
                                {
                                    Some(v) => out.values.push(v),
                                    None => out.unparseable += 1,
                                }
                            }
                        }
                        Ok(r) => {
                            *out.errors
                                .entry(format!("status {}", r.status))
                                .or_default() += 1
                        }
                        Err(e) => *out.errors.entry(format!("{:?}", e.kind())).or_default() += 1,
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                out
            })
        })
        .collect();

    let mut last_report = Instant::now();
    while clients.iter().any(|c| !c.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            eprintln!(
                "[{:5.1}s] {}/{} requests",
                started.elapsed().as_secs_f64(),
                done.load(Ordering::Relaxed),
                args.requests
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    let mut latencies = Vec::with_capacity(args.requests);
    let mut values = Vec::new();
    let mut unparseable = 0;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_worker: BTreeMap<u32, usize> = BTreeMap::new();
    for c in clients {
        let r = c
            .join()
            .map_err(|_| Error::InvalidInput("a load client panicked".into()))?;
        latencies.extend(r.latencies_us);
        values.extend(r.values);
        unparseable += r.unparseable;
        for (k, n) in r.errors {
            *errors.entry(k).or_default() += n;
        }
        for (k, n) in r.by_worker {
            *by_worker.entry(k).or_default() += n;
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    let failed: usize = errors.values().sum();
    let counter = match base {
        Some(base) => {
            let last = read_count(&addr)?;
            Some(check_counter(
                base,
                last,
                &values,
                unparseable,
                failed,
                args.requests,
            ))
        }
        None => None,
    };
    Ok(LoadReport {
        path,
        requests: args.requests,
        concurrency: args.concurrency,
        ok: args.requests - failed,
        failed,
        errors,
        seconds,
        per_second: args.requests as f64 / seconds,
        latency_ms: Latency {
            p50: pct(0.5),
            p90: pct(0.9),
            p99: pct(0.99),
            max: pct(1.0),
        },
        by_worker,
        counter,
    })
}

/// The report as a markdown table and a verdict.
pub fn render(report: &LoadReport) -> String {
    let mut out = String::new();
    out.push_str("| path | requests | clients | ok | failed | seconds | req/s | p50 ms | p90 ms | p99 ms | max ms | workers |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let Latency { p50, p90, p99, max } = report.latency_ms;
    out.push_str(&format!(
        "| `{}` | {} | {} | {} | {} | {:.2} | {:.0} | {p50:.2} | {p90:.2} | {p99:.2} | {max:.2} | {} |\n",
        report.path,
        report.requests,
        report.concurrency,
        report.ok,
        report.failed,
        report.seconds,
        report.per_second,
        report.by_worker.len()
    ));
    for (kind, n) in &report.errors {
        out.push_str(&format!("\nfailed: {n} × {kind}"));
    }
    if let Some(c) = &report.counter {
        let verdict = if c.exact {
            "EXACT".to_owned()
        } else if c.consistent {
            format!(
                "CONSISTENT ({} failed requests may hide increments)",
                report.failed
            )
        } else {
            "NOT EXACT".to_owned()
        };
        out.push_str(&format!(
            "\ncounter {} -> {}: {} answers, {} duplicates, {} out of range, {} not numbers, \
             {} counted without an answer (failed: {}): {verdict}\n\
             (the check assumes no other client increments the counter during the run)\n",
            c.base,
            c.last,
            report.ok,
            c.duplicates,
            c.out_of_range,
            c.unparseable,
            c.unanswered,
            report.failed,
        ));
    }
    out
}

/// `shardkv load`.
pub fn main(args: LoadArgs) -> Result<()> {
    let report = run_load(&args)?;
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).expect("report serializes");
        std::fs::write(path, json)
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    match &report.counter {
        Some(c) if !c.consistent => Err(Error::Conflict(
            "the counter's answers contradict an exact counter; see above".into(),
        )),
        _ if report.failed > 0 => Err(Error::Conflict(format!(
            "{} of {} requests failed",
            report.failed, report.requests
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_cannot_be_fooled() {
        let all: Vec<i64> = (11..=20).collect();
        assert!(check_counter(10, 20, &all, 0, 0, 10).exact);
        // Every request failed: nothing contradicts the counter, but nothing is exact either.
        let dead = check_counter(10, 10, &[], 0, 10, 10);
        assert!(dead.consistent && !dead.exact);
        // Answers that are not numbers, while the counter moved.
        assert!(!check_counter(10, 20, &[], 10, 0, 10).consistent);
        // A value handed out twice.
        let twice = [11, 12, 12, 13, 14, 15, 16, 17, 18, 19];
        assert!(!check_counter(10, 20, &twice, 0, 0, 10).consistent);
        // Increments nobody was told about, more than the failures explain.
        assert!(!check_counter(10, 25, &all, 0, 2, 12).consistent);
        // An answer from outside the run.
        let stale = [5, 12, 13, 14, 15, 16, 17, 18, 19, 20];
        assert!(!check_counter(10, 20, &stale, 0, 0, 10).consistent);
    }

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:3000").unwrap(),
            ("127.0.0.1:3000".into(), "/".into())
        );
        assert_eq!(
            split_url("127.0.0.1:3000/isprime?number=7").unwrap(),
            ("127.0.0.1:3000".into(), "/isprime?number=7".into())
        );
        assert!(split_url("https://x:1").is_err());
        assert!(split_url("http://localhost").is_err());
    }
}
