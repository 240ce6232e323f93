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
//! - **Draining** ([`run`]'s shutdown future resolving): stop accepting; every response from
//!   then on carries `Connection: close`, so a keep-alive connection is closed right after
//!   answering its next request and never while the client may be sending one; connections
//!   still open at the drain timeout are closed then.

pub mod error;
pub mod metrics;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use error::ApiError;
pub use metrics::WorkerSnapshot;

use crate::registry::Registry;

/// The response header naming the worker process that answered.
pub const WORKER_PID_HEADER: &str = "x-worker-pid";
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

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

/// Where a worker finds the other workers' latest snapshots (the cluster's status file), so
/// that `/stats` and `/metrics` cover every worker. Standalone servers have none.
pub type PeerSource = Arc<dyn Fn() -> Vec<WorkerSnapshot> + Send + Sync>;

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
    peers: Option<PeerSource>,
    pid_header: HeaderValue,
}

impl AppState {
    /// State for a worker serving `registry`.
    pub fn new(registry: Registry, config: &ServerConfig) -> AppState {
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
                peers: None,
                pid_header: HeaderValue::from(pid),
            }),
        }
    }

    /// The same state, reading peers from `peers`. Call before serving.
    pub fn with_peers(self, peers: PeerSource) -> AppState {
        let mut inner = Arc::try_unwrap(self.inner)
            .unwrap_or_else(|_| panic!("with_peers is called before the state is shared"));
        inner.peers = Some(peers);
        AppState {
            inner: Arc::new(inner),
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
    fn all_workers(&self, me: &WorkerSnapshot) -> Vec<WorkerSnapshot> {
        let peers = self.inner.peers.as_ref().map(|p| p()).unwrap_or_default();
        let mut me = me.clone();
        // The supervisor knows this worker's restart count; the worker does not.
        if let Some(stale_me) = peers.iter().find(|w| w.pid == me.pid) {
            me.restarts = stale_me.restarts;
        }
        let mut all: Vec<WorkerSnapshot> = peers.into_iter().filter(|w| w.pid != me.pid).collect();
        all.push(me);
        all.sort_by_key(|w| w.pid);
        all
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
        .route("/", get(routes::hit))
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
        .route_layer(middleware::from_fn(tag_route))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The route pattern that matched, carried on the response to [`observe`].
#[derive(Clone)]
struct RouteTag(MatchedPath);

async fn tag_route(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteTag(matched));
    }
    response
}

/// Outermost middleware: request timeout, metrics, `x-worker-pid`, and `Connection: close`
/// while draining.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let in_flight = state.metrics().in_flight();
    in_flight.fetch_add(1, Ordering::Relaxed);
    let timeout = state.inner.request_timeout;
    let mut response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => axum::response::IntoResponse::into_response(ApiError::unavailable(format!(
            "the request took longer than the {} s request timeout",
            timeout.as_secs_f64()
        ))),
    };
    in_flight.fetch_sub(1, Ordering::Relaxed);
    let route = response
        .extensions()
        .get::<RouteTag>()
        .map_or("unmatched", |t| t.0.as_str())
        .to_owned();
    state.metrics().record(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    let headers = response.headers_mut();
    headers.insert(WORKER_PID_HEADER, state.inner.pid_header.clone());
    // Checked after the handler ran: a request in flight when draining began is answered with
    // Connection: close too, so its connection ends cleanly right after.
    if state.is_draining() {
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Serves `state` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn run(
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = TowerToHyperService::new(app(state.clone()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_BODY_BYTES.max(8192) * 2)
        .max_header_size(MAX_HEAD_BYTES);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = http.serve_connection(TokioIo::new(stream), service.clone());
                    connections.spawn(async move {
                        // A client that vanishes or times out mid-request is routine.
                        let _ = connection.await;
                    });
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    state.start_draining();
    let open = connections.len();
    let drained = tokio::time::timeout(config.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing connections still open at the drain timeout"
        );
        connections.shutdown().await;
    }
    tracing::debug!(open, "drained");
    Ok(())
}
