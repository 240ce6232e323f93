//! A slow prime never delays the counter: while two prime checks of the largest 64-bit prime
//! (seconds of trial division each) are running, a burst of `GET /` requests all complete
//! before either of them. An ordering assertion, not a timing threshold.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::cluster;
use common::http::{Client, ResponseExt};

const LARGE_PRIME: u64 = 18_446_744_073_709_551_557;
const BURST: usize = 40;

#[test]
fn counter_requests_overtake_running_prime_checks() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(
        &dir.path().join("shards"),
        &["--workers", "1", "--request-timeout", "120s"],
    );
    let (done, order) = mpsc::channel::<&'static str>();

    let primes: Vec<_> = (0..2)
        .map(|_| {
            let (addr, done) = (server.addr.clone(), done.clone());
            std::thread::spawn(move || {
                let r = Client::new(&addr)
                    .get(&format!("/isprime?number={LARGE_PRIME}"))
                    .unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                assert_eq!(r.json()["isPrime"], serde_json::json!(true));
                done.send("prime").unwrap();
            })
        })
        .collect();

    // Both computations have started before the burst.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = Client::new(&server.addr);
    loop {
        let s = stats.get("/stats").unwrap().json();
        if s["workers"][0]["isprime_running"] == serde_json::json!(2) {
            break;
        }
        assert!(Instant::now() < deadline, "prime checks never started: {s}");
        std::thread::sleep(Duration::from_millis(10));
    }

    let hits: Vec<_> = (0..BURST)
        .map(|_| {
            let (addr, done) = (server.addr.clone(), done.clone());
            std::thread::spawn(move || {
                let r = Client::new(&addr).get("/").unwrap();
                assert_eq!(r.status, 200);
                done.send("hit").unwrap();
            })
        })
        .collect();
    drop(done);
    for h in hits.into_iter().chain(primes) {
        h.join().unwrap();
    }
    let order: Vec<&str> = order.iter().collect();
    assert_eq!(order.len(), BURST + 2);
    assert!(
        order[..BURST].iter().all(|e| *e == "hit"),
        "a prime check finished before the burst of / did: {order:?}"
    );
}
