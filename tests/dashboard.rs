//! `GET /dashboard` in a real headless Chromium, against a real 2-worker cluster under load:
//! the page lists every worker, shows a non-zero request rate and one bar per shard, records no
//! JavaScript error, follows a SIGKILLed worker's replacement, says so when `/stats` fails and
//! recovers when it returns; and `/stats` carries every key the page reads, with its type.

mod common;
// A helper of this file only; declared here so the shared `common` module stays untouched.
#[path = "common/browser.rs"]
mod browser;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use browser::Browser;
use common::http::{self, ResponseExt};
use common::{cluster, load};
use serde_json::Value;
use shardkv::ShardBy;

/// What the page shows, read from its DOM.
const PROBE: &str = r##"(() => {
  const q = (root, s) => [...root.querySelectorAll(s)];
  const banner = document.getElementById("banner");
  const text = id => document.getElementById(id).textContent;
  return {
    state: document.body.dataset.state,
    samples: Number(document.body.dataset.samples),
    failures: Number(document.body.dataset.failures || 0),
    banner: getComputedStyle(banner).display === "none" ? "" : banner.textContent,
    errors: q(document, "#js-errors li").map(li => li.textContent),
    rows: q(document, "#workers tr").map(tr => ({
      pid: Number(tr.dataset.pid),
      status: tr.querySelector(".status").textContent,
      rate: tr.querySelector(".rate").textContent,
    })),
    total_rate: Number(document.getElementById("total-rate").dataset.rate || 0),
    panels: q(document, "#shards .panel").map(p => ({
      metric: p.dataset.metric,
      bars: q(p, "rect.bar").map(r => ({ shard: Number(r.dataset.shard), value: Number(r.dataset.value) })),
    })),
    routes: q(document, "#routes tr").map(tr => tr.dataset.route),
    chart_points: (document.querySelector('#chart path[data-name="all routes"]')?.getAttribute("d") || "")
      .split(/[ML]/).filter(Boolean).length,
    store: { service: text("store-service"), data: text("store-data"),
             scheme: text("store-scheme"), shards: text("store-shards") },
  };
})()"##;

/// Whether the page recorded an error; every wait below ends early on one, to report it.
fn broken(page: &Value) -> bool {
    !page["errors"].as_array().unwrap().is_empty()
}

fn pids(page: &Value) -> BTreeSet<u64> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pid"].as_u64().unwrap())
        .collect()
}

fn stats(addr: &str) -> Value {
    http::get(addr, "/stats").unwrap().json()
}

