//! Ticket-system helpers: JSON calls, shows, a concurrent booking race, and the decomposed
//! system (shows, reservations, api) as three real clusters.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier};

use serde_json::{Value, json};

use super::cluster::{self, Cluster};
use super::http::Client;

/// One call with an optional JSON body; answers the status and the JSON body (`null` if
/// empty). Panics if the body is neither empty nor JSON: every answer must be JSON.
pub fn call(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_with(addr, method, path, body, &[])
}

/// Like [`call`], with extra headers.
pub fn call_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut client = Client::new(addr);
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut all = vec![("connection", "close")];
    if !bytes.is_empty() {
        all.push(("content-type", "application/json"));
    }
    all.extend_from_slice(headers);
    let r = client
        .send(method, path, &all, bytes.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, parse(&r.body, method, path, r.status))
}

/// Sends a raw body with a content type.
pub fn call_raw(addr: &str, method: &str, path: &str, kind: &str, body: &str) -> (u16, Value) {
    let mut client = Client::new(addr);
    let r = client
        .send(
            method,
            path,
            &[("connection", "close"), ("content-type", kind)],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (r.status, parse(&r.body, method, path, r.status))
}

fn parse(body: &[u8], method: &str, path: &str, status: u16) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "{method} {path} answered {status} with a body that is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })
}

/// Creates a show at `prefix/shows` and returns its id.
pub fn create_show(addr: &str, prefix: &str, name: &str, house: i64) -> String {
    let (status, show) = call(
        addr,
        "POST",
        &format!("{prefix}/shows"),
        Some(json!({ "name": name, "houseSize": house })),
    );
    assert_eq!(status, 201, "{show}");
    assert_eq!(show["reserved"], 0);
    assert_eq!(show["houseSize"], house);
    show["_id"].as_str().expect("an _id").to_owned()
}

/// One booking of a race and how it ended.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub name: String,
    pub count: i64,
    pub status: u16,
    pub body: Value,
}

/// Sends every booking `(name, count)` at once (one thread each, released together) as
/// `POST path {"showID","name","count"}`.
pub fn race(addr: &str, path: &str, show: &str, bookings: &[(String, i64)]) -> Vec<Attempt> {
    let start = Arc::new(Barrier::new(bookings.len()));
    let threads: Vec<_> = bookings
        .iter()
        .cloned()
        .map(|(name, count)| {
            let (addr, path, show, start) = (
                addr.to_owned(),
                path.to_owned(),
                show.to_owned(),
                start.clone(),
            );
            std::thread::spawn(move || {
                let body = json!({ "showID": show, "name": name, "count": count });
                start.wait();
                let (status, body) = call(&addr, "POST", &path, Some(body));
                Attempt {
                    name,
                    count,
                    status,
                    body,
                }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// The names and guests of a reservation list, by name.
pub fn guests_by_name(list: &Value) -> BTreeMap<String, i64> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["guests"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The decomposed system: three clusters on OS-assigned ports, each with its own data dir.
pub struct Decomposed {
    pub shows: Cluster,
    pub reservations: Cluster,
    pub api: Cluster,
}

impl Decomposed {
    /// Starts shows and reservations with 2 workers each and the api with `api_workers`,
    /// holds lasting `ttl`; `env` goes to every cluster (FAILPOINTS).
    pub fn start(root: &Path, api_workers: u32, ttl: &str, env: &[(&str, &str)]) -> Decomposed {
        let shows = cluster::start_with_env(
            &root.join("shows"),
            &["--service", "shows", "--workers", "2"],
            env,
        );
        let reservations = cluster::start_with_env(
            &root.join("reservations"),
            &["--service", "reservations", "--workers", "2"],
            env,
        );
        let api = Decomposed::start_api(root, &shows, &reservations, api_workers, ttl, env);
        Decomposed {
            shows,
            reservations,
            api,
        }
    }

    pub fn start_api(
        root: &Path,
        shows: &Cluster,
        reservations: &Cluster,
        workers: u32,
        ttl: &str,
        env: &[(&str, &str)],
    ) -> Cluster {
        let shows_url = shows.addr.clone();
        let reservations_url = reservations.addr.clone();
        let workers = workers.to_string();
        cluster::start_with_env(
            &root.join("api"),
            &[
                "--service",
                "api",
                "--workers",
                &workers,
                "--shows-url",
                &shows_url,
                "--reservations-url",
                &reservations_url,
                "--hold-ttl",
                ttl,
                "--min-uptime",
                "0s",
            ],
            env,
        )
    }

    /// A show as the api answers it.
    pub fn show(&self, id: &str) -> Value {
        let (status, show) = call(&self.api.addr, "GET", &format!("/show/{id}"), None);
        assert_eq!(status, 200, "{show}");
        show
    }

    /// A show's reservations as the reservations service holds them.
    pub fn reservations(&self, id: &str) -> BTreeMap<String, i64> {
        let (status, list) = call(
            &self.reservations.addr,
            "GET",
            &format!("/reservations/{id}"),
            None,
        );
        assert_eq!(status, 200, "{list}");
        guests_by_name(&list)
    }
}
