//! The supervisor's event loop: worker processes, their readiness, exits and restarts,
//! signals, rolling reloads, and the status file. The contracts are in the module above.

use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::signal::unix::Signal;
use tokio::sync::mpsc;

use super::ClusterOptions;
use super::status::{self, ClusterStatus, WorkerStatus, unix_ms};
use crate::error::{Error, Result};
use crate::server::WorkerSnapshot;

/// First restart delay of a slot.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest restart delay.
const MAX_DELAY: Duration = Duration::from_secs(15);
/// A worker up this long resets its slot's delay.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// A worker not ready this long after its start is killed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Extra time, past the drain timeout, before stragglers are killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Event {
    Ready(u32),
    Stats(u32, Box<WorkerSnapshot>),
    Stderr(u32, String),
    Exited(u32, ExitStatus),
    Restart(usize),
    Terminate(&'static str),
    Reload,
    Tick,
}

#[derive(Debug, Default)]
struct Slot {
    restarts: u64,
    unstable: u32,
    delay: Option<Duration>,
    restart_pending: bool,
    last_stderr: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Serving its slot.
    Current,
    /// A reload's replacement, not ready yet.
    Candidate,
    /// Replaced by a reload; draining.
    Retiring,
}

#[derive(Debug)]
struct Proc {
    slot: usize,
    role: Role,
    started: Instant,
    started_at: SystemTime,
    ready: bool,
    /// When it was told to drain; it is killed if still alive a drain timeout (plus grace)
    /// later.
    draining_since: Option<Instant>,
    /// Its last report (`ready` or `stats`); a ready worker silent for the liveness timeout
    /// is stopped or deadlocked, and is killed.
    last_report: Instant,
    /// Killed for silence; its exit is on its way.
    killed_silent: bool,
    snapshot: Option<WorkerSnapshot>,
    /// Held open for the worker's lifetime: its end of file tells the worker we are gone.
    _stdin: Option<ChildStdin>,
}

#[derive(Debug)]
enum Phase {
    Running,
    Reloading {
        queue: VecDeque<usize>,
        step: Option<ReloadStep>,
    },
    Stopping {
        failure: Option<String>,
    },
}

#[derive(Debug, Clone, Copy)]
struct ReloadStep {
    old: Option<u32>,
    new: u32,
}

pub(super) struct Supervisor {
    options: ClusterOptions,
    data: PathBuf,
    binary: PathBuf,
    listen_fd: RawFd,
    address: String,
    scheme: String,
    slots: Vec<Slot>,
    procs: HashMap<u32, Proc>,
    phase: Phase,
    events: mpsc::UnboundedSender<Event>,
    inbox: Option<mpsc::UnboundedReceiver<Event>>,
    announced: bool,
    ever_ready: bool,
    started_at: SystemTime,
    reloads: u64,
    reload_failures: u64,
    /// Workers killed for missing their reports.
    silent_kills: u64,
    last_error: Option<String>,
    /// Counters of exited workers, summed.
    retired: WorkerSnapshot,
    /// Async threads of each worker: its share of the CPUs less one, at least one
    /// ([`super::worker::default_threads`]).
    threads: usize,
}

impl Supervisor {
    pub(super) fn new(
        options: ClusterOptions,
        data: PathBuf,
        binary: PathBuf,
        listener: &std::net::TcpListener,
        address: String,
        scheme: String,
    ) -> Supervisor {
        let (events, inbox) = mpsc::unbounded_channel();
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Supervisor {
            threads: super::worker::threads_per_worker(options.workers, cpus),
            slots: (0..options.workers).map(|_| Slot::default()).collect(),
            options,
            data,
            binary,
            listen_fd: listener.as_raw_fd(),
            address,
            scheme,
            procs: HashMap::new(),
            phase: Phase::Running,
            events,
            inbox: Some(inbox),
            announced: false,
            ever_ready: false,
            started_at: SystemTime::now(),
            reloads: 0,
            reload_failures: 0,
            silent_kills: 0,
            last_error: None,
            retired: WorkerSnapshot::default(),
        }
    }

