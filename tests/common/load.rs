//! A counter load for cluster tests: client threads hammering `GET /` on keep-alive
//! connections, recording every acknowledged value, the worker that answered it, and every
//! failure. Bounded: it runs until `finish`, and every request has socket timeouts.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::http::{Client, ResponseExt};

#[derive(Debug, Default)]
pub struct LoadResult {
    /// `(value, pid)` of every 200 answer.
    pub acks: Vec<(i64, u32)>,
    /// What went wrong, per failed request.
    pub failures: Vec<String>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<LoadResult>>,
}

pub fn start(addr: &str, clients: usize) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let clients = (0..clients)
        .map(|_| {
            let (addr, stop, done) = (addr.to_owned(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut client = Client::new(&addr);
                let mut result = LoadResult::default();
                while !stop.load(Ordering::Relaxed) {
                    match client.get("/") {
                        Ok(r) if r.status == 200 => {
                            result.acks.push((r.json().as_i64().unwrap(), r.pid()));
                        }
                        Ok(r) => result
                            .failures
                            .push(format!("status {}: {}", r.status, r.text())),
                        Err(e) => result.failures.push(format!("i/o: {e}")),
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                result
            })
        })
        .collect();
    Load {
        stop,
        done,
        clients,
    }
}

impl Load {
    /// Requests completed so far (acknowledged or failed).
    pub fn completed(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more requests completed.
    pub fn wait_for(&self, n: usize) {
        let target = self.completed() + n;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.completed() < target {
            assert!(
                std::time::Instant::now() < deadline,
                "load stalled at {}",
                self.completed()
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn finish(self) -> LoadResult {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadResult::default();
        for c in self.clients {
            let r = c.join().expect("load client panicked");
            all.acks.extend(r.acks);
            all.failures.extend(r.failures);
        }
        all
    }
}
