//! One shard: a redb file shared by every process, and this process's group committer for it.
//!
//! The file is opened with [`redb::ConcurrencyMode::MultiWriter`]: any number of processes
//! hold it read-write, redb serializes their write transactions through a cross-process
//! writer lock, and every commit is durable (two-phase, fsync'd) before it returns.
//!
//! # Group commit
//!
//! One transaction costs a commit (two fsyncs, ~450 us), whatever it holds, so the shard
//! coalesces the writes of concurrent callers of this process into one transaction. The
//! scheme is LevelDB's: callers join a queue; the one that finds no leader becomes the leader,
//! takes redb's writer lock, then takes everything queued (bounded by [`MAX_GROUP_WRITES`]
//! and [`MAX_GROUP_BYTES`]), commits it as one transaction, answers every caller, and hands
//! leadership to the first caller still waiting. A group is whatever queued while the
//! previous commit ran and while other processes held the writer lock, so groups grow with
//! load and contention by themselves, and a lone writer commits at once. The one exception
//! is the committer thread (async writers): when fewer than half of the last group are
//! queued, it waits up to half a commit for the rest to come back (`Core::fill_group`), so
//! that writers whose answers are in flight do not split into small groups taking turns.
//!
//! ```text
//!   caller A ──┐  queue: [A]        A leads: lock ─ take [A] ─ apply ─ commit ─ answer A
//!   caller B ──┤  queue: [B, C]                                       hand off to B
//!   caller C ──┘                    B leads: lock ─ take [B, C] ─ apply ─ commit ─ answer B, C
//! ```
//!
//! Invariants:
//! - A caller returns `Ok` only after the transaction holding its write has committed durably.
//! - Each [`WriteBatch`](crate::WriteBatch) in a group is checked against the group's own
//!   state so far and applied whole or not at all; a failed precondition or a bad increment
//!   answers that caller alone and writes nothing of its batch. (MultiWriter mode has no
//!   ephemeral savepoints, so a batch is staged in memory and applied only once it is known
//!   to succeed.)
//! - If the transaction cannot begin or commit, every caller of the group gets
//!   [`Error::Storage`]: the outcome is uncertain. The shard then reopens its handle, since
//!   redb discards its allocator state after a failed commit.
//! - A panic inside redb (a damaged page) never reaches a caller or ends a thread: it becomes
//!   [`Error::Corrupted`] naming the file for everyone who needed the call, and the shard is
//!   marked damaged (see [`db`]): from then on every request that touches it gets
//!   `Corrupted` without touching the file, while other shards serve on.

mod apply;
mod db;
mod file;

pub(crate) use apply::parse_counter;
pub use db::{DAMAGED_SUFFIX, IDENTITY_TABLE, Identity};
pub(crate) use db::{
    OpenMode, check_identity, clear_damage_mark, contain, damage_mark, open_db, read_identity,
    repair_hint,
};
pub use file::Faults;

use std::collections::{HashMap, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::batch::{Op, Written};
use crate::error::{Error, Result};
use db::Db;

/// The most write batches one group commit takes.
pub const MAX_GROUP_WRITES: usize = 4096;
/// The most key and value bytes one group commit takes (a single larger batch still commits,
/// alone).
pub const MAX_GROUP_BYTES: usize = 16 << 20;

/// The longest the committer waits for a group to fill (see `Core::fill_group`).
const MAX_FILL_WAIT: Duration = Duration::from_micros(250);

/// How a shard turns concurrent writes into transactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitMode {
    /// Concurrent writes of this process share one transaction (the default).
    #[default]
    Group,
    /// Every write is its own transaction: the baseline the benchmarks compare against.
    PerWrite,
}

pub(crate) type Table<'txn> = redb::Table<'txn, &'static [u8], &'static [u8]>;

pub(crate) fn table_def(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// Counters of one shard in this process. Monotonic; read with [`Shard::stats`].
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    rejected: AtomicU64,
    failed_commits: AtomicU64,
    reads: AtomicU64,
    lock_wait_ns: AtomicU64,
    commit_ns: AtomicU64,
    max_group: AtomicU64,
    /// Size of the group being committed now (0 when none).
    committing: AtomicU64,
    /// Size of the last group committed, and how long its commit took: what
    /// [`Core::fill_group`] expects back, and how long it may wait for it.
    last_group: AtomicU64,
    last_commit_ns: AtomicU64,
}

