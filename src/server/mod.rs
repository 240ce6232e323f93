//! The HTTP worker: the router ([`app`]) and the serving loop ([`run`]).
//!
//! ```text
//! accept ─► connection task (hyper http1, header read timeout)
//!             └─► app(state): pid header · metrics · drain (Connection: close) · timeout
//!                   └─► routes ─► spawn_blocking ─► registry ─► store
//! ```
//!
//! Contracts:
//! - Every response carries `x-worker-pid`; every error is JSON `{"error": ...}`; a client's
//!   mistake is a 4xx and changes nothing.
//! - Request heads must arrive within the header read timeout, bodies are at most 64 KiB,
//!   and a request that takes longer than the request timeout is answered 503.
//! - hyper never answers on its own: heads it would refuse are refused first, as JSON with
//!   `x-worker-pid` (`conn`, `framing`).
//! - Idle connections never lock clients out: the open-file limit is raised to its hard
//!   maximum, and at the connection cap the idle keep-alive connection quiet longest is
//!   closed to make room.
//! - **Draining** ([`run`]'s shutdown future resolving): stop accepting; every response from
//!   then on carries `Connection: close`, so a keep-alive connection is closed right after
//!   answering its next request and never while the client may be sending one; connections
//!   still open at the drain timeout are closed then.

mod conn;
mod dashboard;
pub mod error;
mod framing;
pub mod metrics;
mod routes;
pub mod tickets;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use error::ApiError;
pub use metrics::{ClusterView, Peers, WorkerSnapshot};

use crate::registry::Registry;

/// The response header naming the worker process that answered.
pub const WORKER_PID_HEADER: &str = "x-worker-pid";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most connections one worker holds open; at the cap, a new client closes the idle
/// keep-alive connection quiet longest (see [`run`]).
pub const MAX_CONNECTIONS: usize = 4096;

/// Timeouts of a worker.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// How long a client has to send a request head (also the keep-alive idle limit).
    pub header_read_timeout: Duration,
    /// How long a request may take before it is answered 503.
    pub request_timeout: Duration,
    /// How long draining waits for open connections before closing them.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Where a worker finds the other workers' latest snapshots and the exited workers' totals
/// (the cluster's status file), so that `/stats` and `/metrics` cover the whole cluster.
/// Standalone servers have none.
pub type PeerSource = Arc<dyn Fn() -> Option<Peers> + Send + Sync>;

/// State shared by every handler of a worker. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    metrics: metrics::Metrics,
    pid: u32,
    started: SystemTime,
    draining: AtomicBool,
    prime_permits: Semaphore,
    request_timeout: Duration,
    body_timeout: Duration,
    peers: Option<PeerSource>,
    pid_header: HeaderValue,
    service: OnceLock<String>,
}

impl AppState {
    /// State for a standalone worker serving `registry`.
    pub fn new(registry: Registry, config: &ServerConfig) -> AppState {
        AppState::build(registry, config, None)
    }

    /// State for a worker of a cluster, which finds the other workers through `peers`.
    pub fn in_cluster(registry: Registry, config: &ServerConfig, peers: PeerSource) -> AppState {
        AppState::build(registry, config, Some(peers))
    }

