//! Hostile clients at hyper's level. hyper used to answer some requests itself, with bare
//! non-JSON responses and no `x-worker-pid` (a head over 16 KiB, a malformed request line, a
//! bad Content-Length, both Content-Length and Transfer-Encoding): each is now a JSON error
//! with `x-worker-pid`, after the answers to the requests before it. A client dribbling its
//! head is cut off at the header timeout while others are served; a body that never ends is
//! a 408. And idle keep-alive connections cannot lock new clients out: at the connection cap
//! (reached here by starting the server under a low open-file limit), the idle connection
//! quiet longest is closed to make room.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster;
use common::http::{connect, read_until_closed};

/// One response read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Panics unless this is a JSON error from a worker.
    fn assert_json_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        let pid: u32 = self
            .header("x-worker-pid")
            .unwrap_or_else(|| panic!("no x-worker-pid: {self:?}"))
            .parse()
            .unwrap();
        assert!(pid > 0);
        assert_eq!(self.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"));
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
}

/// Reads until the server closes the connection (panics after `within`), then splits what
/// came into responses.
fn read_all(stream: &mut TcpStream, within: Duration) -> Vec<Answer> {
    parse_answers(&read_until_closed(stream, within))
}

/// Reads exactly one response (by its Content-Length) and leaves the connection open.
fn read_one(stream: &mut TcpStream) -> Answer {
    let mut all = Vec::new();
    let mut byte = [0u8; 1];
    while !all.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "closed mid-head: {all:?}"
        );
        all.push(byte[0]);
    }
    let head = parse_answers(&all).pop().unwrap();
    let len: usize = head.header("content-length").unwrap().parse().unwrap();
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    Answer { body, ..head }
}

fn parse_answers(mut bytes: &[u8]) -> Vec<Answer> {
    let mut answers = Vec::new();
    while let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let body_end = (end + 4 + len).min(bytes.len());
        answers.push(Answer {
            status,
            headers,
            body: bytes[end + 4..body_end].to_vec(),
        });
        bytes = &bytes[body_end..];
    }
    answers
}

fn server(args: &[&str]) -> (tempfile::TempDir, cluster::Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--workers", "1", "--header-timeout", "1s"];
    all.extend_from_slice(args);
    let server = cluster::start(&dir.path().join("shards"), &all);
    (dir, server)
}

#[test]
fn requests_hyper_would_refuse_get_json_errors_with_the_worker_pid() {
    let (_dir, server) = server(&[]);
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(17 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("head over 16 KiB", huge.into_bytes(), 431),
        (
            "malformed request line",
            b"GET / HTTP/1.1 extra\r\nhost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad method",
            b"G(T / HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bad Content-Length",
            b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-length: 1x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two different Content-Lengths",
            b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nab"
                .to_vec(),
            400,
        ),
        (
            "Content-Length and Transfer-Encoding",
            b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "Transfer-Encoding not ending in chunked",
            b"POST /dogs HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n".to_vec(),
            400,
        ),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            505,
        ),
    ];
    for (what, request, status) in cases {
        let mut stream = connect(&server.addr);
        let _ = stream.write_all(&request);
        let answers = read_all(&mut stream, Duration::from_secs(10));
        assert_eq!(answers.len(), 1, "{what}: {answers:?}");
        eprintln!(
            "{what}: {} {:?}",
            answers[0].status,
            String::from_utf8_lossy(&answers[0].body)
        );
        answers[0].assert_json_error(status);
        assert_eq!(answers[0].header("connection"), Some("close"), "{what}");
    }
    // Nothing refused reached the store: the counter was never incremented.
    let mut stream = connect(&server.addr);
    stream
        .write_all(b"GET /count HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let count = read_one(&mut stream);
    assert_eq!(count.status, 200);
    assert_eq!(count.body, b"0\n");
}

