//! Regression for issue 9 ("Corrupt and foreign files"): one 4 KiB page of one shard file
//! overwritten with random bytes, page by page, made `check` say `ok` over damaged data or
//! panic inside redb, made `check --repair` and `serve` exit with a backtrace, and made the
//! supervisor panic in redb's `Database::drop` on SIGTERM. Now, for every page of the shard
//! holding the counter of a `hash:8` store with a counter (20 hits) and 50 dogs:
//! - `check` never panics and exits 0 or 1; if it says `ok`, the store opens and every dog
//!   and the counter read back exactly; `check --repair` never panics and says what it did
//!   and, when it cannot repair, what to do next;
//! - the library never panics: an open or a read either gives the right data or
//!   `Corrupted` naming the file, and a shard found damaged stays refused after a reopen;
//! - `serve` (on the pages that made redb panic in the issue, and every page `check` flags)
//!   either refuses to start naming the file, or answers every request correctly or with a
//!   503 JSON, logs no panic, and exits 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster;
use common::http::{Client, ResponseExt};
use shardkv::{Error, Store};

const PAGE: usize = 4096;
const DOGS: usize = 50;
const HITS: i64 = 20;

fn dog(i: usize) -> (String, String) {
    (
        format!("dog{i:02}"),
        ["red", "blue", "gold", "grey"][i % 4].to_owned(),
    )
}

/// A `hash:8` store with the counter at 20 and 50 dogs, made through the real server.
fn make_store(dir: &Path) {
    let mut c = cluster::start(dir, &["--workers", "1", "--shard-by", "hash:8"]);
    let mut client = Client::new(&c.addr);
    for _ in 0..HITS {
        assert_eq!(client.get("/").unwrap().status, 200);
    }
    for i in 0..DOGS {
        let (name, color) = dog(i);
        let body = format!(r#"{{"name":"{name}","color":"{color}"}}"#);
        assert_eq!(client.post_json("/dogs", &body).unwrap().status, 201);
    }
    c.signal(libc::SIGTERM);
    assert!(c.wait_exit(Duration::from_secs(30)).unwrap().success());
}

/// Copies MANIFEST and the shard files (not locks or status files) into `to`.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "MANIFEST" || name.ends_with(".redb") {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

/// Overwrites page `page` of `file` with bytes from a xorshift generator seeded by the page.
fn damage(file: &Path, page: usize) {
    use std::io::{Seek, SeekFrom, Write};
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ (page as u64 + 1);
    let bytes: Vec<u8> = (0..PAGE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start((page * PAGE) as u64)).unwrap();
    f.write_all(&bytes).unwrap();
}

/// Reads the counter and every dog: whether all of them are exactly as written.
fn read_all(store: &Store) -> shardkv::Result<bool> {
    let count = store.get("counters", "requests")?;
    let mut exact = count.as_deref() == Some(HITS.to_string().as_bytes());
    for i in 0..DOGS {
        let (name, color) = dog(i);
        let json = store
            .get("dogs", &name)?
            .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok());
        exact &= json.is_some_and(|j| j["name"] == name.as_str() && j["color"] == color.as_str());
    }
    Ok(exact)
}

fn assert_names(e: &Error, file: &str) {
    assert!(
        matches!(e, Error::Corrupted(m) if m.contains(file)),
        "expected Corrupted naming {file}, got {e:?}"
    );
}

/// The library on a damaged copy: right data or `Corrupted` naming the file, never a panic;
/// a file found damaged while serving is refused by later opens.
fn library_on(dir: &Path, file: &str, check_ok: bool) {
    let store = match Store::open(dir) {
        Ok(store) => store,
        Err(e) => {
            assert!(!check_ok, "check said ok but the open failed: {e}");
            return assert_names(&e, file);
        }
    };
    match read_all(&store) {
        Ok(exact) => assert!(exact || !check_ok, "check said ok but the data differs"),
        Err(e) => {
            assert!(!check_ok, "check said ok but a read failed: {e}");
            assert_names(&e, file);
            drop(store);
            let again = Store::open(dir).expect_err("a shard found damaged opens again");
            assert_names(&again, file);
            assert!(again.to_string().contains("check --repair"), "{again}");
        }
    }
}

