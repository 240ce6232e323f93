//! A real headless Chromium for tests, driven over the DevTools protocol through
//! `--remote-debugging-pipe` (JSON messages ending in a NUL byte, commands on the child's fd 3,
//! answers and events on its fd 4): no debugging port, no WebSocket, no extra crate.
//!
//! Chromium must be installed (Debian's `chromium`; `.ci/run` installs it): a missing browser
//! fails the test with the command that fixes it, never skips it. Every browser gets a fresh
//! profile directory and is killed in `Drop`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one protocol command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary: `$CHROMIUM`, else `chromium` on `PATH`. Panics with the fix if absent.
pub fn chromium() -> PathBuf {
    let found = match std::env::var_os("CHROMIUM") {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("chromium"))
                .find(|p| p.is_file())
        }),
    };
    found.unwrap_or_else(|| {
        panic!(
            "chromium is not installed, and this test needs a real browser: install it with \
             `apt-get update && apt-get install -y chromium` (Debian; .ci/run does this), or \
             point $CHROMIUM at a Chromium binary"
        )
    })
}

pub struct Browser {
    child: Child,
    commands: std::fs::File,
    answers: Receiver<Value>,
    /// Events received while waiting for answers (`Runtime.exceptionThrown`, ...).
    events: Arc<Mutex<Vec<Value>>>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts headless Chromium with a window of `width` x `height` CSS pixels.
    pub fn launch(width: u32, height: u32) -> Browser {
        let bin = chromium();
        let profile = tempfile::tempdir().unwrap();
        let (to_child_r, to_child_w) = std::io::pipe().unwrap();
        let (from_child_r, from_child_w) = std::io::pipe().unwrap();
        let (cmd_fd, out_fd) = (to_child_r.as_raw_fd(), from_child_w.as_raw_fd());
        let mut command = Command::new(&bin);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The ends are
        // first moved above fd 10 so that placing one on 3 cannot overwrite the other.
        unsafe {
            command.pre_exec(move || {
                let high_cmd = libc::fcntl(cmd_fd, libc::F_DUPFD, 10);
                let high_out = libc::fcntl(out_fd, libc::F_DUPFD, 10);
                if high_cmd < 0
                    || high_out < 0
                    || libc::dup2(high_cmd, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        // The child's ends now live in the child only, so its exit reads as EOF here.
        drop::<OwnedFd>(to_child_r.into());
        drop::<OwnedFd>(from_child_w.into());

        let (tx, answers) = std::sync::mpsc::channel();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_child_r);
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).unwrap_or(0) > 0 {
                message.pop_if(|b| *b == 0);
                if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                    if value.get("id").is_some() {
                        if tx.send(value).is_err() {
                            break;
                        }
                    } else {
                        sink.lock().unwrap().push(value);
                    }
                }
                message.clear();
            }
        });
        Browser {
            child,
            commands: std::fs::File::from(OwnedFd::from(to_child_w)),
            answers,
            events,
            next_id: 0,
            session: None,
            _profile: profile,
        }
    }

    /// Sends one command (to the page's session once [`Browser::open`] made one) and returns
    /// its result; panics on a protocol error or after [`COMMAND_TIMEOUT`].
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("chromium closed its command pipe ({e}) at {method}"));
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(answer) if answer["id"] == json!(id) => {
                    if let Some(error) = answer.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return answer["result"].clone();
                }
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} within {COMMAND_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.try_wait().ok().flatten();
                    panic!("chromium went away during {method} (exit status {status:?})")
                }
            }
        }
    }

    /// Opens `url` in a new tab and attaches to it; later commands go to that tab.
    pub fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
        self.call("Runtime.enable", json!({}));
        self.call("Page.enable", json!({}));
        self.call("Page.navigate", json!({ "url": url }));
        let probe = "[location.href, document.readyState]";
        self.wait_for("the page loads", COMMAND_TIMEOUT, probe, |v| {
            v[0] == json!(url) && v[1] == "complete"
        });
    }

    /// Evaluates `expression` in the page and returns its value (JSON-serializable values).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating {expression:?} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Polls `probe` (an expression) until `done` holds of its value; panics with the last
    /// value after `within`.
    pub fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        probe: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(probe);
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {within:?} waiting until {what}; the page shows: {value:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Uncaught exceptions and console errors the browser reported for the page.
    pub fn reported_errors(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e["method"].as_str() {
                Some("Runtime.exceptionThrown") => {
                    Some(e["params"]["exceptionDetails"].to_string())
                }
                Some("Runtime.consoleAPICalled") if e["params"]["type"] == "error" => {
                    Some(e["params"]["args"].to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// A PNG of the page as it is now.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding), as the protocol sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("not base64: {c:?}")) as u32;
        acc = (acc << 6 | v) & 0xff_ffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
