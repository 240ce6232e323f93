//! The decomposed ticket system as three real clusters (shows and reservations on 2 workers
//! each, the api in front): concurrent bookings never oversell, a cancel gives its seats
//! back, a stopped reservations service is a 503 that holds nothing, and a retried booking
//! with the same Idempotency-Key books once; every service serves `/stats` naming itself and
//! the dashboard.

mod common;

use std::collections::BTreeMap;

use common::tickets::{Decomposed, call, call_with, create_show, race};
use serde_json::json;

#[test]
fn fifty_concurrent_bookings_through_the_api_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let d = Decomposed::start(dir.path(), 2, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Wicked", 10);
    let bookings: Vec<(String, i64)> = (0..50)
        .map(|i| (format!("guest-{i:02}"), i % 3 + 1))
        .collect();
    let attempts = race(&d.api.addr, "/reserve", &show, &bookings);

    let mut won = BTreeMap::new();
    for a in &attempts {
        match a.status {
            201 => {
                assert_eq!(
                    a.body,
                    json!({ "success": true, "showID": show, "name": a.name, "guests": a.count })
                );
                won.insert(a.name.clone(), a.count);
            }
            409 => assert!(
                a.body["error"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("cannot reserve {} seats. Only ", a.count)),
                "{a:?}"
            ),
            _ => panic!("neither booked nor refused: {a:?}"),
        }
    }
    let sum: i64 = won.values().sum();
    // Seats taken only grow here (no booking fails after its hold), so if any seat were
    // left every 1-seat booking would have had it: the house fills exactly.
    assert_eq!(sum, 10, "{attempts:?}");
    let s = d.show(&show);
    assert_eq!(s["reserved"], sum, "{s}");
    assert_eq!(s.get("held"), None, "no hold left: {s}");
    assert_eq!(d.reservations(&show), won);
    // The api's GET / relays the shows service's.
    let (status, shows) = call(&d.api.addr, "GET", "/", None);
    assert_eq!((status, &shows[0]["reserved"]), (200, &json!(10)));
}

#[test]
fn cancel_through_the_api_gives_the_seats_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Decomposed::start(dir.path(), 1, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Cats", 5);
    let booking = json!({ "showID": show, "name": "alice", "count": 3 });
    let (status, body) = call(&d.api.addr, "POST", "/reserve", Some(booking));
    assert_eq!(status, 201, "{body}");
    assert_eq!(d.show(&show)["reserved"], 3);

    let cancel = json!({ "showID": show, "name": "alice" });
    let (status, body) = call(&d.api.addr, "DELETE", "/cancel", Some(cancel.clone()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "canceled": true, "showID": show, "name": "alice", "guests": 3 })
    );
    assert_eq!(d.show(&show)["reserved"], 0, "the seats went back");
    assert!(d.reservations(&show).is_empty());
    let (status, again) = call(&d.api.addr, "DELETE", "/cancel", Some(cancel));
    assert_eq!(status, 404, "{again}");
    assert_eq!(d.show(&show)["reserved"], 0);
    // Unknown shows are 404 through the api too.
    let (status, e) = call(
        &d.api.addr,
        "POST",
        "/reserve",
        Some(json!({ "showID": "nope", "name": "bob", "count": 1 })),
    );
    assert_eq!(status, 404, "{e}");
    let (status, _) = call(&d.api.addr, "GET", "/show/nope", None);
    assert_eq!(status, 404);
}

#[test]
fn a_stopped_reservations_service_is_a_503_that_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Decomposed::start(dir.path(), 1, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Rent", 10);
    let (status, _) = call(
        &d.api.addr,
        "POST",
        "/reserve",
        Some(json!({ "showID": show, "name": "alice", "count": 2 })),
    );
    assert_eq!(status, 201);

    d.reservations.signal(libc::SIGTERM);
    assert!(
        d.reservations
            .wait_exit(std::time::Duration::from_secs(20))
            .is_some_and(|s| s.success()),
        "the reservations service stops"
    );
    let (status, body) = call(
        &d.api.addr,
        "POST",
        "/reserve",
        Some(json!({ "showID": show, "name": "bob", "count": 3 })),
    );
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("reservations service"),
        "{body}"
    );
    // Well within the 30 s TTL: the hold was released at once, nothing else moved.
    let s = d.show(&show);
    assert_eq!(s["reserved"], 2, "{s}");
    assert_eq!(s.get("held"), None, "{s}");
}

