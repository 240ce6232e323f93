//! Request metrics of one worker, their snapshot for the cluster, and the `/stats` and
//! `/metrics` renderings over every worker.
//!
//! A worker counts its own requests (by route and status) and latencies in memory. In
//! cluster mode it also publishes a [`WorkerSnapshot`] to the supervisor about once a second;
//! the supervisor writes them all to the status file, and any worker answering `/stats` or
//! `/metrics` reads its peers from there. So every scrape shows every worker, with other
//! workers' numbers up to about a second old.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::ShardStats;

/// Upper bounds (seconds) of the latency histogram buckets; a last bucket is `+Inf`.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// route -> status -> count, of one method.
type RouteCounts = BTreeMap<String, BTreeMap<u16, u64>>;

/// One worker's live counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// method -> route -> status -> count. Nested so that a request's lookup borrows its
    /// route instead of allocating a key; only a route's first request allocates. Taken
    /// briefly per request; never across `.await`.
    by_status: Mutex<BTreeMap<&'static str, RouteCounts>>,
    /// Non-cumulative bucket counts; the last is `+Inf`.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
    in_flight: AtomicU64,
    isprime_running: AtomicU64,
}

impl Metrics {
    /// Records one finished request.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        // Only standard methods get their own series: a client inventing methods must not
        // grow this map without bound.
        let method = match method {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "OPTIONS" => "OPTIONS",
            "CONNECT" => "CONNECT",
            "TRACE" => "TRACE",
            _ => "OTHER",
        };
        {
            let mut by_status = self.by_status.lock();
            let routes = by_status.entry(method).or_default();
            let statuses = match routes.get_mut(route) {
                Some(statuses) => statuses,
                None => routes.entry(route.to_owned()).or_default(),
            };
            *statuses.entry(status).or_default() += 1;
        }
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Requests being handled now.
    pub fn in_flight(&self) -> &AtomicU64 {
        &self.in_flight
    }

    /// Prime checks computing now.
    pub fn isprime_running(&self) -> &AtomicU64 {
        &self.isprime_running
    }

    /// A snapshot of this worker, with its shards' counters.
    pub fn snapshot(
        &self,
        pid: u32,
        started: SystemTime,
        shards: Vec<ShardStats>,
    ) -> WorkerSnapshot {
        let by_status: Vec<RouteCount> = self
            .by_status
            .lock()
            .iter()
            .flat_map(|(method, routes)| {
                routes.iter().flat_map(move |(route, statuses)| {
                    statuses.iter().map(move |(&status, &count)| RouteCount {
                        method: (*method).to_owned(),
                        route: route.clone(),
                        status,
                        count,
                    })
                })
            })
            .collect();
        let started_unix_ms = started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        WorkerSnapshot {
            pid,
            started_unix_ms,
            uptime_s: started.elapsed().map_or(0.0, |d| d.as_secs_f64()),
            requests: by_status.iter().map(|r| r.count).sum(),
            by_status,
            latency_counts: self
                .latency
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            latency_sum_s: self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            isprime_running: self.isprime_running.load(Ordering::Relaxed),
            rss_bytes: rss_bytes(pid),
            restarts: 0,
            slot: None,
            status: String::new(),
            shards,
        }
    }
}

/// Requests of one method, route and status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteCount {
    /// HTTP method.
    pub method: String,
    /// Route pattern (`/dogs/{name}`), or `unmatched`.
    pub route: String,
    /// Response status.
    pub status: u16,
    /// Requests answered.
    pub count: u64,
}

