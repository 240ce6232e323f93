//! A plain axum 0.8 hello-world on one port, the ceiling `benches/throughput.sh` compares
//! shardkv's `/healthz` against: same hyper, same runtime, no middleware, no storage.
//!
//! `cargo run --release --example hello_axum -- 127.0.0.1:3990`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3990".into());
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
