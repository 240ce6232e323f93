//! Killing workers under load loses no acknowledged increment and doubles none: each
//! SIGKILLed worker is replaced, every value answered is unique, and the final count exceeds
//! the acknowledged answers by at most the number of failed requests.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::ResponseExt;
use common::{cluster, http, load};

const KILLS: usize = 5;

#[test]
fn sigkilled_workers_are_replaced_and_the_counter_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(&dir.path().join("shards"), &["--workers", "3"]);
    server.wait_workers("3 workers online", Duration::from_secs(30), |w| {
        cluster::online(3)(w)
    });
    let base = http::get(&server.addr, "/count")
        .unwrap()
        .json()
        .as_i64()
        .unwrap();
    let load = load::start(&server.addr, 6);
    load.wait_for(200);
    // Cluster totals, scraped throughout: a killed worker's counts must not vanish from them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (addr, stop) = (server.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(r) = http::get(&addr, "/stats") {
                    seen.push(
                        r.json()["totals"]["by_route"]["GET /"]
                            .as_u64()
                            .unwrap_or(0),
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };

    let mut killed = Vec::new();
    for round in 0..KILLS {
        let victim = server.online_pids()[round % 3];
        // SAFETY: kill(2) on a worker pid read from the status file.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
        killed.push(victim);
        server.wait_workers(
            "the killed worker is replaced",
            Duration::from_secs(30),
            |w| {
                !w.iter().any(|w| w.pid == victim)
                    && w.iter().filter(|w| w.status == "online").count() == 3
            },
        );
        load.wait_for(100);
    }
    let result = load.finish();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let totals = scraper.join().unwrap();
    assert!(totals.len() > 10, "too few scrapes: {totals:?}");
    assert!(
        totals.windows(2).all(|w| w[0] <= w[1]),
        "cluster totals went backwards across kills: {totals:?}"
    );

    let last = http::get(&server.addr, "/count")
        .unwrap()
        .json()
        .as_i64()
        .unwrap();
    let values: BTreeSet<i64> = result.acks.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        values.len(),
        result.acks.len(),
        "a value was answered twice"
    );
    assert!(
        values.iter().all(|v| *v > base && *v <= last),
        "an answer is outside {base}..={last}"
    );
    let unacknowledged = (last - base) as usize - result.acks.len();
    assert!(
        unacknowledged <= result.failures.len(),
        "{unacknowledged} increments without an answer but only {} failed requests",
        result.failures.len()
    );
    let restarts: u64 = server.workers().iter().map(|w| w.restarts).sum();
    assert_eq!(restarts, KILLS as u64);
    let answered_by: BTreeSet<u32> = result.acks.iter().map(|(_, p)| *p).collect();
    assert!(
        killed.iter().any(|k| answered_by.contains(k)),
        "the kills hit no worker that was serving the load"
    );
    eprintln!(
        "{KILLS} kills: {} acknowledged, {} failed, {} counted without an answer",
        result.acks.len(),
        result.failures.len(),
        unacknowledged
    );
}
