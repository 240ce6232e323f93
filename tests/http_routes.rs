//! Every route and status of one worker, in process: `app(state).oneshot(request)`.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use shardkv::Store;
use shardkv::registry::Registry;
use shardkv::server::{AppState, ServerConfig, app};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by("alpha:a-m,n-z".parse().unwrap())
        .open(dir.path())
        .unwrap();
    let state = AppState::new(Registry::new(store), &ServerConfig::default());
    Fixture { _dir: dir, state }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {:?}", self.json()))
            .to_owned()
    }
}

async fn call(f: &Fixture, method: &str, uri: &str, body: Option<&str>) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(body.map_or(Body::empty(), |b| Body::from(b.to_owned())))
        .unwrap();
    let res = app(f.state.clone()).oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes().to_vec(),
    }
}

#[tokio::test]
async fn counter_counts_and_count_reads() {
    let f = fixture();
    for want in 1..=3 {
        let a = call(&f, "GET", "/", None).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.json(), json!(want));
        assert_eq!(a.headers["x-worker-pid"], std::process::id().to_string());
        assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    }
    let a = call(&f, "GET", "/count", None).await;
    assert_eq!((a.status, a.json()), (StatusCode::OK, json!(3)));
    assert_eq!(
        call(&f, "GET", "/count", None).await.json(),
        json!(3),
        "reading does not count"
    );
    // A HEAD (a health check) must not consume a counter value.
    assert_eq!(call(&f, "HEAD", "/", None).await.status, StatusCode::OK);
    assert_eq!(call(&f, "GET", "/", None).await.json(), json!(4));
}

