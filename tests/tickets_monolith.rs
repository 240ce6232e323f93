//! The ticket monolith under `/tickets` on 4 real workers: a show of 10 seats never oversells
//! under 50 concurrent bookings, a cancel gives its seats back once, and bad input is a
//! clear 4xx that changes nothing.

mod common;

use std::collections::BTreeSet;

use common::cluster;
use common::tickets::{call, call_raw, create_show, guests_by_name, race};
use serde_json::json;

#[test]
fn fifty_concurrent_bookings_of_ten_seats_never_oversell() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster::start(dir.path(), &["--workers", "4"]);
    let show = create_show(&c.addr, "/tickets", "Hamilton", 10);
    let bookings: Vec<(String, i64)> = (0..50).map(|i| (format!("guest-{i:02}"), 1)).collect();
    let attempts = race(&c.addr, "/tickets/reserveTickets", &show, &bookings);

    let won: BTreeSet<String> = attempts
        .iter()
        .filter(|a| a.status == 201)
        .map(|a| a.name.clone())
        .collect();
    assert_eq!(won.len(), 10, "exactly the house: {attempts:?}");
    for a in &attempts {
        match a.status {
            201 => assert_eq!(
                a.body,
                json!({ "success": true, "showID": show, "name": a.name, "guests": 1 })
            ),
            409 => assert_eq!(
                a.body["error"], "cannot reserve 1 seats. Only 0 remaining.",
                "{a:?}"
            ),
            _ => panic!("neither booked nor refused: {a:?}"),
        }
    }
    let (_, s) = call(&c.addr, "GET", &format!("/tickets/show/{show}"), None);
    assert_eq!(s["reserved"], 10);
    assert_eq!(s.get("held"), None, "the monolith has no holds: {s}");
    let (status, list) = call(
        &c.addr,
        "GET",
        &format!("/tickets/reservations/{show}"),
        None,
    );
    assert_eq!(status, 200);
    let booked = guests_by_name(&list);
    assert_eq!(booked.keys().cloned().collect::<BTreeSet<_>>(), won);
    assert!(booked.values().all(|&g| g == 1));
    // The lesson's GET /: shows and reservations by show.
    let (_, all) = call(&c.addr, "GET", "/tickets", None);
    assert_eq!(all["shows"][0]["_id"], show.as_str());
    assert_eq!(all["reservations"][&show], list);
}

#[test]
fn cancel_gives_the_seats_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster::start(dir.path(), &["--workers", "2"]);
    let show = create_show(&c.addr, "/tickets", "Cats", 5);
    // Form-encoded, count as a decimal string, as the lesson's clients send it.
    let (status, body) = call_raw(
        &c.addr,
        "POST",
        "/tickets/reserveTickets",
        "application/x-www-form-urlencoded",
        &format!("showID={show}&name=alice&count=3"),
    );
    assert_eq!((status, &body["guests"]), (201, &json!(3)), "{body}");
    let (_, s) = call(&c.addr, "GET", &format!("/tickets/show/{show}"), None);
    assert_eq!(s["reserved"], 3);
    let (status, refused) = call(
        &c.addr,
        "POST",
        "/tickets/reserveTickets",
        Some(json!({ "showID": show, "name": "alice", "count": 1 })),
    );
    assert_eq!(status, 409);
    assert_eq!(
        refused["error"],
        "alice already holds a reservation for this show"
    );

    let cancel = json!({ "showID": show, "name": "alice" });
    let (status, body) = call(&c.addr, "DELETE", "/tickets/cancel", Some(cancel.clone()));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "canceled": true, "showID": show, "name": "alice", "guests": 3 })
    );
    let (_, s) = call(&c.addr, "GET", &format!("/tickets/show/{show}"), None);
    assert_eq!(s["reserved"], 0, "the seats went back");
    let (status, again) = call(&c.addr, "DELETE", "/tickets/cancel", Some(cancel));
    assert_eq!(status, 404, "{again}");
    assert!(again["error"].as_str().unwrap().contains("alice"));
    let (_, s) = call(&c.addr, "GET", &format!("/tickets/show/{show}"), None);
    assert_eq!(s["reserved"], 0, "a second cancel gives nothing back");
    // The lesson's hold/release adjust reserved directly; release never goes below 0.
    let (_, s) = call(
        &c.addr,
        "PUT",
        "/tickets/hold-seats",
        Some(json!({ "showID": show, "count": 5 })),
    );
    assert_eq!(s["reserved"], 5);
    let (status, e) = call(
        &c.addr,
        "PUT",
        "/tickets/hold-seats",
        Some(json!({ "showID": show, "count": 1 })),
    );
    assert_eq!(
        (status, &e["error"]),
        (409, &json!("cannot reserve 1 seats. Only 0 remaining."))
    );
    let (_, s) = call(
        &c.addr,
        "PUT",
        "/tickets/release-seats",
        Some(json!({ "showID": show, "count": 7 })),
    );
    assert_eq!(s["reserved"], 0);
}