    pub(super) async fn run(&mut self, signals: Vec<(Signal, &'static str)>) -> Result<()> {
        let mut inbox = self.inbox.take().expect("run once");
        self.watch_signals(signals);
        let ticker = self.events.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if ticker.send(Event::Tick).is_err() {
                    break;
                }
            }
        });
        for slot in 0..self.slots.len() {
            if let Err(e) = self.spawn(slot, Role::Current) {
                self.begin_stop(Some(format!("could not start worker {slot}: {e}")));
                break;
            }
        }
        self.publish();
        while let Some(event) = inbox.recv().await {
            self.handle(event);
            if let Phase::Stopping { failure, .. } = &self.phase
                && self.procs.is_empty()
            {
                let failure = failure.clone();
                tracing::info!("supervisor stopped");
                return match failure {
                    None => Ok(()),
                    Some(why) => Err(Error::Unavailable(why)),
                };
            }
        }
        Ok(())
    }

    fn watch_signals(&self, signals: Vec<(Signal, &'static str)>) {
        for (mut stream, name) in signals {
            let events = self.events.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    let event = if name == "SIGHUP" {
                        Event::Reload
                    } else {
                        Event::Terminate(name)
                    };
                    if events.send(event).is_err() {
                        break;
                    }
                }
            });
        }
    }

    fn spawn(&mut self, slot: usize, role: Role) -> Result<u32> {
        let server = &self.options.server;
        let mut command = Command::new(&self.binary);
        command
            .arg("worker")
            .arg("--listen-fd")
            .arg(self.listen_fd.to_string())
            .arg("--data")
            .arg(&self.data)
            .arg("--request-timeout")
            .arg(format!("{}ms", server.request_timeout.as_millis()))
            .arg("--header-timeout")
            .arg(format!("{}ms", server.header_read_timeout.as_millis()))
            .arg("--drain-timeout")
            .arg(format!("{}ms", server.drain_timeout.as_millis()))
            .arg("--cache-bytes")
            .arg(self.options.cache_bytes.to_string())
            .arg("--log-format")
            .arg(&self.options.log_format)
            .arg("--threads")
            .arg(self.threads.to_string())
            .args(self.options.services.worker_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the supervisor, which then
            // stops the workers in order.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", self.binary.display()), e))?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(slot, pid, ?role, "worker started");
        let stdin = child.stdin.take();
        self.monitor(pid, child);
        self.procs.insert(
            pid,
            Proc {
                slot,
                role,
                started: Instant::now(),
                started_at: SystemTime::now(),
                ready: false,
                draining_since: None,
                last_report: Instant::now(),
                killed_silent: false,
                snapshot: None,
                _stdin: stdin,
            },
        );
        self.slots[slot].restart_pending = false;
        Ok(pid)
    }

    /// Forwards a worker's output and exit as events. Its exit is sent after its last
    /// output line, so a crash report can name the last thing it said.
    fn monitor(&self, pid: u32, mut child: Child) {
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let events = self.events.clone();
        let prefix = (self.options.log_format != "json").then(|| format!("worker pid {pid} | "));
        tokio::spawn(async move {
            let out = {
                let events = events.clone();
                async move {
                    let Some(stdout) = stdout else { return };
                    let mut lines = BufReader::new(stdout).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line == "ready" {
                            let _ = events.send(Event::Ready(pid));
                        } else if let Some(json) = line.strip_prefix("stats ")
                            && let Ok(snapshot) = serde_json::from_str(json)
                        {
                            let _ = events.send(Event::Stats(pid, Box::new(snapshot)));
                        }
                    }
                }
            };
            let err = {
                let events = events.clone();
                async move {
                    let Some(stderr) = stderr else { return };
                    let mut lines = BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        // Never eprintln!: it panics when our own stderr is gone, and this
                        // task must live on to report the worker's exit.
                        let _ = writeln!(
                            std::io::stderr().lock(),
                            "{}{line}",
                            prefix.as_deref().unwrap_or("")
                        );
                        if !line.trim().is_empty() {
                            let _ = events.send(Event::Stderr(pid, line));
                        }
                    }
                }
            };
            tokio::join!(out, err);
            let status = child.wait().await;
            let status =
                status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0));
            let _ = events.send(Event::Exited(pid, status));
        });
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Ready(pid) => self.on_ready(pid),
            // Frequent and not a change of state: the next tick publishes them.
            Event::Stats(pid, snapshot) => {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.snapshot = Some(*snapshot);
                    p.last_report = Instant::now();
                }
                return;
            }
            Event::Stderr(pid, line) => {
                if let Some(p) = self.procs.get(&pid) {
                    self.slots[p.slot].last_stderr = line;
                }
                return;
            }
            Event::Exited(pid, status) => self.on_exit(pid, status),
            Event::Restart(slot) => self.on_restart(slot),
            Event::Terminate(name) => {
                if matches!(self.phase, Phase::Stopping { .. }) {
                    tracing::warn!(signal = name, "second stop signal: killing workers now");
                    self.signal_all(libc::SIGKILL);
                } else {
                    tracing::info!(signal = name, "stopping: draining workers");
                    self.begin_stop(None);
                }
            }
            Event::Reload => self.begin_reload(),
            Event::Tick => self.on_tick(),
        }
        self.publish();
    }

    fn on_ready(&mut self, pid: u32) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        p.ready = true;
        p.last_report = Instant::now();
        let (slot, role) = (p.slot, p.role);
        tracing::info!(slot, pid, "worker ready");
        self.ever_ready = true;
        if !self.announced {
            self.announced = true;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on http://{}", self.address);
            let _ = out.flush();
        }
        if role == Role::Candidate
            && let Phase::Reloading {
                step: Some(step), ..
            } = &mut self.phase
            && step.new == pid
        {
            if let Some(p) = self.procs.get_mut(&pid) {
                p.role = Role::Current;
            }
            match step
                .old
                .and_then(|old| self.procs.get_mut(&old).map(|p| (old, p)))
            {
                Some((old, p)) => {
                    p.role = Role::Retiring;
                    p.draining_since = Some(Instant::now());
                    tracing::info!(
                        slot,
                        old,
                        new = pid,
                        "reload: new worker ready, draining the old one"
                    );
                    signal_pid(old, libc::SIGTERM);
                }
                None => {
                    self.finish_reload_step();
                }
            }
        }
    }

    fn on_exit(&mut self, pid: u32, status: ExitStatus) {
        let Some(p) = self.procs.remove(&pid) else {
            return;
        };
        let slot = p.slot;
        let uptime = p.started.elapsed();
        let how = describe(status);
        if let Some(last) = &p.snapshot {
            // Counters only: the gauges of a process that is gone read zero.
            let mut last = last.clone();
            last.in_flight = 0;
            last.isprime_running = 0;
            for s in &mut last.shards {
                s.queued = 0;
                s.committing = 0;
            }
            self.retired.absorb(&last);
        }
        if let Phase::Stopping { .. } = self.phase {
            tracing::info!(slot, pid, status = %how, "worker exited");
            return;
        }
        match p.role {
            Role::Retiring => {
                tracing::info!(slot, pid, status = %how, "reload: old worker exited");
                if let Phase::Reloading {
                    step: Some(step), ..
                } = &self.phase
                    && step.old == Some(pid)
                {
                    self.finish_reload_step();
                }
            }
            Role::Candidate => {
                let why = format!(
                    "new worker {slot} (pid {pid}) {how} before it was ready: {}",
                    self.slots[slot].last_stderr
                );
                tracing::error!(slot, pid, status = %how, "reload abandoned: {why}");
                self.reload_failures += 1;
                self.last_error = Some(why);
                self.phase = Phase::Running;
                // If the old worker died meanwhile, nobody holds the slot: refill it.
                if !self
                    .procs
                    .values()
                    .any(|p| p.slot == slot && p.role == Role::Current)
                {
                    self.on_crash(slot, pid, uptime, true, &how);
                }
            }
            Role::Current => {
                // A reload's old worker that died on its own: its candidate takes the slot.
                if let Phase::Reloading {
                    step: Some(step), ..
                } = &mut self.phase
                    && step.old == Some(pid)
                {
                    tracing::warn!(slot, pid, status = %how, "worker exited during its reload");
                    step.old = None;
                    return;
                }
                self.on_crash(slot, pid, uptime, p.ready, &how);
            }
        }
    }

    fn on_crash(&mut self, slot: usize, pid: u32, uptime: Duration, was_ready: bool, how: &str) {
        let last = self.slots[slot].last_stderr.clone();
        if !was_ready && !self.ever_ready {
            let why = format!("worker {slot} (pid {pid}) {how} before it was ready: {last}");
            tracing::error!(slot, pid, "{why}");
            self.begin_stop(Some(why));
            return;
        }
        let s = &mut self.slots[slot];
        if uptime < self.options.min_uptime {
            s.unstable += 1;
        } else {
            s.unstable = 0;
        }
        if s.unstable >= self.options.max_restarts {
            let why = format!(
                "worker {slot} died {} times in a row within {:?} of starting; giving up. Last error: {last}",
                s.unstable, self.options.min_uptime
            );
            tracing::error!(slot, pid, "{why}");
            self.last_error = Some(why.clone());
            self.begin_stop(Some(why));
            return;
        }
        let (delay, next) = restart_delay(s.delay, uptime);
        s.delay = Some(next);
        s.restarts += 1;
        s.restart_pending = true;
        tracing::warn!(slot, pid, status = %how, restart_in = ?delay, restarts = s.restarts, "worker exited unexpectedly");
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(Event::Restart(slot));
        });
    }

    fn on_restart(&mut self, slot: usize) {
        let occupied = self
            .procs
            .values()
            .any(|p| p.slot == slot && p.role != Role::Retiring);
        if matches!(self.phase, Phase::Stopping { .. })
            || occupied
            || !self.slots[slot].restart_pending
        {
            return;
        }
        if let Err(e) = self.spawn(slot, Role::Current) {
            tracing::error!(slot, error = %e, "restart failed");
            self.begin_stop(Some(format!("could not restart worker {slot}: {e}")));
        }
    }

    fn begin_reload(&mut self) {
        match self.phase {
            Phase::Running => {
                tracing::info!("rolling reload started");
                self.phase = Phase::Reloading {
                    queue: (0..self.slots.len()).collect(),
                    step: None,
                };
                self.next_reload_step();
            }
            Phase::Reloading { .. } => tracing::info!("a reload is already in progress"),
            Phase::Stopping { .. } => {}
        }
    }

    fn finish_reload_step(&mut self) {
        if let Phase::Reloading { step, .. } = &mut self.phase {
            *step = None;
        }
        self.next_reload_step();
    }

    fn next_reload_step(&mut self) {
        loop {
            let Phase::Reloading { queue, .. } = &mut self.phase else {
                return;
            };
            let Some(slot) = queue.pop_front() else {
                self.phase = Phase::Running;
                self.reloads += 1;
                tracing::info!(reloads = self.reloads, "rolling reload complete");
                return;
            };
            let old = self
                .procs
                .iter()
                .find(|(_, p)| p.slot == slot && p.role == Role::Current)
                .map(|(&pid, _)| pid);
            if old.is_none() {
                // Waiting out a restart delay: its restart starts the new binary anyway.
                continue;
            }
            match self.spawn(slot, Role::Candidate) {
                Ok(new) => {
                    if let Phase::Reloading { step, .. } = &mut self.phase {
                        *step = Some(ReloadStep { old, new });
                    }
                    return;
                }
                Err(e) => {
                    let why = format!("reload could not start worker {slot}: {e}");
                    tracing::error!("{why}");
                    self.reload_failures += 1;
                    self.last_error = Some(why);
                    self.phase = Phase::Running;
                    return;
                }
            }
        }
    }

    fn begin_stop(&mut self, failure: Option<String>) {
        if failure.is_some() {
            self.last_error.clone_from(&failure);
        }
        self.phase = Phase::Stopping { failure };
        let now = Instant::now();
        for p in self.procs.values_mut() {
            p.draining_since.get_or_insert(now);
        }
        self.signal_all(libc::SIGTERM);
    }

    fn signal_all(&self, signal: libc::c_int) {
        for &pid in self.procs.keys() {
            signal_pid(pid, signal);
        }
    }

    fn on_tick(&mut self) {
        self.kill_silent_workers();
        let limit = self.options.server.drain_timeout + KILL_GRACE;
        for (&pid, p) in &self.procs {
            if p.draining_since.is_some_and(|t| t.elapsed() > limit) {
                tracing::warn!(
                    slot = p.slot,
                    pid,
                    "worker did not drain in time: killing it"
                );
                signal_pid(pid, libc::SIGKILL);
            }
            if !p.ready && p.started.elapsed() > READY_TIMEOUT {
                tracing::warn!(slot = p.slot, pid, "worker not ready in time: killing it");
                signal_pid(pid, libc::SIGKILL);
            }
        }
    }

    /// Kills every ready worker that has sent no report for the liveness timeout: it is
    /// stopped (SIGSTOP), deadlocked or starved, and may hold a shard's writer lock that
    /// every other writer in the cluster waits for. Its exit restarts the slot as a crash.
    fn kill_silent_workers(&mut self) {
        let limit = self.options.liveness_timeout;
        let silent: Vec<(u32, usize, Duration)> = self
            .procs
            .iter()
            .filter(|(_, p)| p.ready && !p.killed_silent && p.last_report.elapsed() > limit)
            .map(|(&pid, p)| (pid, p.slot, p.last_report.elapsed()))
            .collect();
        for (pid, slot, quiet) in silent {
            let why = format!(
                "worker {slot} (pid {pid}) sent no report for {:.1} s (liveness timeout {:.1} s): \
                 stopped or deadlocked; killed it with SIGKILL",
                quiet.as_secs_f64(),
                limit.as_secs_f64()
            );
            tracing::error!(slot, pid, "{why}");
            self.silent_kills += 1;
            self.last_error = Some(why);
            if let Some(p) = self.procs.get_mut(&pid) {
                p.killed_silent = true;
            }
            signal_pid(pid, libc::SIGKILL);
        }
    }

    /// Rewrites the status file: after every change of state, and once a second for the
    /// workers' snapshots.
    fn publish(&self) {
        let state = match self.phase {
            Phase::Running => "running",
            Phase::Reloading { .. } => "reloading",
            Phase::Stopping { .. } => "stopping",
        };
        let mut workers: Vec<WorkerStatus> = self
            .procs
            .iter()
            .map(|(&pid, p)| WorkerStatus {
                id: p.slot,
                pid,
                status: match (p.ready, p.draining_since.is_some()) {
                    (_, true) => "draining",
                    (false, _) => "starting",
                    (true, false) => "online",
                }
                .to_owned(),
                started_unix_ms: unix_ms(p.started_at),
                restarts: self.slots[p.slot].restarts,
                rss_bytes: crate::server::metrics::rss_bytes(pid),
                snapshot: p.snapshot.clone(),
            })
            .collect();
        workers.sort_by_key(|w| (w.id, w.started_unix_ms, w.pid));
        let status = ClusterStatus {
            name: self.options.name.clone().unwrap_or_default(),
            supervisor_pid: std::process::id(),
            state: state.to_owned(),
            address: self.address.clone(),
            data: self.data.clone(),
            scheme: self.scheme.clone(),
            binary: self.binary.clone(),
            started_unix_ms: unix_ms(self.started_at),
            updated_unix_ms: unix_ms(SystemTime::now()),
            reloads: self.reloads,
            reload_failures: self.reload_failures,
            silent_kills: self.silent_kills,
            last_error: self.last_error.clone(),
            workers,
            retired: Some(self.retired.clone()),
        };
        if let Err(e) = status::write_status(&self.data, &status) {
            tracing::warn!(error = %e, "could not write the status file");
        }
    }
}