/// A snapshot of one shard's counters in this process.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShardStats {
    /// Shard number.
    pub shard: usize,
    /// Transactions committed.
    pub commits: u64,
    /// Write batches committed (acknowledged writes).
    pub writes: u64,
    /// Write batches answered with a failed precondition or a bad increment.
    pub rejected: u64,
    /// Transactions that failed to begin or commit.
    pub failed_commits: u64,
    /// Reads served (gets and per-shard scans).
    pub reads: u64,
    /// Largest group committed in one transaction.
    pub max_group: u64,
    /// Writes waiting for a leader to take them (a gauge).
    pub queued: u64,
    /// Writes in the transaction being committed now (a gauge).
    pub committing: u64,
    /// Total time leaders waited for redb's writer lock (held by other processes).
    pub lock_wait_us: u64,
    /// Total time spent applying and committing groups, lock wait excluded.
    pub commit_us: u64,
}

impl std::ops::AddAssign<&ShardStats> for ShardStats {
    /// Sums counters (for totals over processes or shards); maxima stay maxima.
    fn add_assign(&mut self, s: &ShardStats) {
        self.commits += s.commits;
        self.writes += s.writes;
        self.rejected += s.rejected;
        self.failed_commits += s.failed_commits;
        self.reads += s.reads;
        self.max_group = self.max_group.max(s.max_group);
        self.queued += s.queued;
        self.committing += s.committing;
        self.lock_wait_us += s.lock_wait_us;
        self.commit_us += s.commit_us;
    }
}

impl ShardStats {
    /// Mean write batches per transaction.
    pub fn mean_group(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            (self.writes + self.rejected) as f64 / self.commits as f64
        }
    }
}

enum Wake {
    /// You are the leader now: commit the queue.
    Lead,
    /// Your write's outcome.
    Done(Result<Written>),
}

/// How a queued write is answered.
enum Reply {
    /// A thread blocked in [`Shard::write`]: told to lead, or given its outcome.
    Thread(mpsc::SyncSender<Wake>),
    /// A task awaiting [`Shard::write_async`]: given its outcome, once. It never leads; the
    /// shard's committer thread leads for it.
    Task(oneshot::Sender<Result<Written>>),
}

struct Waiter {
    ops: Vec<Op>,
    bytes: usize,
    reply: Reply,
}

