//! The api killed between hold and confirm (fault switch `api::after-hold` /
//! `api::after-reserve`, test builds only): after the hold TTL, every show's seats agree with
//! its reservations and nothing stays held. Needs `cargo test --features failpoints`.

#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::tickets::{Decomposed, call, create_show};
use serde_json::json;

#[test]
fn an_api_killed_mid_booking_leaves_consistent_shows_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let failpoints =
        "api::after-hold=return(crash-hold-);api::after-reserve=return(crash-reserve-)";
    let d = Decomposed::start(dir.path(), 1, "2s", &[("FAILPOINTS", failpoints)]);
    let a = create_show(&d.shows.addr, "", "A", 10);
    let b = create_show(&d.shows.addr, "", "B", 10);
    let book = |show: &str, name: &str, count: i64| {
        let body = json!({ "showID": show, "name": name, "count": count });
        let mut client = common::http::Client::new(&d.api.addr);
        let payload = body.to_string();
        client.send(
            "POST",
            "/reserve",
            &[
                ("content-type", "application/json"),
                ("connection", "close"),
            ],
            payload.as_bytes(),
        )
    };
    let wait_api = || {
        d.api.wait_workers(
            "the api worker is back",
            Duration::from_secs(20),
            common::cluster::online(1),
        );
    };

    assert_eq!(book(&a, "alice", 2).unwrap().status, 201);
    // Dies after holding 3 seats of A, before any reservation.
    assert!(
        book(&a, "crash-hold-bob", 3).is_err(),
        "the worker died mid-request"
    );
    wait_api();
    // Dies after carol's reservation of 4 seats of B exists, before confirming its hold.
    assert!(
        book(&b, "crash-reserve-carol", 4).is_err(),
        "the worker died mid-request"
    );
    wait_api();

    // Within the TTL the held seats count against the house.
    let (_, shown_a) = call(&d.shows.addr, "GET", &format!("/show/{a}"), None);
    assert!(shown_a["reserved"].as_i64().unwrap() + shown_a["held"].as_i64().unwrap_or(0) <= 10);

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut settled = true;
        for id in [&a, &b] {
            let s = d.show(id);
            let (reserved, held) = (
                s["reserved"].as_i64().unwrap(),
                s["held"].as_i64().unwrap_or(0),
            );
            assert!(reserved + held <= 10, "never oversold: {s}");
            let guests: i64 = d.reservations(id).values().sum();
            settled &= held == 0 && reserved == guests;
        }
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled 20 s after the crashes: {} {}",
            d.show(&a),
            d.show(&b)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bob's hold was released (no reservation used it); carol's reservation got its seats.
    assert_eq!(d.show(&a)["reserved"], 2);
    assert_eq!(d.reservations(&a).keys().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(d.show(&b)["reserved"], 4);
    assert_eq!(d.reservations(&b).get("crash-reserve-carol"), Some(&4));
    // The freed seats are for sale again: 8 left on A.
    assert_eq!(book(&a, "dave", 8).unwrap().status, 201);
    assert_eq!(d.show(&a)["reserved"], 10);
}
