//! Fuzzed requests (method, path, query string, headers, body) through the real router,
//! `shardkv::server::app`, on a fresh store: never a 5xx, every response carries
//! `x-worker-pid`, every error is JSON `{"error": ...}`, the counter counts exactly the
//! successful `GET /`, and a dog answered 201 can be read back until it is deleted.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use shardkv::registry::Registry;
use shardkv::server::{AppState, ServerConfig, WORKER_PID_HEADER, app};
use shardkv::{ShardBy, Store};
use tower::ServiceExt;

use super::bytes::Bytes;

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];
const PATHS: [&str; 12] = [
    "/",
    "/count",
    "/dogs",
    "/dogs/",
    "/dogs/{name}",
    "/isprime",
    "/stats",
    "/metrics",
    "/healthz",
    "/nope",
    "//dogs",
    "{raw}",
];
const TYPES: [Option<&str>; 5] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
];
const NAMES: [&str; 6] = ["rex", "Rex", "a", "biscuit", "", "x y"];
const COLORS: [&str; 4] = ["brown", "orange", "", "Brown"];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

fn text(b: &mut Bytes, max: usize) -> String {
    String::from_utf8_lossy(&b.slice(max)).into_owned()
}

/// A name: a usual one, or fuzzed text.
fn name(b: &mut Bytes) -> String {
    if b.byte().is_multiple_of(2) {
        b.pick(&NAMES).to_owned()
    } else {
        text(b, 12)
    }
}

fn body(b: &mut Bytes) -> Vec<u8> {
    match b.byte() % 4 {
        0 => Vec::new(),
        1 => b.slice(64),
        2 => serde_json::json!({ "name": name(b), "color": b.pick(&COLORS) })
            .to_string()
            .into_bytes(),
        _ => {
            // Valid JSON of the wrong shape, or a right shape with fuzzed values.
            let v = text(b, 16);
            match b.byte() % 3 {
                0 => serde_json::json!({ "color": v }),
                1 => serde_json::json!({ "name": v, "color": 7 }),
                _ => serde_json::json!([v]),
            }
            .to_string()
            .into_bytes()
        }
    }
}

/// Seconds of trial division would only slow the fuzzer down.
fn slow_prime(uri: &str) -> bool {
    uri.contains("isprime")
        && uri
            .as_bytes()
            .windows(10)
            .any(|w| w.iter().all(u8::is_ascii_digit))
}

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by(ShardBy::hash(2).unwrap())
        .cache_size(1 << 20)
        .open(dir.path())
        .unwrap();
    let state = AppState::new(Registry::new(store), &ServerConfig::default());
    let router = app(state);
    let mut hits = 0i64;
    // Dogs answered 201 (true) or 204 on delete (false), by name.
    let mut dogs: BTreeMap<String, bool> = BTreeMap::new();
    runtime().block_on(async {
        for _ in 0..12 {
            if b.is_empty() {
                break;
            }
            let method = b.pick(&METHODS);
            let dog = name(&mut b);
            let encoded =
                percent_encoding::utf8_percent_encode(&dog, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let path = match b.pick(&PATHS) {
                "/dogs/{name}" => format!("/dogs/{encoded}"),
                "{raw}" => text(&mut b, 24),
                p => p.to_owned(),
            };
            let query = b.slice(32);
            let mut uri = path.clone();
            if !query.is_empty() {
                uri.push('?');
                uri.push_str(&String::from_utf8_lossy(&query));
            }
            if slow_prime(&uri) {
                continue;
            }
            let mut request = Request::builder().method(method).uri(&uri);
            if let Some(t) = b.pick(&TYPES) {
                request = request.header(header::CONTENT_TYPE, t);
            }
            let Ok(request) = request.body(Body::from(body(&mut b))) else {
                continue;
            };
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let said = String::from_utf8_lossy(&bytes);
            assert!(status.as_u16() < 500, "{method} {uri}: {status} {said}");
            assert!(
                headers.contains_key(WORKER_PID_HEADER),
                "{method} {uri}: no pid"
            );
            if status.is_client_error() && method != "HEAD" {
                assert_eq!(
                    headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    Some("application/json"),
                    "{method} {uri}: {status} {said}"
                );
                let json: serde_json::Value = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{method} {uri}: {status} not JSON ({e}): {said}"));
                assert!(
                    json["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "{json}"
                );
            }
            let is = |m: &str, p: &str| method == m && path == p && status.is_success();
            if is("GET", "/") {
                hits += 1;
                assert_eq!(
                    said,
                    format!("{hits}\n"),
                    "GET / counts every hit exactly once"
                );
            }
            if method == Method::POST && path == "/dogs" && status.as_u16() == 201 {
                let created: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                dogs.insert(created["name"].as_str().unwrap().to_owned(), true);
            }
            if method == Method::DELETE
                && path == format!("/dogs/{encoded}")
                && status.as_u16() == 204
            {
                dogs.insert(dog.clone(), false);
            }
        }
        let count = router
            .clone()
            .oneshot(Request::get("/count").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let count = count.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(String::from_utf8_lossy(&count), format!("{hits}\n"));
        for (dog, alive) in dogs {
            let encoded =
                percent_encoding::utf8_percent_encode(&dog, percent_encoding::NON_ALPHANUMERIC);
            let uri = format!("/dogs/{encoded}");
            let got = router
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let want = if alive { 200 } else { 404 };
            assert_eq!(got.status().as_u16(), want, "{uri}");
        }
    });
}