    fn build(registry: Registry, config: &ServerConfig, peers: Option<PeerSource>) -> AppState {
        let pid = std::process::id();
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        AppState {
            inner: Arc::new(Inner {
                registry,
                metrics: metrics::Metrics::default(),
                pid,
                started: SystemTime::now(),
                draining: AtomicBool::new(false),
                prime_permits: Semaphore::new(cpus),
                request_timeout: config.request_timeout,
                body_timeout: config.header_read_timeout,
                peers,
                pid_header: HeaderValue::from(pid),
                service: OnceLock::new(),
            }),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    fn prime_permits(&self) -> &Semaphore {
        &self.inner.prime_permits
    }

    /// This worker's snapshot now.
    pub fn snapshot(&self) -> WorkerSnapshot {
        self.inner.metrics.snapshot(
            self.inner.pid,
            self.inner.started,
            self.inner.registry.shard_stats(),
        )
    }

    /// This worker and its peers, sorted by pid; `me` replaces any stale copy of itself.
    /// This worker (live) and its peers (from the status file), sorted by pid.
    fn cluster_view(&self, me: &WorkerSnapshot) -> ClusterView {
        ClusterView::new(me.clone(), self.inner.peers.as_ref().and_then(|p| p()))
    }

    /// Names the service this worker serves, for `/stats` and the dashboard; the first name
    /// set stays. Unset, a worker serves `all`.
    pub fn set_service(&self, name: impl Into<String>) {
        let _ = self.inner.service.set(name.into());
    }

    /// The service this worker serves: `all` unless [`AppState::set_service`] named one.
    pub fn service(&self) -> &str {
        self.inner.service.get().map_or("all", String::as_str)
    }

    /// Whether the worker is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Relaxed)
    }

    fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }
}

/// The router: every route, with pid header, metrics, drain and timeout middleware.
pub fn app(state: AppState) -> Router {
    Router::new()
        // HEAD / reads the count: a health check must not consume counter values.
        .route("/", get(routes::hit).head(routes::count))
        .route("/count", get(routes::count))
        .route("/dogs", get(routes::list_dogs).post(routes::create_dog))
        .route(
            "/dogs/{name}",
            get(routes::get_dog)
                .put(routes::recolor_dog)
                .delete(routes::delete_dog),
        )
        .route("/isprime", get(routes::is_prime))
        .route("/stats", get(routes::stats))
        .route("/metrics", get(routes::prometheus))
        .route("/healthz", get(routes::healthz))
        .nest("/tickets", tickets::monolith(&state))
        .route("/dashboard", get(dashboard::page))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Outermost middleware: body read, request timeout, metrics, `x-worker-pid`, and
/// `Connection: close` while draining.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // Router::layer wraps each route, so the router has set the pattern that matched.
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let _in_flight = InFlight::enter(state.metrics().in_flight());
    let mut unread_body = false;
    let mut response = match read_body(request, state.inner.body_timeout).await {
        Err(rejection) => {
            // Part of the body may still be on its way: this connection cannot carry another
            // request, so say so rather than close it under the client.
            unread_body = true;
            rejection.into_response()
        }
        Ok(request) => {
            let timeout = state.inner.request_timeout;
            match within(timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::unavailable(format!(
                    "the request took longer than the {} s request timeout",
                    timeout.as_secs_f64()
                ))
                .into_response(),
            }
        }
    };
    let route = matched.as_ref().map_or("unmatched", |m| m.as_str());
    state.metrics().record(
        method.as_str(),
        route,
        response.status().as_u16(),
        started.elapsed(),
    );
    let headers = response.headers_mut();
    headers.insert(WORKER_PID_HEADER, state.inner.pid_header.clone());
    // Checked after the handler ran: a request in flight when draining began is answered with
    // Connection: close too, so its connection ends cleanly right after.
    if state.is_draining() || unread_body {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// `future`'s output, or `Err` if it takes longer than `limit`. The timer is armed only if
/// the first poll finds it pending: most requests (health checks, reads from the page cache)
/// finish in that poll, and a timer costs a lock and a wheel entry each time.
async fn within<F: Future>(
    limit: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    // The limit runs from before the first poll, which a clock read is enough to note.
    let start = tokio::time::Instant::now();
    let mut future = std::pin::pin!(future);
    match std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => tokio::time::timeout_at(start + limit, future).await,
    }
}

/// Counts a request in flight until dropped, even if the client gives up mid-request.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Receives a request's body before any handler runs, so that a client that declares too
/// much (413), sends too slowly or too little (408) is told so, and the request timeout
/// measures the server's own work only. Bodies are small (at most [`MAX_BODY_BYTES`]).
async fn read_body(request: Request, timeout: Duration) -> Result<Request, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    if declared.unwrap_or(0) == 0 && !chunked {
        return Ok(request);
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Ok(Err(_)) => Err(ApiError::bad_request(
            "the request body could not be read (truncated or malformed)",
        )),
        Ok(Ok(collected)) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
    )
}