#[tokio::test]
async fn dog_lifecycle() {
    let f = fixture();
    let a = call(
        &f,
        "POST",
        "/dogs",
        Some(r#"{"name":"fancy feast","color":"white"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json(), json!({"name": "fancy feast", "color": "white"}));
    assert_eq!(a.headers[header::LOCATION], "/dogs/fancy%20feast");

    let a = call(
        &f,
        "POST",
        "/dogs",
        Some(r#"{"name":"fancy feast","color":"black"}"#),
    )
    .await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    assert!(a.error().contains("already exists"));

    let a = call(&f, "GET", "/dogs/fancy%20feast", None).await;
    assert_eq!(
        (a.status, a.json()),
        (
            StatusCode::OK,
            json!({"name": "fancy feast", "color": "white"})
        )
    );
    assert_eq!(
        call(&f, "GET", "/dogs/Fancy%20Feast", None).await.status,
        StatusCode::NOT_FOUND,
        "names are case-sensitive"
    );

    let a = call(
        &f,
        "PUT",
        "/dogs/fancy%20feast",
        Some(r#"{"color":"grey"}"#),
    )
    .await;
    assert_eq!(
        (a.status, a.json()),
        (
            StatusCode::OK,
            json!({"name": "fancy feast", "color": "grey"})
        )
    );
    assert_eq!(
        call(&f, "GET", "/dogs?color=white", None).await.json(),
        json!([]),
        "index entry moved"
    );
    assert_eq!(
        call(&f, "GET", "/dogs?color=grey", None).await.json(),
        json!([{"name": "fancy feast", "color": "grey"}])
    );
    assert_eq!(
        call(&f, "PUT", "/dogs/nobody", Some(r#"{"color":"grey"}"#))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let a = call(&f, "DELETE", "/dogs/fancy%20feast", None).await;
    assert_eq!(a.status, StatusCode::NO_CONTENT);
    assert!(a.body.is_empty());
    assert_eq!(
        call(&f, "DELETE", "/dogs/fancy%20feast", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&f, "GET", "/dogs/fancy%20feast", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&f, "GET", "/dogs?color=grey", None).await.json(),
        json!([]),
        "index entry removed"
    );
}

#[tokio::test]
async fn find_by_color_merges_shards_sorted_and_pages() {
    let f = fixture();
    for (name, color) in [
        ("peep", "orange"),
        ("biscuit", "orange"),
        ("smokey", "grey"),
        ("bread", "orange"),
        ("zed", "orange"),
        ("apple", "Orange"),
    ] {
        let a = call(
            &f,
            "POST",
            "/dogs",
            Some(&json!({"name": name, "color": color}).to_string()),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(call(&f, "GET", "/dogs?color=orange", None).await.json()),
        ["biscuit", "bread", "peep", "zed"]
    );
    assert_eq!(
        names(call(&f, "GET", "/dogs?color=Orange", None).await.json()),
        ["apple"],
        "colors are case-sensitive"
    );
    assert_eq!(
        names(
            call(&f, "GET", "/dogs?color=orange&limit=2", None)
                .await
                .json()
        ),
        ["biscuit", "bread"]
    );
    assert_eq!(
        names(
            call(&f, "GET", "/dogs?color=orange&limit=2&after=bread", None)
                .await
                .json()
        ),
        ["peep", "zed"]
    );
    assert_eq!(
        names(call(&f, "GET", "/dogs?color=purple", None).await.json()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(call(&f, "GET", "/dogs?limit=3", None).await.json()),
        ["apple", "biscuit", "bread"]
    );
    for bad in [
        "/dogs?color=orange&limit=0",
        "/dogs?color=orange&limit=10001",
        "/dogs?color=orange&limit=x",
        "/dogs?colour=orange",
        "/dogs?color=",
    ] {
        let a = call(&f, "GET", bad, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!a.error().is_empty());
    }
}

#[tokio::test]
async fn isprime_answers_like_the_lesson() {
    let f = fixture();
    let a = call(&f, "GET", "/isprime?number=1000000007", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        text.starts_with(r#"{"number":1000000007,"isPrime":true,"time":"#),
        "the lesson's field order: {text}"
    );
    let v = a.json();
    assert_eq!(v["number"], json!(1_000_000_007u64));
    assert_eq!(v["isPrime"], json!(true));
    assert!(v["time"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        call(&f, "GET", "/isprime?number=91", None).await.json()["isPrime"],
        json!(false)
    );
    assert_eq!(
        call(&f, "GET", "/isprime?number=18446744073709551615", None)
            .await
            .json()["isPrime"],
        json!(false)
    );
    for bad in [
        "/isprime",
        "/isprime?number=",
        "/isprime?number=abc",
        "/isprime?number=-7",
        "/isprime?number=18446744073709551616",
        "/isprime?number=1.5",
        "/isprime?n=7",
    ] {
        let a = call(&f, "GET", bad, None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(!a.error().is_empty(), "{bad}");
    }
}

#[tokio::test]
async fn stats_metrics_and_health() {
    let f = fixture();
    call(&f, "GET", "/", None).await;
    call(
        &f,
        "POST",
        "/dogs",
        Some(r#"{"name":"biscuit","color":"orange"}"#),
    )
    .await;
    let a = call(&f, "GET", "/stats", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["pid"], json!(std::process::id()));
    assert_eq!(v["requests"]["GET /"], json!(1));
    assert_eq!(v["requests"]["POST /dogs"], json!(1));
    assert_eq!(v["totals"]["workers"], json!(1));
    assert_eq!(v["scheme"], json!("alpha:a-m,n-z"));
    let shards = v["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    // biscuit routes to shard 0 (b < n); the counter's key, "requests", to shard 1.
    assert_eq!(shards[0]["writes"], json!(1));
    assert_eq!(shards[1]["commits"], json!(1));
    for field in ["mean_group", "lock_wait_us", "max_group"] {
        assert!(shards[0].get(field).is_some(), "{field}");
    }

    let a = call(&f, "GET", "/metrics", None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(a.body).unwrap();
    let pid = std::process::id();
    assert!(text.contains(&format!("shardkv_http_requests_total{{pid=\"{pid}\",method=\"GET\",route=\"/\",status=\"200\"}} 1")), "{text}");
    assert!(text.contains("# TYPE shardkv_http_request_duration_seconds histogram"));
    assert!(text.contains(&format!(
        "shardkv_shard_commits_total{{pid=\"{pid}\",shard=\"1\"}} 1"
    )));
    assert!(
        text.contains("shardkv_cluster_shard_commits_total{shard=\"0\"} 1"),
        "{text}"
    );

    let a = call(&f, "GET", "/healthz", None).await;
    assert_eq!((a.status, a.body.as_slice()), (StatusCode::OK, &b"ok"[..]));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json() {
    let f = fixture();
    for (method, uri, status) in [
        ("GET", "/nope", StatusCode::NOT_FOUND),
        ("GET", "/dogs/a/b", StatusCode::NOT_FOUND),
        ("POST", "/", StatusCode::METHOD_NOT_ALLOWED),
        ("DELETE", "/dogs", StatusCode::METHOD_NOT_ALLOWED),
        ("PATCH", "/dogs/x", StatusCode::METHOD_NOT_ALLOWED),
        ("PUT", "/count", StatusCode::METHOD_NOT_ALLOWED),
        ("BREW", "/", StatusCode::METHOD_NOT_ALLOWED),
    ] {
        let a = call(&f, method, uri, None).await;
        assert_eq!(a.status, status, "{method} {uri}");
        assert!(!a.error().is_empty());
        assert!(a.headers.contains_key("x-worker-pid"));
    }
    // Invented methods share one series, so a client cannot grow the metrics without bound.
    for method in ["WHEN", "M12345", "XYZZY"] {
        call(&f, method, "/nope", None).await;
    }
    let text = String::from_utf8(call(&f, "GET", "/metrics", None).await.body).unwrap();
    assert!(
        text.contains("method=\"OTHER\",route=\"unmatched\",status=\"404\"} 3"),
        "{text}"
    );
    assert!(!text.contains("XYZZY"));
    // A method a route does not serve is counted under the route's pattern (read from the
    // request the router matched), never under the path the client sent.
    for series in [
        "method=\"POST\",route=\"/\",status=\"405\"} 1",
        "method=\"PATCH\",route=\"/dogs/{name}\",status=\"405\"} 1",
        "method=\"GET\",route=\"unmatched\",status=\"404\"} 2",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    assert!(!text.contains("/dogs/x"));
}