#[test]
fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster::start(dir.path(), &["--workers", "1"]);
    let show = create_show(&c.addr, "/tickets", "Rent", 10);
    let reserve =
        |count: serde_json::Value| json!({ "showID": show, "name": "bob", "count": count });
    let json_cases = [
        ("POST", "/tickets/reserveTickets", json!({}), 400, "showID"),
        (
            "POST",
            "/tickets/reserveTickets",
            json!({ "showID": show, "count": 1 }),
            400,
            "name",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            json!({ "showID": show, "name": "bob" }),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(0)),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(-2)),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(5_000_000)),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(1e30)),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!("99999999999999999999")),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!("3abc")),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(2.5)),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!("")),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(true)),
            400,
            "count",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            reserve(json!(11)),
            409,
            "Only 10 remaining",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            json!({ "showID": "nope", "name": "bob", "count": 1 }),
            404,
            "nope",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            json!({ "showID": show, "name": "b{o}b", "count": 1 }),
            400,
            "name",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            json!({ "showID": show, "name": "", "count": 1 }),
            400,
            "name",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            json!({ "showID": show, "name": 7, "count": 1 }),
            400,
            "name",
        ),
        (
            "POST",
            "/tickets/reserveTickets",
            json!([show, "bob", 1]),
            400,
            "object",
        ),
        (
            "PUT",
            "/tickets/hold-seats",
            json!({ "showID": show, "count": "3abc" }),
            400,
            "count",
        ),
        (
            "PUT",
            "/tickets/hold-seats",
            json!({ "showID": "nope", "count": 1 }),
            404,
            "nope",
        ),
        (
            "PUT",
            "/tickets/release-seats",
            json!({ "showID": show, "count": 0 }),
            400,
            "count",
        ),
        (
            "DELETE",
            "/tickets/cancel",
            json!({ "showID": show, "name": "nobody" }),
            404,
            "nobody",
        ),
        (
            "DELETE",
            "/tickets/cancel",
            json!({ "showID": "nope", "name": "bob" }),
            404,
            "nope",
        ),
        (
            "POST",
            "/tickets/shows",
            json!({ "name": "Big", "houseSize": 0 }),
            400,
            "houseSize",
        ),
        (
            "POST",
            "/tickets/shows",
            json!({ "houseSize": 10 }),
            400,
            "name",
        ),
    ];
    for (method, path, body, want, needle) in json_cases {
        let (status, answer) = call(&c.addr, method, path, Some(body.clone()));
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, want, "{method} {path} {body}: {answer}");
        assert!(
            error.contains(needle),
            "{method} {path} {body}: {error:?} lacks {needle:?}"
        );
    }
    let raw_cases = [
        ("application/json", "{\"showID\":", 400),
        ("application/json", "not json", 400),
        ("text/plain", "showID=x&name=bob&count=1", 415),
    ];
    for (kind, body, want) in raw_cases {
        let (status, answer) = call_raw(&c.addr, "POST", "/tickets/reserveTickets", kind, body);
        assert_eq!(status, want, "{kind} {body}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    for path in ["/tickets/show/nope", "/tickets/reservations/nope"] {
        let (status, answer) = call(&c.addr, "GET", path, None);
        assert_eq!(status, 404, "{path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("nope"));
    }
    // Nothing changed: one show, no seats, no reservations.
    let (_, all) = call(&c.addr, "GET", "/tickets", None);
    assert_eq!(all["shows"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["shows"][0]["reserved"], 0, "{all}");
    assert_eq!(all["reservations"], json!({}), "{all}");
}

/// Regression: `release-seats` used to give back booked seats (floor 0), so a show of 10
/// took alice's 10 and bob's 10. It gives back only seats taken by `hold-seats`.
#[test]
fn release_seats_never_frees_a_booked_seat() {
    let dir = tempfile::tempdir().unwrap();
    let c = cluster::start(dir.path(), &["--workers", "1"]);
    let show = create_show(&c.addr, "/tickets", "Annie", 10);
    let book = |name: &str, count: i64| {
        let body = json!({ "showID": show, "name": name, "count": count });
        call(&c.addr, "POST", "/tickets/reserveTickets", Some(body))
    };
    let seats = |path: &str, count: i64| {
        let body = json!({ "showID": show, "count": count });
        call(&c.addr, "PUT", &format!("/tickets/{path}"), Some(body))
    };
    assert_eq!(book("alice", 10).0, 201);
    let (status, s) = seats("release-seats", 10);
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["reserved"], 10, "alice's seats stay hers: {s}");
    let (status, e) = book("bob", 10);
    assert_eq!(
        (status, &e["error"]),
        (409, &json!("cannot reserve 10 seats. Only 0 remaining."))
    );
    let (_, list) = call(
        &c.addr,
        "GET",
        &format!("/tickets/reservations/{show}"),
        None,
    );
    assert_eq!(
        guests_by_name(&list).into_iter().collect::<Vec<_>>(),
        [("alice".to_owned(), 10)]
    );

    // Seats taken by hand are given back, at most as many as were taken; a cancel gives
    // back exactly its booking's seats.
    assert_eq!(
        call(
            &c.addr,
            "DELETE",
            "/tickets/cancel",
            Some(json!({ "showID": show, "name": "alice" }))
        )
        .0,
        200
    );
    assert_eq!(seats("hold-seats", 4).1["reserved"], 4);
    assert_eq!(book("carol", 6).0, 201);
    let (status, s) = seats("release-seats", 9);
    assert_eq!((status, &s["reserved"]), (200, &json!(6)), "{s}");
    assert_eq!(
        seats("release-seats", 1).1["reserved"],
        6,
        "never carol's seats"
    );
    assert_eq!(book("dave", 5).0, 409, "4 seats left, not 5");
    assert_eq!(book("dave", 4).0, 201);
    let (_, s) = call(&c.addr, "GET", &format!("/tickets/show/{show}"), None);
    assert_eq!(s["reserved"], 10, "{s}");
}