/// Everything one worker reports about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// Process id.
    pub pid: u32,
    /// Start time, Unix milliseconds.
    pub started_unix_ms: u64,
    /// Seconds since start, when the snapshot was taken.
    pub uptime_s: f64,
    /// Requests answered.
    pub requests: u64,
    /// Requests by method, route and status.
    pub by_status: Vec<RouteCount>,
    /// Latency histogram, non-cumulative, bucket bounds [`LATENCY_BUCKETS`] then `+Inf`.
    pub latency_counts: Vec<u64>,
    /// Sum of all latencies, seconds.
    pub latency_sum_s: f64,
    /// Requests in progress.
    pub in_flight: u64,
    /// Prime checks in progress.
    pub isprime_running: u64,
    /// Resident memory, bytes (0 where unknown).
    pub rss_bytes: u64,
    /// Times this worker's slot was restarted (filled in by the supervisor).
    pub restarts: u64,
    /// The worker's slot, like PM2's id (filled in by the supervisor; none standalone).
    #[serde(default)]
    pub slot: Option<usize>,
    /// `starting`, `online` or `draining` (filled in by the supervisor; empty standalone).
    #[serde(default)]
    pub status: String,
    /// This worker's counters for every shard.
    pub shards: Vec<ShardStats>,
}

impl WorkerSnapshot {
    /// Requests by `"METHOD route"`.
    pub fn by_route(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for r in &self.by_status {
            *out.entry(format!("{} {}", r.method, r.route)).or_default() += r.count;
        }
        out
    }
}

/// Resident set size of a process, from `/proc` (Linux); 0 elsewhere.
pub fn rss_bytes(pid: u32) -> u64 {
    let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm")) else {
        return 0;
    };
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

impl WorkerSnapshot {
    /// Adds another worker's counters into this one (for totals over workers).
    pub fn absorb(&mut self, other: &WorkerSnapshot) {
        self.requests += other.requests;
        for r in &other.by_status {
            match self
                .by_status
                .iter_mut()
                .find(|m| m.method == r.method && m.route == r.route && m.status == r.status)
            {
                Some(m) => m.count += r.count,
                None => self.by_status.push(r.clone()),
            }
        }
        if self.latency_counts.len() < other.latency_counts.len() {
            self.latency_counts.resize(other.latency_counts.len(), 0);
        }
        for (t, c) in self.latency_counts.iter_mut().zip(&other.latency_counts) {
            *t += c;
        }
        self.latency_sum_s += other.latency_sum_s;
        self.in_flight += other.in_flight;
        self.isprime_running += other.isprime_running;
        for s in &other.shards {
            match self.shards.iter_mut().find(|t| t.shard == s.shard) {
                Some(t) => *t += s,
                None => self.shards.push(s.clone()),
            }
        }
        self.shards.sort_by_key(|s| s.shard);
    }
}

/// What the supervisor publishes about the workers: each live worker's last report, and the
/// sum of every exited worker's last report.
#[derive(Clone, Debug, Default)]
pub struct Peers {
    /// Each live worker's last report, with its restart count.
    pub workers: Vec<WorkerSnapshot>,
    /// The counters of every worker that has exited, summed.
    pub retired: WorkerSnapshot,
}

/// The cluster as one worker answers for it.
#[derive(Clone, Debug)]
pub struct ClusterView {
    /// Every live worker, sorted by pid; the answering one with its live counters.
    pub workers: Vec<WorkerSnapshot>,
    /// Counters summed over all workers, exited ones included.
    pub totals: WorkerSnapshot,
}

impl ClusterView {
    /// The view of worker `me`: alone without peers; in a cluster, its live self among its
    /// peers' reports. In a cluster the totals are summed from published reports only: when
    /// a worker dies, its last report moves from `workers` to `retired` unchanged, so totals
    /// never drop, where mixing in live counters would lose up to a second of them.
    pub fn new(me: WorkerSnapshot, peers: Option<Peers>) -> ClusterView {
        let Some(peers) = peers else {
            return ClusterView {
                totals: me.clone(),
                workers: vec![me],
            };
        };
        let mut totals = peers.retired;
        for w in &peers.workers {
            totals.absorb(w);
        }
        totals
            .by_status
            .sort_by(|a, b| (&a.method, &a.route, a.status).cmp(&(&b.method, &b.route, b.status)));
        let mut me = me;
        let mut workers = peers.workers;
        // The supervisor knows this worker's slot, state and restart count; the worker does not.
        if let Some(stale_me) = workers.iter().find(|w| w.pid == me.pid) {
            me.restarts = stale_me.restarts;
            me.slot = stale_me.slot;
            me.status = stale_me.status.clone();
        }
        workers.retain(|w| w.pid != me.pid);
        workers.push(me);
        workers.sort_by_key(|w| w.pid);
        ClusterView { workers, totals }
    }
}

