//! Route handlers. Each one validates its input, calls the registry, and answers JSON.
//!
//! Where storage work runs: writes are queued for the shard's committer thread and awaited
//! ([`Store::write_async`](crate::Store::write_async)), so no thread waits per write; point
//! reads (one key, from redb's page cache) run on the async worker, since they take
//! microseconds; scans, which may read thousands of entries, run on the blocking pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::metrics;
use crate::registry::{self, DEFAULT_LIMIT, Dog, MAX_LIMIT};

/// `axum::Json` whose rejections are [`ApiError`]s (JSON bodies, our statuses).
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct JsonBody<T>(pub T);

/// A query-string extractor whose rejections are [`ApiError`]s. Unlike
/// `axum::extract::Query`, it refuses percent-encoded bytes that are not UTF-8 instead of
/// replacing them, so `?color=%FF` cannot silently match nothing.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        if !percent_decodes_to_utf8(query) {
            return Err(ApiError::bad_request("the query string is not valid UTF-8"));
        }
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}

/// Whether every percent-decoded part of a query string is valid UTF-8.
fn percent_decodes_to_utf8(query: &str) -> bool {
    query
        .split(['&', '='])
        .all(|part| percent_decode_str(part).decode_utf8().is_ok())
}

/// `axum::extract::Path` whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Runs blocking storage work on tokio's blocking pool, never on the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(e) => {
            tracing::error!(error = %e, "storage task failed");
            Err(ApiError::unavailable("the request could not be completed"))
        }
    }
}

/// A count as a JSON number followed by a newline, so that under curl it does not run into
/// the shell prompt.
pub struct Count(i64);

impl IntoResponse for Count {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            format!("{}\n", self.0),
        )
            .into_response()
    }
}

/// `GET /`: counts the request; answers the new count.
pub async fn hit(State(state): State<AppState>) -> Result<Count, ApiError> {
    Ok(Count(state.registry().hit().await?))
}

/// `GET /count`: the count, unchanged. A point read from the page cache takes microseconds:
/// it runs on the async worker (see the module docs).
pub async fn count(State(state): State<AppState>) -> Result<Count, ApiError> {
    Ok(Count(state.registry().count()?))
}

/// Body of `POST /dogs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDog {
    name: String,
    color: String,
}

/// `POST /dogs`: 201 with the dog, or 409 if the name is taken.
pub async fn create_dog(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewDog>,
) -> Result<Response, ApiError> {
    let dog = Dog::new(new.name, new.color)?;
    state.registry().create(&dog).await?;
    let location = format!("/dogs/{}", utf8_percent_encode(&dog.name, PATH_SEGMENT));
    let mut response = (StatusCode::CREATED, Json(dog)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /dogs/{name}`.
pub async fn get_dog(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Dog>, ApiError> {
    match state.registry().get(&name)? {
        Some(dog) => Ok(Json(dog)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no dog named {name:?}"),
        )),
    }
}

/// Body of `PUT /dogs/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recolor {
    color: String,
}

/// `PUT /dogs/{name}`: recolors, moving the index entry in the same transaction.
pub async fn recolor_dog(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Recolor>,
) -> Result<Json<Dog>, ApiError> {
    Ok(Json(state.registry().recolor(&name, &body.color).await?))
}

/// `DELETE /dogs/{name}`: 204, or 404.
pub async fn delete_dog(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry().delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /dogs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    color: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// `GET /dogs?color=C&limit=N&after=NAME`: dogs of a color (all dogs without `color`),
/// sorted by name.
pub async fn list_dogs(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Dog>>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}, not {text:?}"
                )));
            }
        },
    };
    if let Some(after) = &q.after {
        registry::check_field("after", after, registry::MAX_NAME_BYTES)?;
    }
    let registry = state.registry().clone();
    let dogs = blocking(move || match &q.color {
        Some(color) => registry.by_color(color, q.after.as_deref(), limit),
        None => registry.all(q.after.as_deref(), limit),
    })
    .await?;
    Ok(Json(dogs))
}

/// Query of `GET /isprime`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrimeQuery {
    number: Option<String>,
}

/// The lesson's answer, fields in its order.
#[derive(Serialize)]
pub struct PrimeAnswer {
    number: u64,
    #[serde(rename = "isPrime")]
    is_prime: bool,
    /// Milliseconds spent computing, to the microsecond.
    time: f64,
}

/// Sets a flag when dropped: a request that is abandoned (client gone, timeout) stops its
/// computation.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard<'a>(&'a std::sync::atomic::AtomicU64);

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `GET /isprime?number=N`: trial division on the blocking pool, at most one per CPU at a
/// time, so that a slow prime never holds up other routes.
pub async fn is_prime(
    State(state): State<AppState>,
    Query(q): Query<PrimeQuery>,
) -> Result<Json<PrimeAnswer>, ApiError> {
    let Some(text) = q.number else {
        return Err(ApiError::bad_request(
            "the query parameter number is required",
        ));
    };
    let n: u64 = text.trim().parse().map_err(|_| {
        ApiError::bad_request(format!(
            "number must be a whole number from 0 to {}, not {text:?}",
            u64::MAX
        ))
    })?;
    let _permit = state
        .prime_permits()
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("shutting down"))?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let running = state.metrics().isprime_running();
    running.fetch_add(1, Ordering::Relaxed);
    let _running = GaugeGuard(running);
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || registry::is_prime(n, &cancel))
        .await
        .map_err(|_| ApiError::unavailable("the computation failed"))?;
    let Some(is_prime) = answer else {
        return Err(ApiError::unavailable("the computation was cancelled"));
    };
    Ok(Json(PrimeAnswer {
        number: n,
        is_prime,
        time: started.elapsed().as_micros() as f64 / 1000.0,
    }))
}

/// `GET /stats`: this worker, every worker of the cluster, totals, and shards.
pub async fn stats(State(state): State<AppState>) -> Json<serde_json::Value> {
    let me = state.snapshot();
    let view = state.cluster_view(&me);
    let store = state.registry().store();
    let facts = metrics::StoreFacts {
        data_dir: store.dir(),
        scheme: store.scheme().to_string(),
        shard_count: store.shard_count(),
        service: state.service(),
    };
    Json(metrics::stats_json(&me, &view, &facts))
}

/// `GET /metrics`: Prometheus text format, cluster-wide.
pub async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let me = state.snapshot();
    let view = state.cluster_view(&me);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    (headers, metrics::prometheus(&view))
}

/// `GET /healthz`.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route")
}

/// Known routes, wrong method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}

/// Everything but RFC 3986's unreserved characters, for a path segment.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