impl Waiter {
    fn answer(self, result: Result<Written>) {
        // A caller that went away (a cancelled task) no longer needs its answer.
        match self.reply {
            Reply::Thread(tx) => {
                let _ = tx.try_send(Wake::Done(result));
            }
            Reply::Task(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiter>,
    /// Whether some caller or the committer is leading. While true, new callers only queue.
    leading: bool,
    /// The committer thread is to lead next (the queue's front is a task's write).
    committer_leads: bool,
    /// The shard is being dropped: the committer exits once nothing is left for it.
    closing: bool,
    /// The committer is waiting for this many queued writes before it commits (0: not
    /// waiting); see [`Core::fill_group`]. A caller that brings the queue to it wakes it.
    filling: usize,
}

impl Queue {
    /// Pushes a write; whether the committer waits for exactly this one to fill its group.
    fn push(&mut self, waiter: Waiter) -> bool {
        self.waiting.push_back(waiter);
        self.filling > 0 && self.waiting.len() == self.filling
    }
}

/// One shard file and its committer. Shared by all threads of a process through `Store`; the
/// state lives in [`Core`], which the committer thread shares.
pub(crate) struct Shard {
    core: Arc<Core>,
    /// Started by the first async write; stopped and joined on drop, before the file closes.
    committer: OnceLock<std::thread::JoinHandle<()>>,
    /// Held while the committer thread is being started, so that only one starts.
    starting: Mutex<()>,
}

/// How a shard opens its file and checks what it writes.
#[derive(Clone, Debug, Default)]
pub(crate) struct ShardOptions {
    pub cache_bytes: usize,
    pub mode: CommitMode,
    /// The largest value a derived op may write.
    pub max_value_bytes: usize,
    /// Storage faults to inject (tests only).
    pub faults: Option<Arc<Faults>>,
}

pub(crate) struct Core {
    id: usize,
    path: PathBuf,
    options: ShardOptions,
    /// Replaced after a failed commit; readers clone the `Arc` and never hold the lock.
    db: RwLock<Arc<Db>>,
    /// The handle failed a commit and could not be reopened at once: reopen before next use.
    stale: AtomicBool,
    /// Why the file is known to be damaged (redb panicked on it). Once set, nothing touches it.
    damaged: Mutex<Option<String>>,
    /// Held only to push, pop and hand off; never across I/O.
    queue: Mutex<Queue>,
    /// Wakes the committer thread (with `queue`).
    wake: Condvar,
    counters: Counters,
    /// Makes this shard's next leader panic before it takes redb's writer lock.
    #[cfg(test)]
    panic_next_leader: std::sync::atomic::AtomicBool,
    /// Makes the next commit panic inside the transaction, as redb does on a damaged page.
    #[cfg(test)]
    panic_in_commit: std::sync::atomic::AtomicBool,
    /// Makes the next start of the committer thread fail, as the OS refuses a thread.
    #[cfg(test)]
    refuse_committer_thread: std::sync::atomic::AtomicBool,
    /// Replaces the limit on `fill_group`'s wait, so that tests need not race it.
    #[cfg(test)]
    fill_wait: Mutex<Option<Duration>>,
}

impl std::ops::Deref for Shard {
    type Target = Core;

    fn deref(&self) -> &Core {
        &self.core
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(committer) = self.committer.take() {
            self.core.queue.lock().closing = true;
            self.core.wake.notify_one();
            let _ = committer.join();
        }
    }
}

impl Shard {
    /// Opens (or, with `create`, creates) the shard file. A created file records `identity`;
    /// an opened one must have recorded it (see [`db`]), and must not be marked damaged.
    pub fn open(
        id: usize,
        path: &Path,
        options: &ShardOptions,
        identity: Option<&Identity>,
        create: bool,
    ) -> Result<Shard> {
        if !create && let Some(why) = damage_mark(path)? {
            return Err(Error::Corrupted(format!(
                "{} was found damaged by an earlier run ({}); {}",
                path.display(),
                why.trim(),
                repair_hint(path)
            )));
        }
        let mode = if create {
            OpenMode::Create
        } else {
            OpenMode::Open
        };
        let db = open_db(path, options.cache_bytes, mode, options.faults.as_ref())?;
        contain(path, "reading the identity of", || {
            if create {
                if let Some(identity) = identity {
                    db::write_identity(&db, identity)?;
                }
                Ok(())
            } else {
                check_identity(path, read_identity(&*db, path)?.as_ref(), identity)
            }
        })?;
        Ok(Shard {
            core: Arc::new(Core {
                id,
                path: path.to_path_buf(),
                options: options.clone(),
                db: RwLock::new(Arc::new(db)),
                stale: AtomicBool::new(false),
                damaged: Mutex::new(None),
                queue: Mutex::new(Queue::default()),
                wake: Condvar::new(),
                counters: Counters::default(),
                #[cfg(test)]
                panic_next_leader: Default::default(),
                #[cfg(test)]
                panic_in_commit: Default::default(),
                #[cfg(test)]
                refuse_committer_thread: Default::default(),
                #[cfg(test)]
                fill_wait: Mutex::new(None),
            }),
            committer: OnceLock::new(),
            starting: Mutex::new(()),
        })
    }

    /// Commits `ops` atomically, as part of a group, for an async caller: the write is
    /// queued and the caller awaits its outcome, which arrives once it is durable. No thread
    /// waits for it: the shard's committer thread leads the groups that hold async writes.
    ///
    /// Dropping the future does not withdraw the write; its outcome is then unknown. The ops
    /// must have been validated (limits, names) by the caller.
    pub async fn write_async(&self, ops: Vec<Op>, bytes: usize) -> Result<Written> {
        self.start_committer()?;
        let (reply, outcome) = oneshot::channel();
        {
            let mut q = self.queue.lock();
            let filled = q.push(Waiter {
                ops,
                bytes,
                reply: Reply::Task(reply),
            });
            if !std::mem::replace(&mut q.leading, true) {
                q.committer_leads = true;
                self.wake.notify_one();
            } else if filled {
                self.wake.notify_one();
            }
        }
        outcome.await.unwrap_or_else(|_| Err(committer_lost()))
    }

    /// Starts the committer thread unless it runs. A thread the OS refuses (out of threads or
    /// memory) is an `Io` error for this write, and the next write tries again.
    fn start_committer(&self) -> Result<()> {
        if self.committer.get().is_some() {
            return Ok(());
        }
        let _starting = self.starting.lock();
        if self.committer.get().is_none() {
            #[cfg(test)]
            if self.refuse_committer_thread.swap(false, Ordering::Relaxed) {
                return Err(Error::io(
                    "starting the shard's committer thread",
                    std::io::Error::from(std::io::ErrorKind::OutOfMemory),
                ));
            }
            let core = self.core.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shardkv-commit-{}", self.id))
                .spawn(move || core.commit_loop())
                .map_err(|e| Error::io("starting the shard's committer thread", e))?;
            let _ = self.committer.set(thread);
        }
        Ok(())
    }
}

impl Core {
    /// The current handle, reopened first if a failed commit left it stale.
    fn db(&self) -> Result<Arc<Db>> {
        if self.stale.load(Ordering::Acquire) {
            let mut db = self.db.write();
            // IMPORTANT: re-check under the lock, or two threads would reopen in turn.
            if self.stale.load(Ordering::Acquire) {
                *db = Arc::new(self.reopen()?);
                self.stale.store(false, Ordering::Release);
            }
            return Ok(db.clone());
        }
        Ok(self.db.read().clone())
    }

    fn reopen(&self) -> Result<Db> {
        open_db(
            &self.path,
            self.options.cache_bytes,
            OpenMode::Open,
            self.options.faults.as_ref(),
        )
    }

    /// Runs a call into redb: refused at once if the file is known damaged; a panic inside
    /// marks it damaged and becomes [`Error::Corrupted`].
    fn guarded<T>(&self, doing: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        if let Some(why) = &*self.damaged.lock() {
            return Err(Error::Corrupted(why.clone()));
        }
        contain(&self.path, doing, f)
            .map_err(|e| match e {
                Error::Storage(inner) if matches!(*inner, redb::Error::Corrupted(_)) => {
                    Error::Corrupted(format!("{}: {inner}", self.path.display()))
                }
                other => other,
            })
            .inspect_err(|e| self.note_damage(e))
    }

    /// Marks the shard damaged if `e` is a contained panic (or other corruption redb found).
    fn note_damage(&self, e: &Error) {
        let Error::Corrupted(why) = e else { return };
        let mut damaged = self.damaged.lock();
        if damaged.is_none() {
            let why = if why.contains("check --repair") {
                why.clone()
            } else {
                format!("{why}; {}", repair_hint(&self.path))
            };
            tracing::error!(shard = self.id, "{why}");
            db::mark_damaged(&self.path, &why);
            *damaged = Some(why);
        }
    }

    /// Reads one key from a fresh snapshot.
    pub fn get(&self, collection: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.guarded("reading", || {
            let txn = self.db()?.begin_read()?;
            let table = match txn.open_table(table_def(collection)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    /// Up to `limit` entries of the collection within the bounds, in key order, from one
    /// snapshot of this shard.
    pub fn scan(
        &self,
        collection: &str,
        bounds: (Bound<&[u8]>, Bound<&[u8]>),
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.guarded("scanning", || {
            let txn = self.db()?.begin_read()?;
            let table = match txn.open_table(table_def(collection)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out = Vec::new();
            for entry in table.range::<&[u8]>(bounds)?.take(limit) {
                let (k, v) = entry?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Every entry of every collection, for maintenance: `(collection, key)` pairs. The
    /// reserved identity table is not a collection and is left out.
    pub fn list_keys(&self) -> Result<Vec<(String, Vec<u8>)>> {
        self.guarded("listing", || {
            let txn = self.db()?.begin_read()?;
            let mut out = Vec::new();
            for handle in txn.list_tables()? {
                let name = handle.name().to_owned();
                if name == IDENTITY_TABLE {
                    continue;
                }
                let table = txn.open_table(table_def(&name))?;
                for entry in table.iter()? {
                    out.push((name.clone(), entry?.0.value().to_vec()));
                }
            }
            Ok(out)
        })
    }

    /// Commits `ops` atomically, as part of a group; returns once durable. The calling thread
    /// may lead the group (see the module docs). The ops must have been validated (limits,
    /// names) by the caller.
    pub fn write(&self, ops: Vec<Op>, bytes: usize) -> Result<Written> {
        let (reply, wake) = mpsc::sync_channel(1);
        let lead = {
            let mut q = self.queue.lock();
            if q.push(Waiter {
                ops,
                bytes,
                reply: Reply::Thread(reply),
            }) {
                self.wake.notify_one();
            }
            !std::mem::replace(&mut q.leading, true)
        };
        if !lead {
            match wake.recv() {
                Ok(Wake::Done(result)) => return result,
                Ok(Wake::Lead) => {}
                Err(_) => return Err(committer_lost()),
            }
        }
        self.lead();
        match wake.recv() {
            Ok(Wake::Done(result)) => result,
            Ok(Wake::Lead) | Err(_) => Err(committer_lost()),
        }
    }

    /// The committer thread: leads whenever the write at the queue's front is a task's, until
    /// the shard closes. A panic inside a group (redb's included) is answered by the group's
    /// [`Handoff`] and does not end the thread.
    fn commit_loop(&self) {
        loop {
            {
                let mut q = self.queue.lock();
                while !q.committer_leads {
                    if q.closing {
                        return;
                    }
                    self.wake.wait(&mut q);
                }
                q.committer_leads = false;
                self.fill_group(&mut q);
            }
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.lead()));
        }
    }

    /// Before the committer leads: if fewer than half as many writes are queued as the last
    /// group held, waits until as many are (or the shard closes), for at most half the last
    /// commit's time and never more than [`MAX_FILL_WAIT`].
    ///
    /// The writers a commit answered tend to come back at once (an HTTP client's next
    /// request), but their answers take a moment to travel, while the few writes that
    /// arrived during the commit are already queued. Committing those alone splits the
    /// writers into small groups, each paying a whole commit. That is what two worker
    /// processes on one counter did: each took the writer lock as soon as a straggler
    /// queued, and groups fell to 8-12 per commit where one worker formed 15. Steady load
    /// keeps about half of its writers queued while the other half is answered and is not
    /// delayed; a lone writer (last group 1) never waits; if the writers do not come back,
    /// the wait costs at most half a commit once, and the next target is the smaller group.
    fn fill_group(&self, q: &mut parking_lot::MutexGuard<'_, Queue>) {
        let c = &self.counters;
        let target = c.last_group.load(Ordering::Relaxed) as usize;
        if q.waiting.len() * 2 >= target.min(MAX_GROUP_WRITES) || q.closing {
            return;
        }
        let half_commit = Duration::from_nanos(c.last_commit_ns.load(Ordering::Relaxed) / 2);
        #[allow(unused_mut)]
        let mut wait = half_commit.min(MAX_FILL_WAIT);
        #[cfg(test)]
        if let Some(w) = *self.fill_wait.lock() {
            wait = w;
        }
        let deadline = Instant::now() + wait;
        q.filling = target;
        while q.waiting.len() < target && !q.closing {
            if self.wake.wait_until(q, deadline).timed_out() {
                break;
            }
        }
        q.filling = 0;
    }

    /// Commits one group from the front of the queue, answers it, then hands leadership on.
    fn lead(&self) {
        // Answers the group and hands off even if anything below panics (redb included), so
        // no caller waits forever. Armed before the first call that could panic.
        let mut handoff = Handoff {
            shard: self,
            group: None,
        };
        #[cfg(test)]
        if self.panic_next_leader.swap(false, Ordering::Relaxed) {
            panic!("injected leader panic");
        }
        // The writer lock first, the group second: everything that queues while another
        // process holds the lock joins this transaction instead of waiting for the next one.
        let results = self.guarded("committing to", || {
            let db = match self.db() {
                Ok(db) => db,
                Err(e) => {
                    let group = handoff.group.insert(self.take_group());
                    return Ok(self.failed(group.len(), e));
                }
            };
            let started = Instant::now();
            let txn = db.begin_write();
            let locked = Instant::now();
            let group = handoff.group.insert(self.take_group());
            #[cfg(test)]
            if self.panic_in_commit.swap(false, Ordering::Relaxed) {
                panic!("injected panic inside a commit");
            }
            Ok(match txn {
                Ok(txn) => {
                    self.add_time(&self.counters.lock_wait_ns, locked - started);
                    self.commit_group(txn, group)
                }
                Err(e) => self.fail_group(group.len(), redb::Error::from(e)),
            })
        });
        // A panic (or a shard already known damaged) answers the whole group, taken here if
        // it happened before the leader took it.
        let group = handoff.group.take().unwrap_or_else(|| self.take_group());
        let results = results.unwrap_or_else(|e| self.failed(group.len(), e));
        for (waiter, result) in group.into_iter().zip(results) {
            waiter.answer(result);
        }
    }

    /// Takes the group from the front of the queue: at least one write (the leader's own is
    /// there), at most [`MAX_GROUP_WRITES`] or [`MAX_GROUP_BYTES`].
    fn take_group(&self) -> Vec<Waiter> {
        let mut q = self.queue.lock();
        let max = match self.options.mode {
            CommitMode::Group => MAX_GROUP_WRITES,
            CommitMode::PerWrite => 1,
        };
        let mut bytes = 0;
        let mut take = 0;
        for w in q.waiting.iter().take(max) {
            if take > 0 && bytes + w.bytes > MAX_GROUP_BYTES {
                break;
            }
            bytes += w.bytes;
            take += 1;
        }
        q.waiting.drain(..take).collect()
    }

    /// Runs the group in the open transaction; returns each caller's outcome, in order.
    fn commit_group(&self, txn: redb::WriteTransaction, group: &[Waiter]) -> Vec<Result<Written>> {
        let c = &self.counters;
        c.committing.store(group.len() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let results = self.apply_and_commit(txn, group);
        c.committing.store(0, Ordering::Relaxed);
        if results.is_ok() {
            let took = started.elapsed();
            self.add_time(&c.commit_ns, took);
            c.last_commit_ns
                .store(took.as_nanos() as u64, Ordering::Relaxed);
            c.last_group.store(group.len() as u64, Ordering::Relaxed);
        }
        results.unwrap_or_else(|e| self.fail_group(group.len(), e))
    }

    fn apply_and_commit(
        &self,
        txn: redb::WriteTransaction,
        group: &[Waiter],
    ) -> Result<Vec<Result<Written>>, redb::Error> {
        let mut results = Vec::with_capacity(group.len());
        {
            let mut tables: HashMap<String, Table<'_>> = HashMap::new();
            for waiter in group {
                results.push(apply::apply(
                    &txn,
                    &mut tables,
                    &waiter.ops,
                    self.options.max_value_bytes,
                )?);
            }
        }
        txn.commit()?;
        let c = &self.counters;
        c.commits.fetch_add(1, Ordering::Relaxed);
        c.max_group.fetch_max(group.len() as u64, Ordering::Relaxed);
        let ok = results.iter().filter(|r| r.is_ok()).count() as u64;
        c.writes.fetch_add(ok, Ordering::Relaxed);
        c.rejected
            .fetch_add(group.len() as u64 - ok, Ordering::Relaxed);
        Ok(results)
    }

    /// Answers every caller of a failed transaction and reopens the handle.
    fn fail_group(&self, n: usize, e: redb::Error) -> Vec<Result<Written>> {
        self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
        tracing::error!(shard = self.id, error = %e, "transaction failed; reopening shard");
        // A failed commit leaves redb's allocator state discarded until the file is reopened.
        // If the reopen fails too (the disk still failing), the next use tries again.
        match self.reopen() {
            Ok(db) => *self.db.write() = Arc::new(db),
            Err(reopen) => {
                self.stale.store(true, Ordering::Release);
                tracing::error!(shard = self.id, error = %reopen, "reopen failed; will retry");
            }
        }
        let e = Arc::new(e);
        (0..n).map(|_| Err(Error::Storage(e.clone()))).collect()
    }

    /// The same error for each of `n` callers: `Storage` and `Corrupted` are answered as
    /// they are; anything else (a failed reopen) as an uncertain storage failure.
    fn failed(&self, n: usize, e: Error) -> Vec<Result<Written>> {
        (0..n)
            .map(|_| {
                Err(match &e {
                    Error::Corrupted(why) => Error::Corrupted(why.clone()),
                    Error::Storage(inner) => Error::Storage(inner.clone()),
                    other => storage_failure(other.to_string()),
                })
            })
            .collect()
    }

    fn add_time(&self, counter: &AtomicU64, d: Duration) {
        counter.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A snapshot of this process's counters for the shard.
    pub fn stats(&self) -> ShardStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ShardStats {
            shard: self.id,
            commits: get(&c.commits),
            writes: get(&c.writes),
            rejected: get(&c.rejected),
            failed_commits: get(&c.failed_commits),
            reads: get(&c.reads),
            max_group: get(&c.max_group),
            queued: self.queue.lock().waiting.len() as u64,
            committing: get(&c.committing),
            lock_wait_us: get(&c.lock_wait_ns) / 1000,
            commit_us: get(&c.commit_ns) / 1000,
        }
    }
}

/// On drop, answers callers left unanswered (the commit panicked) and passes leadership to
/// the first waiting caller (the committer thread, for a task's write), or gives it up if none
/// waits.
struct Handoff<'a> {
    shard: &'a Core,
    /// `None` until the leader took its group, and again once it answered it; a group still
    /// here on drop was not answered. If the leader never took one, the group is taken here,
    /// so that the leader's own write (at the front of the queue) is answered too.
    group: Option<Vec<Waiter>>,
}

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let group = self.group.take().unwrap_or_else(|| self.shard.take_group());
            for waiter in group {
                waiter.answer(Err(committer_lost()));
            }
        }
        self.shard.counters.committing.store(0, Ordering::Relaxed);
        let mut q = self.shard.queue.lock();
        match q.waiting.front().map(|w| &w.reply) {
            // Its channel is empty: a waiting thread receives nothing before Lead or its Done.
            Some(Reply::Thread(next)) => {
                let _ = next.try_send(Wake::Lead);
            }
            Some(Reply::Task(_)) => {
                q.committer_leads = true;
                self.shard.wake.notify_one();
            }
            None => q.leading = false,
        }
    }
}

/// A write whose committer failed without answering: its outcome is unknown, which is what
/// [`Error::Storage`] says.
fn committer_lost() -> Error {
    storage_failure("the committing thread failed; the write's outcome is unknown".into())
}

fn storage_failure(why: String) -> Error {
    Error::Storage(Arc::new(redb::Error::Io(std::io::Error::other(why))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::WriteBatch;

    fn test_options() -> ShardOptions {
        ShardOptions {
            cache_bytes: 1 << 20,
            max_value_bytes: 1 << 20,
            ..ShardOptions::default()
        }
    }

    fn put(key: &str) -> (Vec<Op>, usize) {
        let mut b = WriteBatch::new();
        b.put("c", key, "v");
        let bytes = b.payload_bytes();
        (b.ops, bytes)
    }

    /// Regression: a panic before the leader took its group left the shard without a leader
    /// and its queue stuck, so every later write to it hung.
    #[test]
    fn a_panicking_leader_answers_its_caller_and_leaves_the_shard_usable() {
        let dir = tempfile::tempdir().unwrap();
        let shard =
            Shard::open(0, &dir.path().join("s.redb"), &test_options(), None, true).unwrap();
        shard.panic_next_leader.store(true, Ordering::Relaxed);
        let panicked = std::thread::scope(|s| {
            s.spawn(|| {
                let (ops, bytes) = put("a");
                shard.write(ops, bytes)
            })
            .join()
        });
        assert!(panicked.is_err(), "the injected panic did not happen");
        let (done, outcome) = mpsc::channel();
        std::thread::scope(|s| {
            s.spawn(|| {
                let (ops, bytes) = put("b");
                let _ = done.send(shard.write(ops, bytes));
            });
            // A wedged shard never answers. Abort rather than fail: the scope would wait
            // for the stuck writer forever.
            let written = outcome.recv_timeout(Duration::from_secs(10));
            if written.is_err() {
                std::process::abort();
            }
            written.unwrap().expect("the shard still commits");
        });
        assert_eq!(shard.get("c", b"b").unwrap(), Some(b"v".to_vec()));
        assert_eq!(shard.get("c", b"a").unwrap(), None);
        assert_eq!(shard.stats().queued, 0);
    }

    fn temp_shard(dir: &tempfile::TempDir) -> Shard {
        Shard::open(0, &dir.path().join("s.redb"), &test_options(), None, true).unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    /// Async writes are committed by the committer thread in groups, while threads lead their
    /// own: every write of both kinds lands, once, and the groups are shared.
    #[test]
    fn async_and_thread_writers_share_groups_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        std::thread::scope(|s| {
            for t in 0..4 {
                let shard = &shard;
                s.spawn(move || {
                    for i in 0..50 {
                        let (ops, bytes) = put(&format!("t{t}-{i}"));
                        shard.write(ops, bytes).unwrap();
                    }
                });
            }
            runtime().block_on(async {
                let writes = (0..200).map(|i| {
                    let (ops, bytes) = put(&format!("task-{i}"));
                    shard.write_async(ops, bytes)
                });
                for written in futures_join_all(writes).await {
                    written.unwrap();
                }
            });
        });
        let stats = shard.stats();
        assert_eq!(stats.writes, 400);
        assert!(
            stats.commits < 400,
            "no write shared a group: {} commits",
            stats.commits
        );
        assert_eq!(
            shard
                .scan("c", (Bound::Unbounded, Bound::Unbounded), 1000)
                .unwrap()
                .len(),
            400
        );
        assert_eq!(stats.queued, 0);
    }

    /// A committer thread the OS refuses fails that write with `Io`, queues nothing, and the
    /// next write starts the thread and lands.
    #[test]
    fn a_refused_committer_thread_fails_the_write_alone() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        shard.refuse_committer_thread.store(true, Ordering::Relaxed);
        let rt = runtime();
        let (ops, bytes) = put("first");
        match rt.block_on(shard.write_async(ops, bytes)) {
            Err(Error::Io { .. }) => {}
            other => panic!("expected an Io error, got {other:?}"),
        }
        assert_eq!(shard.stats().queued, 0);
        assert_eq!(shard.get("c", b"first").unwrap(), None);
        let (ops, bytes) = put("second");
        rt.block_on(shard.write_async(ops, bytes)).unwrap();
        assert!(shard.get("c", b"second").unwrap().is_some());
        assert_eq!(shard.stats().writes, 1);
    }

    /// After a group of 8, the committer waits for 8 writes before it commits again: a write
    /// that finds the queue short waits for the others (here 20 ms behind it), and all land
    /// in one commit. Without the wait, the first would commit alone.
    #[test]
    fn the_committer_waits_for_the_last_group_to_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        *shard.fill_wait.lock() = Some(Duration::from_secs(5));
        let rt = runtime();
        rt.block_on(async {
            let first = (0..8).map(|i| {
                let (ops, bytes) = put(&format!("a{i}"));
                shard.write_async(ops, bytes)
            });
            for written in futures_join_all(first).await {
                written.unwrap();
            }
        });
        let before = shard.stats();
        assert_eq!(before.writes, 8);
        let shard = &shard;
        rt.block_on(async {
            let lead = async {
                let (ops, bytes) = put("b0");
                shard.write_async(ops, bytes).await
            };
            let rest = async {
                // Blocks this runtime's one thread, after `lead` has queued its write; the
                // committer is a thread of its own.
                std::thread::sleep(Duration::from_millis(20));
                let writes = (1..8).map(|i| {
                    let (ops, bytes) = put(&format!("b{i}"));
                    shard.write_async(ops, bytes)
                });
                futures_join_all(writes).await
            };
            let (lead, rest) = tokio::join!(lead, rest);
            lead.unwrap();
            for written in rest {
                written.unwrap();
            }
        });
        let after = shard.stats();
        assert_eq!(after.writes, 16);
        assert_eq!(
            after.commits - before.commits,
            1,
            "the 8 writes were committed in more than one group"
        );
    }

    /// A lone writer (last group 1) never waits: each write commits at once, far inside the
    /// 5 s the committer would otherwise be allowed to wait.
    #[test]
    fn a_lone_writer_never_waits_for_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        *shard.fill_wait.lock() = Some(Duration::from_secs(5));
        let rt = runtime();
        let started = Instant::now();
        for i in 0..5 {
            let (ops, bytes) = put(&format!("k{i}"));
            rt.block_on(shard.write_async(ops, bytes)).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a lone writer waited for a group: {:?}",
            started.elapsed()
        );
        assert_eq!(shard.stats().commits, 5);
    }

    /// Polls futures concurrently on one task, as a server's many tasks would.
    async fn futures_join_all<F: std::future::Future>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output> {
        let mut set = Vec::new();
        for f in futures {
            set.push(Box::pin(f));
        }
        let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (i, f) in set.iter_mut().enumerate() {
                if out[i].is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => out[i] = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(Option::unwrap).collect()
    }

    /// A panic while the committer thread leads answers the task whose write it held with an
    /// error, and the committer goes on serving later writes.
    #[test]
    fn a_panicking_committer_answers_its_task_and_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        let rt = runtime();
        shard.panic_next_leader.store(true, Ordering::Relaxed);
        let (ops, bytes) = put("a");
        let first = rt.block_on(shard.write_async(ops, bytes));
        assert!(first.is_err(), "the injected panic did not happen");
        let (ops, bytes) = put("b");
        rt.block_on(shard.write_async(ops, bytes)).unwrap();
        assert_eq!(shard.get("c", b"b").unwrap(), Some(b"v".to_vec()));
        assert_eq!(shard.get("c", b"a").unwrap(), None);
    }

    /// Regression (issue 9): a panic inside redb while committing reached the caller's
    /// thread (or ended in a 503 with `panicked` in the log). Now every caller of the group
    /// gets `Corrupted` naming the file, the shard is marked damaged (no later call touches
    /// the file), and the marker makes the next open refuse it.
    #[test]
    fn a_panic_inside_a_commit_marks_the_shard_damaged_for_every_caller() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        let (ops, bytes) = put("before");
        shard.write(ops, bytes).unwrap();
        shard.panic_in_commit.store(true, Ordering::Relaxed);
        let rt = runtime();
        let outcomes = rt.block_on(futures_join_all((0..16).map(|i| {
            let (ops, bytes) = put(&format!("k{i}"));
            shard.write_async(ops, bytes)
        })));
        let file = "s.redb";
        for outcome in &outcomes {
            assert!(
                matches!(outcome, Err(Error::Corrupted(m)) if m.contains(file) && m.contains("check --repair")),
                "{outcome:?}"
            );
        }
        // Known damaged: refused without touching the file, reads included.
        assert!(matches!(
            shard.get("c", b"before"),
            Err(Error::Corrupted(_))
        ));
        let (ops, bytes) = put("later");
        assert!(matches!(shard.write(ops, bytes), Err(Error::Corrupted(_))));
        drop(shard);
        assert!(dir.path().join("s.redb.damaged").exists());
        let reopened = Shard::open(0, &dir.path().join("s.redb"), &test_options(), None, false);
        assert!(
            matches!(&reopened, Err(Error::Corrupted(m)) if m.contains("found damaged")),
            "{:?}",
            reopened.err()
        );
        // The file itself is fine (the panic was injected): clearing the marker, as a
        // repair does, opens it with what was committed.
        clear_damage_mark(&dir.path().join("s.redb")).unwrap();
        let shard =
            Shard::open(0, &dir.path().join("s.redb"), &test_options(), None, false).unwrap();
        assert_eq!(shard.get("c", b"before").unwrap(), Some(b"v".to_vec()));
        assert_eq!(shard.get("c", b"k0").unwrap(), None);
    }

    /// Dropping a shard stops its committer thread after it committed what was queued.
    #[test]
    fn dropping_the_shard_joins_its_committer() {
        let dir = tempfile::tempdir().unwrap();
        let shard = temp_shard(&dir);
        let (ops, bytes) = put("a");
        runtime().block_on(shard.write_async(ops, bytes)).unwrap();
        let core = Arc::downgrade(&shard.core);
        drop(shard);
        assert!(
            core.upgrade().is_none(),
            "the committer thread still holds the shard"
        );
        // The file is closed: it opens again.
        temp_shard_reopen(&dir);
    }

    fn temp_shard_reopen(dir: &tempfile::TempDir) {
        let shard =
            Shard::open(0, &dir.path().join("s.redb"), &test_options(), None, false).unwrap();
        assert_eq!(shard.get("c", b"a").unwrap(), Some(b"v".to_vec()));
    }
}
