//! Runs the real `shardkv serve` binary for a test: port 0 on loopback, in a temp data dir,
//! readiness read from its `listening on` line while checking `try_wait`, stopped in `Drop`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_shardkv");

/// One worker as the status file lists it.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    pub slot: u64,
    pub pid: u32,
    pub status: String,
    pub restarts: u64,
    /// Whether the worker has sent the supervisor a snapshot yet.
    pub reported: bool,
}

/// Whether exactly `n` workers are online.
pub fn online(n: usize) -> impl Fn(&[WorkerRow]) -> bool {
    move |w| w.iter().filter(|w| w.status == "online").count() == n
}

pub struct Cluster {
    pub child: Child,
    pub addr: String,
    pub data: PathBuf,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

/// Starts `shardkv serve --data DATA --port 0` with extra arguments; panics if it does not
/// print its listening line within 30 s.
pub fn start(data: &Path, args: &[&str]) -> Cluster {
    start_with_env(data, args, &[])
}

/// `shardkv serve` on loopback port 0 with stderr piped.
fn serve(data: &Path, args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> Child {
    serve_binary(Path::new(BIN), data, args, env, stdout)
}

fn serve_binary(
    bin: &Path,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdout: Stdio,
) -> Child {
    serve_command_of(bin, data, args)
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardkv serve")
}

/// `shardkv serve --host 127.0.0.1 --port 0 --data DATA ARGS…` with stdin closed: the command
/// every test that starts a server builds on (set its output and spawn it).
pub fn serve_command(data: &Path, args: &[&str]) -> Command {
    serve_command_of(Path::new(BIN), data, args)
}

fn serve_command_of(bin: &Path, data: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--data"])
        .arg(data)
        .args(args)
        .stdin(Stdio::null());
    command
}

pub fn start_with_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Cluster {
    wait_listening(serve(data, args, env, Stdio::piped()), data)
}

/// Like [`start`], from another copy of the binary.
pub fn start_binary(bin: &Path, data: &Path, args: &[&str]) -> Cluster {
    wait_listening(serve_binary(bin, data, args, &[], Stdio::piped()), data)
}

pub fn wait_listening(mut child: Child, data: &Path) -> Cluster {
    let stderr = collect_lines(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
            return Cluster {
                child,
                addr,
                data: data.to_path_buf(),
                stderr,
            };
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "shardkv serve exited with {status} before listening:\n{}",
                stderr.lock().unwrap().join("\n")
            );
        }
        assert!(
            Instant::now() < deadline,
            "shardkv serve did not listen within 30 s"
        );
    }
}

/// Runs `shardkv serve` expecting it to fail; returns its exit status and stderr.
pub fn start_failing(
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> (ExitStatus, String) {
    let mut child = serve(data, args, env, Stdio::null());
    let stderr = collect_lines(child.stderr.take().unwrap());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            // Let the reader drain what is left.
            std::thread::sleep(Duration::from_millis(100));
            return (status, stderr.lock().unwrap().join("\n"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "shardkv serve kept running for {within:?}:\n{}",
                stderr.lock().unwrap().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn collect_lines(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Runs a `shardkv` subcommand to completion.
pub fn shardkv(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("run shardkv")
}

impl Cluster {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Waits for the supervisor to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The status file's view of the workers.
    pub fn workers(&self) -> Vec<WorkerRow> {
        let Ok(text) = std::fs::read(self.data.join("CLUSTER")) else {
            return Vec::new();
        };
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&text) else {
            return Vec::new();
        };
        json["workers"]
            .as_array()
            .map(|ws| {
                ws.iter()
                    .map(|w| WorkerRow {
                        slot: w["id"].as_u64().unwrap(),
                        pid: w["pid"].as_u64().unwrap() as u32,
                        status: w["status"].as_str().unwrap().to_owned(),
                        restarts: w["restarts"].as_u64().unwrap(),
                        reported: !w["snapshot"].is_null(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pids of workers that are online.
    pub fn online_pids(&self) -> Vec<u32> {
        self.workers()
            .into_iter()
            .filter(|w| w.status == "online")
            .map(|w| w.pid)
            .collect()
    }

    /// Waits until `cond` holds of the status file's workers.
    pub fn wait_workers(&self, what: &str, within: Duration, cond: impl Fn(&[WorkerRow]) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            let workers = self.workers();
            if cond(&workers) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting until {what}; workers: {workers:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        if self.wait_exit(Duration::from_secs(20)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a process is gone (exited; a zombie awaiting its reaper counts as gone).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}