#[test]
fn a_refusal_comes_after_the_answers_to_the_requests_before_it() {
    let (_dir, server) = server(&[]);
    let mut stream = connect(&server.addr);
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n\
              POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 30\r\n\r\n{\"name\":\"rex\",\"color\":\"brown\"}\
              GET / HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n\
              GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        )
        .unwrap();
    let answers = read_all(&mut stream, Duration::from_secs(10));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 201, 400], "{answers:?}");
    answers[2].assert_json_error(400);
    // The request after the refused one was never run.
    let mut stream = connect(&server.addr);
    stream
        .write_all(b"GET /count HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut stream).body, b"1\n");
}

#[test]
fn a_dribbling_head_is_cut_off_at_the_header_timeout_while_others_are_served() {
    let (_dir, server) = server(&[]);
    let addr = server.addr.clone();
    let dribbler = std::thread::spawn(move || {
        let mut stream = connect(&addr);
        let started = Instant::now();
        for byte in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
        let answers = read_all(&mut stream, Duration::from_secs(10));
        (started.elapsed(), answers)
    });
    // Meanwhile, other clients are answered at once.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let started = Instant::now();
        let mut stream = connect(&server.addr);
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        assert_eq!(read_one(&mut stream).status, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (elapsed, answers) = dribbler.join().unwrap();
    // Cut off near the 1 s header timeout, not after its 5+ s of dribbling; no answer, or
    // a JSON one.
    assert!(
        elapsed < Duration::from_secs(4),
        "cut off after {elapsed:?}"
    );
    for a in &answers {
        a.assert_json_error(a.status);
    }
}

#[test]
fn a_body_that_never_ends_is_a_json_408() {
    let (_dir, server) = server(&[]);
    for request in [
        b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"nam".as_slice(),
        b"POST /dogs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"nam",
    ] {
        let started = Instant::now();
        let mut stream = connect(&server.addr);
        stream.write_all(request).unwrap();
        let answers = read_all(&mut stream, Duration::from_secs(10));
        assert_eq!(answers.len(), 1, "{answers:?}");
        answers[0].assert_json_error(408);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

/// `shardkv serve` with the open-file limit (soft and hard) set to `nofile`, so that the
/// supervisor cannot raise it and the worker's connection cap is `nofile - 256`.
fn start_with_nofile(data: &std::path::Path, nofile: u64, args: &[&str]) -> cluster::Cluster {
    let mut command = Command::new(cluster::BIN);
    command
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data"])
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cluster::wait_listening(command.spawn().expect("spawn shardkv serve"), data)
}

/// Raises this test process's own soft limit, so that it can hold a thousand sockets.
fn raise_own_limit(at_least: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        assert!(
            limit.rlim_max >= at_least,
            "this test needs {at_least} descriptors; the hard limit is {}",
            limit.rlim_max
        );
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

#[test]
fn a_thousand_idle_keep_alive_connections_do_not_lock_a_new_client_out() {
    raise_own_limit(1200);
    let dir = tempfile::tempdir().unwrap();
    // Cap 64 connections; a long header timeout, so idle connections do not time out on
    // their own during the test.
    let server = start_with_nofile(
        &dir.path().join("shards"),
        320,
        &["--workers", "1", "--header-timeout", "60s"],
    );
    let mut idle = Vec::new();
    let started = Instant::now();
    for i in 0..1000 {
        let mut stream = connect(&server.addr);
        // The first ones make a request and keep the connection; the rest just connect, the
        // way idle pre-opened connections of a client pool do.
        if i < 100 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            assert_eq!(read_one(&mut stream).status, 200, "connection {i}");
        }
        idle.push(stream);
    }
    eprintln!("opened 1000 connections in {:?}", started.elapsed());
    let started = Instant::now();
    let mut stream = connect(&server.addr);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let answer = read_one(&mut stream);
    let waited = started.elapsed();
    assert_eq!(answer.status, 200);
    assert!(
        waited < Duration::from_secs(2),
        "a new client waited {waited:?}"
    );
    // Room was made by closing the oldest idle connections: the first ones are closed...
    let mut first = idle.remove(0);
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(first.read(&mut buf), Ok(0) | Err(_)),
        "the oldest idle connection is still open"
    );
    // ...and the newest still works.
    let mut last = idle.pop().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_one(&mut last).status, 200);
    drop(idle);
    drop(server);
}