/// Raises the soft limit on open files to the hard limit, as nginx and Go servers do, so
/// that idle clients do not exhaust a default soft limit (often 1024) long before the
/// machine's. Called first thing by the supervisor (its workers inherit the raised limit) and
/// by every worker. Returns the soft limit now in force, if known.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// Descriptors kept back from connections, for shard files, logs and pipes.
const RESERVED_FDS: u64 = 256;

/// The most connections to hold: [`MAX_CONNECTIONS`], or fewer if the descriptor limit (raised
/// to its hard maximum first) would not leave room for shard files and logs.
fn connection_cap() -> usize {
    let Some(soft) = raise_open_file_limit() else {
        return MAX_CONNECTIONS;
    };
    usize::try_from(soft.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .clamp(16, MAX_CONNECTIONS)
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains (see the module docs).
///
/// At the connection cap, a new client makes room by closing the idle keep-alive connection
/// quiet longest (nginx does the same); if none is idle, it waits for one to end, in the
/// kernel's accept queue behind it.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let router = app(state.clone());
    run_router(listener, state, router, config, shutdown).await
}

/// Like [`run`], serving `router` (built on `state`, such as a ticket service's).
pub async fn run_router(
    listener: TcpListener,
    state: AppState,
    router: Router,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_BODY_BYTES.max(8192) * 2)
        // conn::Conn refuses heads over MAX_HEAD_BYTES or framing::MAX_HEADERS with a JSON
        // answer; hyper's own (bare) refusals must never fire first.
        // hyper's own header count limit is its default (framing::MAX_HEADERS): setting one
        // makes it allocate that many slots on the heap for every request.
        .max_header_size(MAX_HEAD_BYTES * 2)
        // After a refused head, hyper reads end of file and must still answer the requests
        // before it (see conn).
        .half_close(true);
    let mut tasks = JoinSet::new();
    let open = Arc::new(conn::Connections::default());
    let cap = connection_cap();
    let slots = Arc::new(Semaphore::new(cap));
    tracing::debug!(cap, "connection cap");
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let slot = loop {
            if let Ok(slot) = slots.clone().try_acquire_owned() {
                break Some(slot);
            }
            let closing = open.close_oldest_idle();
            let retry = Duration::from_millis(if closing { 500 } else { 50 });
            tokio::select! {
                () = &mut shutdown => break None,
                slot = slots.clone().acquire_owned() => break Some(slot.expect("never closed")),
                // A busy connection may have gone idle meanwhile.
                () = tokio::time::sleep(retry) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        };
        let Some(slot) = slot else { break };
        let _ = stream.set_nodelay(true);
        let (activity, registered) = open.register();
        let io = conn::Conn::new(
            stream,
            config.header_read_timeout,
            MAX_HEAD_BYTES,
            activity.clone(),
        );
        let per_request = {
            let (service, activity) = (service.clone(), activity.clone());
            hyper::service::service_fn(move |request| {
                let busy = activity.request();
                let answer = hyper::service::Service::call(&service, request);
                async move {
                    let _busy = busy;
                    answer.await
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(io), per_request);
        tasks.spawn(async move {
            let _registered = registered;
            tokio::pin!(connection);
            // A client that vanishes or times out mid-request is routine.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = activity.close_requested() => {
                    // Idle: closes now; answering a request that just arrived: after it.
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    state.start_draining();
    let open = tasks.len();
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = tasks.len(),
            "closing connections still open at the drain timeout"
        );
        tasks.shutdown().await;
    }
    tracing::debug!(open, "drained");
    Ok(())
}
