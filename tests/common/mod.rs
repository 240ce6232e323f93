//! Helpers shared by the integration tests: re-executing the test binary as a child process.
//!
//! A multi-process claim is tested with processes. Each test file that needs children has an
//! `#[ignore]`d entry-point test; [`spawn_child`] runs the current test binary with only that
//! test selected and `SHARDKV_CHILD` set, so the entry point knows it is a child.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

/// Set in the environment of a child process.
pub const CHILD_ENV: &str = "SHARDKV_CHILD";

/// Whether this process is a child spawned by [`spawn_child`].
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs the `#[ignore]`d test `entry` of the current test binary in a new process, with
/// `envs`, stdout piped and stdin piped (closing it is a way to tell the child to stop).
pub fn spawn_child(entry: &str, envs: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    Command::new(exe)
        .args([
            entry,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, "1")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process")
}

/// Kills a child on drop, so a failing test never leaves one behind.
pub struct Reaper(pub Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines a child printed with the given prefix (its own protocol lines; the test
/// harness's output is filtered out).
pub fn lines_with_prefix(stdout: &[u8], prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(prefix).map(str::to_owned))
        .collect()
}

pub mod cluster;
pub mod http;
pub mod load;
pub mod model;
pub mod tickets;
