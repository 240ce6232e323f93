//! Behind one socket a scrape reaches a random worker, yet every answer covers the whole
//! cluster: two `/metrics` scrapes answered by different workers both show every worker's
//! series, and the totals (from the workers' reports, at most a second old) add up.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::http::ResponseExt;
use common::{cluster, http};

#[test]
fn scrapes_from_different_workers_show_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(&dir.path().join("shards"), &["--workers", "3"]);
    server.wait_workers("3 workers have reported", Duration::from_secs(30), |w| {
        w.len() == 3 && w.iter().all(|w| w.status == "online" && w.reported)
    });
    let workers: BTreeSet<u32> = server.online_pids().into_iter().collect();
    for _ in 0..30 {
        assert_eq!(http::get(&server.addr, "/").unwrap().status, 200);
    }

    // /stats: every worker listed; totals are the sum over workers (within a second of lag).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = http::get(&server.addr, "/stats").unwrap().json();
        let listed: BTreeSet<u32> = stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["pid"].as_u64().unwrap() as u32)
            .collect();
        let sum: u64 = stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["by_route"]["GET /"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(listed, workers);
        assert_eq!(stats["totals"]["workers"], 3);
        if sum == 30 && stats["totals"]["by_route"]["GET /"] == 30 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "totals never reached the 30 requests sent: {stats}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Scrape on fresh connections until two different workers have answered.
    let mut scrapes: BTreeMap<u32, String> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while scrapes.len() < 2 {
        assert!(Instant::now() < deadline, "every scrape reached one worker");
        let r = http::get(&server.addr, "/metrics").unwrap();
        assert_eq!(r.status, 200);
        scrapes.insert(r.pid(), r.text());
    }
    for (answered_by, text) in &scrapes {
        for pid in &workers {
            assert!(
                text.contains(&format!("shardkv_worker_uptime_seconds{{pid=\"{pid}\"}}")),
                "scrape answered by {answered_by} lacks worker {pid}:\n{text}"
            );
        }
        assert!(text.contains("shardkv_workers 3"), "{text}");
        assert!(
            text.contains(
                "shardkv_cluster_http_requests_total{method=\"GET\",route=\"/\",status=\"200\"} 30\n"
            ),
            "{text}"
        );
    }
}