/// What `/stats` says about the store a worker serves.
#[derive(Clone, Debug)]
pub struct StoreFacts<'a> {
    /// The data directory, as the worker opened it.
    pub data_dir: &'a std::path::Path,
    /// The routing scheme, as a spec.
    pub scheme: String,
    /// Number of shards.
    pub shard_count: usize,
    /// The service this worker serves (`all` for the monolith).
    pub service: &'a str,
}

/// The `/stats` document: the answering worker, every live worker, and totals (requests and
/// shards) over all workers, exited ones included. The dashboard page reads it; the keys it
/// uses are pinned by `tests/dashboard.rs`.
pub fn stats_json(
    me: &WorkerSnapshot,
    view: &ClusterView,
    store: &StoreFacts,
) -> serde_json::Value {
    let (workers, totals) = (&view.workers, &view.totals);
    let shards: Vec<serde_json::Value> = totals
        .shards
        .iter()
        .map(|s| {
            serde_json::json!({
                "shard": s.shard,
                "commits": s.commits,
                "writes": s.writes,
                "rejected": s.rejected,
                "failed_commits": s.failed_commits,
                "reads": s.reads,
                "mean_group": s.mean_group(),
                "max_group": s.max_group,
                "lock_wait_us": s.lock_wait_us,
                "mean_lock_wait_us": if s.commits == 0 { 0.0 } else { s.lock_wait_us as f64 / s.commits as f64 },
            })
        })
        .collect();
    serde_json::json!({
        "pid": me.pid,
        "uptime_s": me.uptime_s,
        "requests": me.by_route(),
        "scheme": store.scheme,
        "store": {
            "data_dir": store.data_dir.display().to_string(),
            "scheme": store.scheme,
            "shard_count": store.shard_count,
            "service": store.service,
        },
        "workers": workers.iter().map(|w| serde_json::json!({
            "pid": w.pid,
            "slot": w.slot,
            // A standalone server is its own only worker, and is online while it answers.
            "status": if w.status.is_empty() { "online" } else { w.status.as_str() },
            "uptime_s": w.uptime_s,
            "requests": w.requests,
            "by_route": w.by_route(),
            "in_flight": w.in_flight,
            "isprime_running": w.isprime_running,
            "restarts": w.restarts,
            "rss_bytes": w.rss_bytes,
        })).collect::<Vec<_>>(),
        "totals": {
            "workers": workers.len(),
            "requests": totals.requests,
            "by_route": totals.by_route(),
        },
        "shards": shards,
    })
}

