//! Regression for issue 9 (item 3): a counter that no longer holds an integer made `GET /`
//! answer 400, blaming the client for the server's state. Both counter routes now answer
//! 503 with a JSON error, and the other routes keep working.

mod common;

use std::time::Duration;

use common::cluster;
use common::http::{Client, ResponseExt};
use shardkv::Store;

#[test]
fn a_counter_that_is_not_an_integer_is_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::shard_by("hash:4".parse().unwrap())
        .open(dir.path())
        .unwrap();
    store.put("counters", "requests", "not a number").unwrap();
    drop(store);
    let mut c = cluster::start(dir.path(), &["--workers", "1"]);
    let mut client = Client::new(&c.addr);
    for path in ["/", "/count"] {
        let r = client.get(path).unwrap();
        assert_eq!(r.status, 503, "GET {path}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    let created = client
        .post_json("/dogs", r#"{"name":"rex","color":"red"}"#)
        .unwrap();
    assert_eq!(created.status, 201);
    drop(client);
    c.signal(libc::SIGTERM);
    assert!(c.wait_exit(Duration::from_secs(30)).unwrap().success());
}