#[test]
fn a_retried_booking_with_the_same_idempotency_key_books_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Decomposed::start(dir.path(), 2, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Evita", 10);
    let booking = json!({ "showID": show, "name": "alice", "count": 2 });
    let key = [("idempotency-key", "booking-7f3a")];
    let (status, first) = call_with(&d.api.addr, "POST", "/reserve", Some(booking.clone()), &key);
    assert_eq!(status, 201, "{first}");
    // Retries, sequential and concurrent, all get the first answer.
    let retries: Vec<_> = (0..6)
        .map(|_| {
            let (addr, booking) = (d.api.addr.clone(), booking.clone());
            std::thread::spawn(move || {
                call_with(
                    &addr,
                    "POST",
                    "/reserve",
                    Some(booking),
                    &[("idempotency-key", "booking-7f3a")],
                )
            })
        })
        .collect();
    for r in retries {
        assert_eq!(r.join().unwrap(), (201, first.clone()));
    }
    assert_eq!(d.show(&show)["reserved"], 2, "booked once");
    assert_eq!(
        d.reservations(&show),
        BTreeMap::from([("alice".to_owned(), 2)])
    );
    // The same key for another request is refused; another key for the same name is the
    // usual 409.
    let other = json!({ "showID": show, "name": "alice", "count": 3 });
    let (status, e) = call_with(&d.api.addr, "POST", "/reserve", Some(other), &key);
    assert_eq!(status, 400, "{e}");
    let (status, e) = call_with(
        &d.api.addr,
        "POST",
        "/reserve",
        Some(booking),
        &[("idempotency-key", "booking-other")],
    );
    assert_eq!(status, 409, "{e}");
    assert_eq!(d.show(&show)["reserved"], 2);
    // Each service's data directory shows its own workers; each serves the dashboard, and
    // its /stats names the service.
    for (c, n, service) in [
        (&d.shows, 2, "shows"),
        (&d.reservations, 2, "reservations"),
        (&d.api, 2, "api"),
    ] {
        let out = common::cluster::shardkv(&["status", "--data", c.data.to_str().unwrap()]);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{table}");
        assert_eq!(table.matches("online").count(), n, "{table}");
        let (status, stats) = call(&c.addr, "GET", "/stats", None);
        assert_eq!(status, 200);
        assert_eq!(stats["store"]["service"], service, "{stats}");
        let page = common::http::Client::new(&c.addr)
            .send("GET", "/dashboard", &[("connection", "close")], b"")
            .unwrap();
        assert_eq!(page.status, 200);
        assert!(
            String::from_utf8_lossy(&page.body).contains("<title>shardkv dashboard</title>"),
            "{service} does not serve the dashboard"
        );
    }
}