/// PM2's backoff: the delay before restarting a slot whose worker died after `uptime`, and
/// the delay after that. It starts at 100 ms, grows x1.5 per restart up to 15 s, and starts
/// over once a worker stayed up 30 s.
fn restart_delay(previous: Option<Duration>, uptime: Duration) -> (Duration, Duration) {
    let delay = match previous {
        Some(d) if uptime < STABLE_AFTER => d,
        _ => FIRST_DELAY,
    };
    (delay, delay.mul_f64(1.5).min(MAX_DELAY))
}

fn signal_pid(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill has no memory-safety preconditions. The pid is a worker whose exit
        // has not been processed yet; the window in which it is reaped but still listed is
        // the monitor task's hand-off, far too short for the kernel to reuse the pid.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "exited".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_follow_pm2() {
        let quick = Duration::from_millis(10);
        let mut delays = Vec::new();
        let mut previous = None;
        for _ in 0..14 {
            let (delay, next) = restart_delay(previous, quick);
            delays.push(delay.as_millis());
            previous = Some(next);
        }
        assert_eq!(&delays[..5], [100, 150, 225, 337, 506]);
        assert_eq!(delays[13], 15_000, "capped at 15 s");
        // A worker that stayed up 30 s starts the backoff over.
        assert_eq!(restart_delay(previous, STABLE_AFTER).0, FIRST_DELAY);
    }
}