/// `shardkv serve` on a damaged copy, with one worker.
fn serve_on(dir: &Path, file: &str, page: usize) {
    let mut child = cluster::serve_command(dir, &["--workers", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child.id());
    let stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| l.strip_prefix("listening on ").map(str::to_owned));
    match addr {
        None => {
            let status = wait(&mut child, Duration::from_secs(20));
            let log = log.join().unwrap();
            assert_eq!(status.code(), Some(1), "page {page}: {log}");
            assert!(
                log.contains(file),
                "page {page}: the refusal names no file: {log}"
            );
            assert!(
                log.contains("check --repair"),
                "page {page}: no advice: {log}"
            );
            assert!(!log.contains("panicked"), "page {page}: {log}");
            eprintln!("page {page}: serve refused to start");
        }
        Some(addr) => {
            let mut client = Client::new(&addr);
            let mut unavailable = 0;
            let mut answer = |path: &str, want: &dyn Fn(&serde_json::Value) -> bool| {
                let r = client.get(path).unwrap();
                let json = r.json();
                assert!(
                    (r.status == 200 && want(&json))
                        || (r.status == 503 && json["error"].is_string()),
                    "page {page}: GET {path} answered {} {json}",
                    r.status
                );
                unavailable += usize::from(r.status == 503);
            };
            answer("/count", &|v| v == HITS);
            for i in 0..DOGS {
                let (name, color) = dog(i);
                answer(&format!("/dogs/{name}"), &|v| {
                    v["name"] == name.as_str() && v["color"] == color.as_str()
                });
            }
            answer("/", &|v| v.as_i64().is_some_and(|n| n > HITS));
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = wait(&mut child, Duration::from_secs(30));
            let log = log.join().unwrap();
            assert!(status.success(), "page {page}: exit {status}: {log}");
            assert!(!log.contains("panicked"), "page {page}: {log}");
            eprintln!("page {page}: served, {unavailable} of 52 answers 503");
            if unavailable > 0 {
                // The damage it met while serving is remembered: a restart refuses the file.
                let (status, log) =
                    cluster::start_failing(dir, &["--workers", "1"], &[], Duration::from_secs(30));
                assert!(
                    !status.success(),
                    "page {page}: restarted on a damaged file"
                );
                assert!(
                    log.contains(file) && log.contains("check --repair"),
                    "{log}"
                );
            }
        }
    }
    drop(guard);
}

fn wait(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "shardkv serve did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, by its pid; harmless if it already exited.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

#[test]
fn every_damaged_page_is_reported_or_harmless_never_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    make_store(&base);
    let shard = Store::open(&base).unwrap().shard_of("requests");
    let file = format!("shard-{shard:03}.redb");
    let pages = std::fs::metadata(base.join(&file)).unwrap().len() as usize / PAGE;
    assert!(pages >= 8, "{file} has only {pages} pages");
    // Where redb panicked in the issue (of an 18-page file), and wherever check finds damage.
    let mut serve_pages: Vec<usize> = [2, 4, 5, 7, 8, 13, 17]
        .into_iter()
        .filter(|&p| p < pages)
        .collect();
    let mut flagged = 0;
    for page in 0..pages {
        let dir = tmp.path().join(format!("page-{page}"));
        copy_store(&base, &dir);
        damage(&dir.join(&file), page);
        let out = cluster::shardkv(&["check", "--data", dir.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "page {page}: {stderr}");
        let row = stdout
            .lines()
            .find(|l| l.contains(&file))
            .unwrap_or_else(|| panic!("page {page}: no row for {file}: {stdout}{stderr}"));
        match out.status.code() {
            Some(0) => assert!(row.contains(" ok "), "page {page}: {row}"),
            Some(1) => {
                assert!(row.contains("CORRUPTED"), "page {page}: {stdout}");
                let others_ok = stdout
                    .lines()
                    .filter(|l| l.contains(".redb") && !l.contains(&file))
                    .all(|l| l.contains(" ok "));
                assert!(others_ok, "page {page}: {stdout}");
                flagged += 1;
                if !serve_pages.contains(&page) {
                    serve_pages.push(page);
                }
            }
            other => panic!("page {page}: check exited {other:?}: {stdout}{stderr}"),
        }
        eprintln!("page {page}: check exit {:?}", out.status.code());
        library_on(&dir, &file, out.status.success());
        // A repair says what it did, and never panics either (closing a file it could not
        // repair made redb panic in its drop).
        let out = cluster::shardkv(&["check", "--repair", "--data", dir.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked"),
            "page {page}: repair: {stderr}"
        );
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "page {page}: repair exited {:?}: {stdout}{stderr}",
            out.status.code()
        );
        assert!(stdout.contains("repair: "), "page {page}: {stdout}");
        if !out.status.success() {
            assert!(
                stdout.contains("next: "),
                "page {page}: no advice: {stdout}"
            );
        }
    }
    assert!(
        flagged > 0,
        "no damaged page was found: the check reads too little"
    );
    for page in serve_pages {
        let dir = tmp.path().join(format!("serve-{page}"));
        copy_store(&base, &dir);
        damage(&dir.join(&file), page);
        serve_on(&dir, &file, page);
    }
}