/// Regression: the shows service's `release-seats` used to give back confirmed seats; a
/// cancel then clamped at 0 and the seats were sold twice (held 15 in a house of 10). It
/// gives back only seats taken by `hold-seats`, and a cancel exactly its booking's.
#[test]
fn release_seats_on_the_shows_service_never_frees_a_booked_or_held_seat() {
    let dir = tempfile::tempdir().unwrap();
    let d = Decomposed::start(dir.path(), 1, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Grease", 10);
    let booking = json!({ "showID": show, "name": "alice", "count": 5 });
    assert_eq!(call(&d.api.addr, "POST", "/reserve", Some(booking)).0, 201);
    let (status, s) = call(
        &d.shows.addr,
        "PUT",
        "/release-seats",
        Some(json!({ "showID": show, "count": 5 })),
    );
    assert_eq!((status, &s["reserved"]), (200, &json!(5)), "{s}");
    let hold = |hold: &str, count: i64| {
        let body = json!({ "showID": show, "holdID": hold, "count": count });
        call(&d.shows.addr, "POST", "/holds", Some(body))
    };
    let (status, e) = hold("bob", 10);
    assert_eq!(status, 409, "only 5 seats are free: {e}");
    assert_eq!(hold("bob", 5).0, 201);
    // Releasing by hand never frees held seats either.
    let (status, s) = call(
        &d.shows.addr,
        "PUT",
        "/release-seats",
        Some(json!({ "showID": show, "count": 10 })),
    );
    assert_eq!(status, 200, "{s}");
    assert_eq!((&s["reserved"], &s["held"]), (&json!(5), &json!(5)), "{s}");
    let cancel = json!({ "showID": show, "name": "alice" });
    assert_eq!(call(&d.api.addr, "DELETE", "/cancel", Some(cancel)).0, 200);
    assert_eq!(hold("carol", 5).0, 201, "alice's seats are back");
    assert_eq!(hold("dave", 1).0, 409, "the house is full");
    let s = d.show(&show);
    assert_eq!((&s["reserved"], &s["held"]), (&json!(0), &json!(10)), "{s}");
}

/// Regression: the reservations service told a voided hold from a taken name by the
/// message's first word, so a guest named "hold music" booking twice got the api's 503
/// "took longer than the seats could be held" instead of the 409, on every retry.
#[test]
fn a_name_starting_with_hold_booking_twice_is_a_409() {
    let dir = tempfile::tempdir().unwrap();
    let d = Decomposed::start(dir.path(), 1, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Tommy", 10);
    let booking = json!({ "showID": show, "name": "hold music", "count": 2 });
    let (status, body) = call(&d.api.addr, "POST", "/reserve", Some(booking.clone()));
    assert_eq!(status, 201, "{body}");
    let (status, e) = call(&d.api.addr, "POST", "/reserve", Some(booking));
    assert_eq!(status, 409, "{e}");
    assert_eq!(
        e["error"],
        "hold music already holds a reservation for this show"
    );
    // The refused attempt's hold went back at once.
    let s = d.show(&show);
    assert_eq!((&s["reserved"], s.get("held")), (&json!(2), None), "{s}");
}

/// Regression: the api built its call to the shows service from the decoded id, so
/// `/show/a%20b` could not be sent (503) and `/show/{id}%3Fx` asked for show `{id}`.
#[test]
fn show_ids_with_reserved_characters_are_looked_up_as_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = Decomposed::start(dir.path(), 1, "30s", &[]);
    let show = create_show(&d.shows.addr, "", "Hair", 10);
    for path in [
        "/show/a%20b".to_owned(),
        format!("/show/{show}%3Fx"),
        format!("/show/{show}%2Fx"),
        format!("/show/{show}%23x"),
        "/show/100%25".to_owned(),
    ] {
        let (status, e) = call(&d.api.addr, "GET", &path, None);
        assert_eq!(status, 404, "{path}: {e}");
        assert!(
            e["error"].as_str().unwrap().contains("no show"),
            "{path}: {e}"
        );
    }
    let (status, e) = call(&d.api.addr, "GET", "/show/a%20b", None);
    assert!(
        e["error"].as_str().unwrap().contains("\"a b\""),
        "{status} {e}"
    );
    assert_eq!(
        call(&d.api.addr, "GET", &format!("/show/{show}"), None).0,
        200
    );
}

/// Regression: a `--hold-ttl` over a day passed the start-up check, but the shows service
/// refuses such holds, so every booking was a 400. It is refused before anything starts.
#[test]
fn a_hold_ttl_over_a_day_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("api");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shardkv"))
        .args([
            "serve",
            "--service",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ])
        .args(["--hold-ttl", "25h", "--data"])
        .arg(&data)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            // SAFETY: plain kill(2) on our own child; SIGTERM stops its workers too.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(std::time::Duration::from_secs(5));
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("shardkv serve --hold-ttl 25h started instead of refusing");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--hold-ttl must be from 100ms to 24h"),
        "{stderr}"
    );
}