fn stats_pids(stats: &Value) -> BTreeSet<u64> {
    stats["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_u64().unwrap())
        .collect()
}

/// No error recorded by the page itself, nor reported by the browser.
fn assert_no_js_errors(browser: &Browser, page: &Value) {
    assert_eq!(
        page["errors"],
        serde_json::json!([]),
        "the page recorded JavaScript errors"
    );
    let reported = browser.reported_errors();
    assert!(
        reported.is_empty(),
        "the browser reported errors: {reported:#?}"
    );
}

#[test]
fn the_page_shows_workers_load_and_shards_and_follows_a_killed_worker() {
    browser::chromium();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    let server = cluster::start(&data, &["--workers", "2"]);
    server.wait_workers(
        "2 workers online and reporting",
        Duration::from_secs(30),
        |w| cluster::online(2)(w) && w.iter().all(|w| w.reported),
    );
    let load = load::start(&server.addr, 3);
    load.wait_for(100);

    let mut browser = Browser::launch(1280, 1000);
    browser.open(&format!("{}/dashboard", server.addr));
    let before = stats(&server.addr);
    let expected = stats_pids(&before);
    assert_eq!(expected.len(), 2, "/stats: {before:#}");
    let shard_count = before["store"]["shard_count"].as_u64().unwrap();
    let page = browser.wait_for(
        "a row per worker, a non-zero rate and the shards",
        Duration::from_secs(20),
        PROBE,
        |p| {
            if broken(p) {
                return true;
            }
            // Rates need answers a few seconds apart; the page's own polls count as
            // requests, so the load shows once writes do.
            pids(p) == expected
                && p["total_rate"].as_f64().unwrap() > 0.0
                && p["chart_points"].as_u64().unwrap() >= 2
                && p["panels"].as_array().unwrap().len() == 4
                && p["panels"][0]["bars"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["value"].as_f64().unwrap() > 0.0)
        },
    );
    assert_no_js_errors(&browser, &page);
    assert_eq!(page["state"], "ok", "{page:#}");
    assert!(
        page["rows"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "online"),
        "{page:#}"
    );
    assert!(
        page["rows"].as_array().unwrap().iter().any(|r| r["rate"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap_or(0.0)
            > 0.0),
        "no worker row shows a non-zero requests/s: {page:#}"
    );
    for panel in page["panels"].as_array().unwrap() {
        let shards: Vec<u64> = panel["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["shard"].as_u64().unwrap())
            .collect();
        assert_eq!(
            shards,
            (0..shard_count).collect::<Vec<_>>(),
            "one bar per shard in {}",
            panel["metric"]
        );
    }
    // The load increments one key, which lives in one shard: its bar must be the tallest.
    let counter_shard = ShardBy::hash(8)
        .unwrap()
        .shard_of(shardkv::registry::REQUESTS.as_bytes()) as u64;
    let writes = &page["panels"][0];
    assert_eq!(writes["metric"], "writes/s");
    let hottest = writes["bars"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| {
            a["value"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["value"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(hottest["shard"].as_u64(), Some(counter_shard), "{page:#}");
    assert!(hottest["value"].as_f64().unwrap() > 0.0, "{page:#}");
    assert!(
        page["chart_points"].as_u64().unwrap() >= 2,
        "no line in the chart: {page:#}"
    );
    assert!(
        page["routes"].as_array().unwrap().contains(&"GET /".into()),
        "{page:#}"
    );
    assert_eq!(page["store"]["service"], "all");
    assert_eq!(page["store"]["data"], data.display().to_string());
    assert_eq!(page["store"]["scheme"], "hash:8");
    assert_eq!(page["store"]["shards"], shard_count.to_string());
    assert_no_js_errors(&browser, &page);

    // A worker dies: the page drops its row and shows its replacement's pid.
    let victim = *expected.iter().next().unwrap();
    // SAFETY: kill(2) on a worker pid read from /stats, a child of the cluster started above.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let killed_at = Instant::now();
    let page = browser.wait_for(
        "the page shows the killed worker's replacement",
        Duration::from_secs(10),
        PROBE,
        |p| {
            let shown = pids(p);
            broken(p) || shown.len() == 2 && !shown.contains(&victim) && shown != expected
        },
    );
    assert_no_js_errors(&browser, &page);
    let replacement = *pids(&page).difference(&expected).next().unwrap();
    eprintln!(
        "the page showed replacement pid {replacement} {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(
        stats_pids(&stats(&server.addr)).contains(&replacement),
        "the page shows pid {replacement}, which /stats does not list"
    );
    assert_eq!(page["state"], "ok", "{page:#}");
    assert_no_js_errors(&browser, &page);
    let _ = load.finish();
}

/// `shardkv serve` on a fixed port, stopped in `Drop`: the page must get its answers from the
/// same origin again after the first cluster is gone.
struct Server(Child);

impl Server {
    fn start(data: &Path, port: u16) -> Server {
        let child = Command::new(cluster::BIN)
            .args(["serve", "--host", "127.0.0.1", "--workers", "1", "--port"])
            .arg(port.to_string())
            .arg("--data")
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = format!("http://127.0.0.1:{port}");
        while !http::get(&addr, "/healthz").is_ok_and(|r| r.status == 200) {
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!("shardkv serve on port {port} exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "no server on port {port} in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.0.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn the_page_says_when_stats_fail_and_recovers_when_they_return() {
    browser::chromium();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    let mut first = cluster::start(&data, &["--workers", "1"]);
    let port: u16 = first.addr.rsplit(':').next().unwrap().parse().unwrap();
    let mut browser = Browser::launch(1280, 1000);
    browser.open(&format!("{}/dashboard", first.addr));
    let page = browser.wait_for("a first answer", Duration::from_secs(20), PROBE, |p| {
        broken(p) || p["state"] == "ok" && p["rows"].as_array().unwrap().len() == 1
    });
    assert_no_js_errors(&browser, &page);
    let old = pids(&page);

    first.signal(libc::SIGTERM);
    assert!(
        first.wait_exit(Duration::from_secs(20)).is_some(),
        "the cluster did not stop"
    );
    let page = browser.wait_for(
        "the page says /stats fails",
        Duration::from_secs(10),
        PROBE,
        |p| broken(p) || p["state"] == "fail",
    );
    assert_no_js_errors(&browser, &page);
    assert!(
        page["banner"]
            .as_str()
            .unwrap()
            .contains("Cannot read /stats"),
        "no visible failure: {page:#}"
    );
    // The last good answer stays on screen while it retries.
    assert_eq!(pids(&page), old);
    // Still retrying a few seconds later.
    let attempts = |p: &Value| p["failures"].as_u64().unwrap();
    let first_attempts = attempts(&page);
    assert!(first_attempts >= 1, "{page:#}");
    let page = browser.wait_for("more attempts", Duration::from_secs(10), PROBE, |p| {
        attempts(p) >= first_attempts + 2
    });
    assert_eq!(page["state"], "fail");

    let _second = Server::start(&data, port);
    let page = browser.wait_for(
        "the page recovers with the new worker",
        Duration::from_secs(15),
        PROBE,
        |p| {
            broken(p)
                || p["state"] == "ok" && !p["rows"].as_array().unwrap().is_empty() && pids(p) != old
        },
    );
    assert_eq!(page["banner"], "", "the failure notice stayed up: {page:#}");
    assert_no_js_errors(&browser, &page);
}

/// Every key the page's script reads, where it sits in `/stats`, and the type it must have.
const KEYS: &[(&str, &str)] = &[
    ("/pid", "number"),
    ("/store/service", "string"),
    ("/store/data_dir", "string"),
    ("/store/scheme", "string"),
    ("/store/shard_count", "number"),
    ("/totals/requests", "number"),
    ("/totals/by_route", "counts"),
    ("/workers", "array"),
    ("/shards", "array"),
];
const WORKER_KEYS: &[(&str, &str)] = &[
    ("/pid", "number"),
    ("/slot", "number"),
    ("/status", "string"),
    ("/uptime_s", "number"),
    ("/restarts", "number"),
    ("/requests", "number"),
    ("/rss_bytes", "number"),
    ("/by_route", "counts"),
];
const SHARD_KEYS: &[(&str, &str)] = &[
    ("/shard", "number"),
    ("/writes", "number"),
    ("/rejected", "number"),
    ("/commits", "number"),
    ("/lock_wait_us", "number"),
];

fn check(doc: &Value, keys: &[(&str, &str)], page: &str, at: &str) {
    for (pointer, kind) in keys {
        let value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{at}{pointer} is missing from /stats: {doc:#}"));
        let ok = match *kind {
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "counts" => value
                .as_object()
                .is_some_and(|m| !m.is_empty() && m.values().all(Value::is_u64)),
            other => unreachable!("{other}"),
        };
        assert!(ok, "{at}{pointer} should be {kind}, is {value}");
        let name = pointer.rsplit('/').next().unwrap();
        assert!(
            page.contains(&format!(".{name}")),
            "the page no longer reads `{name}`: drop it from this list or fix the page"
        );
    }
}

#[test]
fn stats_has_every_key_the_page_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = cluster::start(&dir.path().join("shards"), &["--workers", "2"]);
    server.wait_workers(
        "2 workers online and reporting",
        Duration::from_secs(30),
        |w| cluster::online(2)(w) && w.iter().all(|w| w.reported),
    );
    for _ in 0..20 {
        assert_eq!(http::get(&server.addr, "/").unwrap().status, 200);
    }
    let page = http::get(&server.addr, "/dashboard").unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.header("x-worker-pid").is_some());
    let page = page.text();
    // Self-contained: no address but the SVG namespace, nothing imported or sourced.
    assert_eq!(
        page.matches("http").count(),
        page.matches("http://www.w3.org/2000/svg").count(),
        "the page refers to another server"
    );
    for outside in ["@import", "@font-face", "src=", "url("] {
        assert!(!page.contains(outside), "the page refers to {outside:?}");
    }

    // Totals are summed from the reports workers publish about once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let doc = loop {
        let doc = stats(&server.addr);
        if doc["workers"].as_array().unwrap().len() == 2
            && doc["totals"]["by_route"]["GET /"].as_u64() >= Some(20)
        {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "/stats never listed 2 workers: {doc:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    check(&doc, KEYS, &page, "");
    assert_eq!(doc["store"]["service"], "all");
    let shard_count = doc["store"]["shard_count"].as_u64().unwrap();
    assert_eq!(doc["shards"].as_array().unwrap().len() as u64, shard_count);
    for (i, shard) in doc["shards"].as_array().unwrap().iter().enumerate() {
        check(shard, SHARD_KEYS, &page, &format!("/shards/{i}"));
    }
    let mut slots = BTreeSet::new();
    for (i, worker) in doc["workers"].as_array().unwrap().iter().enumerate() {
        check(worker, WORKER_KEYS, &page, &format!("/workers/{i}"));
        slots.insert(worker["slot"].as_u64().unwrap());
        assert_eq!(worker["status"], "online", "{worker:#}");
    }
    assert_eq!(slots, BTreeSet::from([0, 1]), "{doc:#}");
}

/// Regenerates `docs/dashboard.png` (or `$SHARDKV_SCREENSHOT`): a 4-worker `alpha:a-m,n-z`
/// cluster for about 80 s under a counter load plus dog inserts over both ranges, with one
/// worker SIGKILLed and one rolling reload on the way, so the picture shows a hot shard, the
/// rate line through both events, and the replaced pids. Run it by hand:
/// `cargo test --release --test dashboard -- --ignored --nocapture`.
#[test]
#[ignore = "writes docs/dashboard.png; run by hand"]
fn screenshot_for_the_readme() {
    browser::chromium();
    let out = std::env::var_os("SHARDKV_SCREENSHOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png"),
        std::path::PathBuf::from,
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shards");
    let server = cluster::start(&data, &["--workers", "4", "--shard-by", "alpha:a-m,n-z"]);
    server.wait_workers("4 workers online", Duration::from_secs(30), |w| {
        cluster::online(4)(w) && w.iter().all(|w| w.reported)
    });
    let counter = load::start(&server.addr, 3);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dogs = {
        let (addr, stop) = (server.addr.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut client = http::Client::new(&addr);
            let colors = ["orange", "black", "white", "brown"];
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Names spread over a-z, so both shards take inserts.
                let letter = (b'a' + (i * 7 % 26) as u8) as char;
                let body = format!(
                    r#"{{"name":"{letter}dog{i}","color":"{}"}}"#,
                    colors[i as usize % colors.len()]
                );
                let _ = client.post_json("/dogs", &body);
                let _ = client.get(&format!("/dogs?color={}&limit=5", colors[i as usize % 4]));
                i += 1;
            }
        })
    };
    let mut browser = Browser::launch(1400, 1150);
    browser.open(&format!("{}/dashboard", server.addr));
    std::thread::sleep(Duration::from_secs(30));
    let victim = server.online_pids()[1];
    // SAFETY: kill(2) on a worker pid read from the status file.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(20));
    let reload = cluster::shardkv(&["reload", "--data", data.to_str().unwrap()]);
    assert!(reload.status.success(), "{reload:?}");
    std::thread::sleep(Duration::from_secs(25));
    let page = browser.eval(PROBE);
    assert_no_js_errors(&browser, &page);
    assert_eq!(page["rows"].as_array().unwrap().len(), 4, "{page:#}");
    std::fs::write(&out, browser.screenshot()).unwrap();
    eprintln!("wrote {}", out.display());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    dogs.join().unwrap();
    let _ = counter.finish();
}
