//! The real `shardkv serve` over real sockets: the lesson's six dogs on `alpha:a-m,n-z` land
//! in two shard files, the orange ones come back in name order, and the counter counts.

mod common;

use common::cluster;
use common::http::{Client, ResponseExt};
use serde_json::json;
use shardkv::Store;

const SEED: [(&str, &str); 6] = [
    ("biscuit", "orange"),
    ("jungle", "black"),
    ("smokey", "grey"),
    ("fancy feast", "white"),
    ("peep", "orange"),
    ("bread", "orange"),
];

#[test]
fn seed_dogs_split_across_two_shard_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    let server = cluster::start(&data, &["--workers", "1", "--shard-by", "alpha:a-m,n-z"]);
    let mut client = Client::new(&server.addr);

    for (name, color) in SEED {
        let r = client
            .post_json("/dogs", &json!({"name": name, "color": color}).to_string())
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json(), json!({"name": name, "color": color}));
        assert!(r.header("x-worker-pid").is_some());
    }
    let orange = client.get("/dogs?color=orange").unwrap();
    assert_eq!(orange.status, 200);
    assert_eq!(
        orange.json(),
        json!([
            {"name": "biscuit", "color": "orange"},
            {"name": "bread", "color": "orange"},
            {"name": "peep", "color": "orange"},
        ])
    );
    let jungle = client.get("/dogs/jungle").unwrap();
    assert_eq!(
        (jungle.status, jungle.json()),
        (200, json!({"name": "jungle", "color": "black"}))
    );

    // The CLI reports the same, read-only, while the server runs.
    let out = cluster::shardkv(&["check", "--data", data.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("alpha:a-m,n-z") && text.contains("dogs=4") && text.contains("dogs=2"),
        "{text}"
    );

    // Two shard files: a-m holds biscuit, bread, fancy feast, jungle; n-z holds peep, smokey.
    let report = Store::check(&data).unwrap();
    let dogs_in = |shard: usize| {
        report.shards[shard]
            .collections
            .iter()
            .find(|(c, _)| c == "dogs")
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(report.shards.len(), 2);
    assert_eq!((dogs_in(0), dogs_in(1)), (4, 2));
    assert!(data.join("shard-000.redb").exists() && data.join("shard-001.redb").exists());

    // The counter counts, one by one, and /count reads it.
    let before = client.get("/count").unwrap().json().as_i64().unwrap();
    for i in 1..=5 {
        assert_eq!(
            client.get("/").unwrap().json().as_i64().unwrap(),
            before + i
        );
    }
    assert_eq!(
        client.get("/count").unwrap().json().as_i64().unwrap(),
        before + 5
    );
    assert_eq!(client.get("/healthz").unwrap().text(), "ok");
}

#[test]
fn version_and_help_explain_themselves() {
    let out = cluster::shardkv(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = cluster::shardkv(&["serve", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--workers",
        "--shard-by",
        "--port",
        "--drain-timeout",
        "--request-timeout",
        "--max-restarts",
    ] {
        assert!(help.contains(flag), "serve --help lacks {flag}");
    }
    // Loopback unless asked otherwise.
    assert!(help.contains("[default: 127.0.0.1]"), "{help}");
}

#[test]
fn shardkv_load_checks_the_counter_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(&dir.path().join("shards"), &["--workers", "2"]);
    let json = dir.path().join("load.json");
    let out = cluster::shardkv(&[
        "load",
        &server.addr,
        "-n",
        "600",
        "-c",
        "12",
        "--json",
        json.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("counter 0 -> 600: 600 answers, 0 duplicates"),
        "{text}"
    );
    assert!(text.contains("EXACT"));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["ok"], 600);
    assert_eq!(report["counter"]["exact"], true);
    // Percentiles are named, in order.
    let latency = &report["latency_ms"];
    let [p50, p90, p99, max] = ["p50", "p90", "p99", "max"].map(|p| {
        latency[p]
            .as_f64()
            .unwrap_or_else(|| panic!("{p}: {latency}"))
    });
    assert!(
        0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{latency}"
    );
    assert_eq!(
        Client::new(&server.addr).get("/count").unwrap().json(),
        json!(600)
    );

    let out = cluster::shardkv(&["load", &server.addr, "-n", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));
}
