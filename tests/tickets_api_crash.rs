//! The api killed between hold and confirm (fault switch `api::after-hold` /
//! `api::after-reserve`, test builds only): after the hold TTL, every show's seats agree with
//! its reservations and nothing stays held. Needs `cargo test --features failpoints`.

#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::tickets::{Decomposed, call, call_with, create_show};
use serde_json::json;

#[test]
fn an_api_killed_mid_booking_leaves_consistent_shows_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let failpoints =
        "api::after-hold=return(crash-hold-);api::after-reserve=return(crash-reserve-)";
    // Long enough that the checks right after each crash run well within it.
    let d = Decomposed::start(dir.path(), 1, "6s", &[("FAILPOINTS", failpoints)]);
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
    // Within the TTL bob's held seats count against the house.
    let (_, s) = call(&d.shows.addr, "GET", &format!("/show/{a}"), None);
    assert_eq!((&s["reserved"], &s["held"]), (&json!(2), &json!(3)), "{s}");
    wait_api();
    // Dies after carol's reservation of 4 seats of B exists, before confirming its hold.
    assert!(
        book(&b, "crash-reserve-carol", 4).is_err(),
        "the worker died mid-request"
    );
    // Carol's reservation exists; until her hold is confirmed its seats are held.
    let (_, s) = call(&d.shows.addr, "GET", &format!("/show/{b}"), None);
    assert_eq!((&s["reserved"], &s["held"]), (&json!(0), &json!(4)), "{s}");
    wait_api();

    let deadline = Instant::now() + Duration::from_secs(30);
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
            "not settled 30 s after the crashes: {} {}",
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

/// Regression: a retry that took over from an attempt whose api died after reserving held
/// seats afresh first; with the house full of that attempt's own seats it stored the
/// sold-out 409 as the key's final answer although the booking existed. The takeover now
/// settles the dead attempt's hold first and answers its booking.
#[test]
fn a_retry_taking_over_from_a_dead_attempt_answers_its_booking_even_when_sold_out() {
    let dir = tempfile::tempdir().unwrap();
    let failpoints = "api::after-reserve=return(crash-)";
    let d = Decomposed::start(dir.path(), 1, "1s", &[("FAILPOINTS", failpoints)]);
    let show = create_show(&d.shows.addr, "", "Chess", 4);
    let booking = json!({ "showID": show, "name": "crash-erin", "count": 4 });
    let key = [("idempotency-key", "erin-1")];
    let payload = booking.to_string();
    let mut client = common::http::Client::new(&d.api.addr);
    let sent = client.send(
        "POST",
        "/reserve",
        &[
            ("content-type", "application/json"),
            ("connection", "close"),
            key[0],
        ],
        payload.as_bytes(),
    );
    assert!(sent.is_err(), "the worker died after the reservation");
    d.api.wait_workers(
        "the api worker is back",
        Duration::from_secs(20),
        common::cluster::online(1),
    );
    // Retry until the dead attempt's lease (TTL + 3 call timeouts) is over.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (status, body) = loop {
        let (status, body) =
            call_with(&d.api.addr, "POST", "/reserve", Some(booking.clone()), &key);
        let waiting = status == 409
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("still in progress"));
        if !waiting {
            break (status, body);
        }
        assert!(Instant::now() < deadline, "the lease never ended: {body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let answer = json!({ "success": true, "showID": show, "name": "crash-erin", "guests": 4 });
    assert_eq!(
        (status, &body),
        (201, &answer),
        "the dead attempt's booking"
    );
    assert_eq!(
        call_with(&d.api.addr, "POST", "/reserve", Some(booking), &key),
        (201, answer),
        "stored as the key's answer"
    );
    let s = d.show(&show);
    assert_eq!((&s["reserved"], s.get("held")), (&json!(4), None), "{s}");
    assert_eq!(d.reservations(&show).get("crash-erin"), Some(&4));
}