/// The `/metrics` document in Prometheus text format: per-worker series labelled by `pid`,
/// and `shardkv_cluster_*` totals over all workers, exited ones included, so that they never
/// go backwards.
pub fn prometheus(view: &ClusterView) -> String {
    let (workers, totals) = (&view.workers, &view.totals);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for sample in samples {
            out.push_str(&sample);
            out.push('\n');
        }
    };
    let per_worker = |name: &str, value: &dyn Fn(&WorkerSnapshot) -> String| -> Vec<String> {
        workers
            .iter()
            .map(|w| format!("{name}{{pid=\"{}\"}} {}", w.pid, value(w)))
            .collect()
    };

    family(
        "shardkv_workers",
        "gauge",
        "Workers reporting.",
        vec![format!("shardkv_workers {}", workers.len())],
    );

    let mut samples = Vec::new();
    for w in workers {
        for r in &w.by_status {
            samples.push(format!(
                "shardkv_http_requests_total{{pid=\"{}\",method=\"{}\",route=\"{}\",status=\"{}\"}} {}",
                w.pid,
                r.method,
                escape(&r.route),
                r.status,
                r.count
            ));
        }
    }
    family(
        "shardkv_http_requests_total",
        "counter",
        "HTTP requests answered, by worker, method, route and status.",
        samples,
    );
    family(
        "shardkv_cluster_http_requests_total",
        "counter",
        "HTTP requests answered by all workers together, by method, route and status.",
        totals
            .by_status
            .iter()
            .map(|r| {
                format!(
                    "shardkv_cluster_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}",
                    r.method,
                    escape(&r.route),
                    r.status,
                    r.count
                )
            })
            .collect(),
    );

    let mut samples = Vec::new();
    for w in workers {
        let mut cumulative = 0;
        for (i, count) in w.latency_counts.iter().enumerate() {
            cumulative += count;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or("+Inf".to_owned(), |b| b.to_string());
            samples.push(format!(
                "shardkv_http_request_duration_seconds_bucket{{pid=\"{}\",le=\"{le}\"}} {cumulative}",
                w.pid
            ));
        }
        samples.push(format!(
            "shardkv_http_request_duration_seconds_sum{{pid=\"{}\"}} {}",
            w.pid, w.latency_sum_s
        ));
        samples.push(format!(
            "shardkv_http_request_duration_seconds_count{{pid=\"{}\"}} {cumulative}",
            w.pid
        ));
    }
    family(
        "shardkv_http_request_duration_seconds",
        "histogram",
        "HTTP request latency.",
        samples,
    );

    family(
        "shardkv_http_requests_in_flight",
        "gauge",
        "Requests being handled.",
        per_worker("shardkv_http_requests_in_flight", &|w| {
            w.in_flight.to_string()
        }),
    );
    family(
        "shardkv_worker_uptime_seconds",
        "gauge",
        "Seconds since the worker started.",
        per_worker("shardkv_worker_uptime_seconds", &|w| w.uptime_s.to_string()),
    );
    family(
        "shardkv_worker_resident_memory_bytes",
        "gauge",
        "Resident memory of the worker.",
        per_worker("shardkv_worker_resident_memory_bytes", &|w| {
            w.rss_bytes.to_string()
        }),
    );
    family(
        "shardkv_worker_restarts",
        "gauge",
        "Restarts of the worker's slot.",
        per_worker("shardkv_worker_restarts", &|w| w.restarts.to_string()),
    );

    type ShardField = fn(&ShardStats) -> String;
    let shard_families: [(&str, &str, &str, ShardField); 7] = [
        (
            "shardkv_shard_commits_total",
            "counter",
            "Transactions committed.",
            |s| s.commits.to_string(),
        ),
        (
            "shardkv_shard_writes_total",
            "counter",
            "Write batches committed.",
            |s| s.writes.to_string(),
        ),
        (
            "shardkv_shard_rejected_total",
            "counter",
            "Write batches whose precondition failed.",
            |s| s.rejected.to_string(),
        ),
        (
            "shardkv_shard_failed_commits_total",
            "counter",
            "Transactions that failed to commit.",
            |s| s.failed_commits.to_string(),
        ),
        (
            "shardkv_shard_lock_wait_seconds_total",
            "counter",
            "Time spent waiting for the cross-process writer lock.",
            |s| (s.lock_wait_us as f64 / 1e6).to_string(),
        ),
        (
            "shardkv_shard_max_group",
            "gauge",
            "Largest group commit.",
            |s| s.max_group.to_string(),
        ),
        (
            "shardkv_shard_mean_group",
            "gauge",
            "Write batches per transaction, mean since start.",
            |s| format!("{:.3}", s.mean_group()),
        ),
    ];
    for (name, kind, help, field) in shard_families {
        let mut samples = Vec::new();
        for w in workers {
            for s in &w.shards {
                samples.push(format!(
                    "{name}{{pid=\"{}\",shard=\"{}\"}} {}",
                    w.pid,
                    s.shard,
                    field(s)
                ));
            }
        }
        family(name, kind, help, samples);
        // Totals over all workers, as their own family so that sums never count twice.
        let total = name.replacen("shardkv_", "shardkv_cluster_", 1);
        let samples = totals
            .shards
            .iter()
            .map(|s| format!("{total}{{shard=\"{}\"}} {}", s.shard, field(s)))
            .collect();
        family(&total, kind, help, samples);
    }
    out
}

/// Escapes a label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
