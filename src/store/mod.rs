//! The store: a directory of shard files behind one routing scheme, safe for any number of
//! processes at once.
//!
//! ```text
//! shards/
//!   MANIFEST          format, routing scheme, shard file names (written once, atomically)
//!   LOCK              flock: shared while a Store is open, exclusive for maintenance
//!   shard-000.redb    one redb database per shard, ConcurrencyMode::MultiWriter
//!   shard-001.redb
//! ```
//!
//! # Contracts
//!
//! - **Durable when it returns.** A write returns `Ok` only after the redb transaction that
//!   holds it has committed durably (two-phase commit, fsync'd). Concurrent writes to one
//!   shard from one process share a transaction (group commit, see [`crate::shard`]); writes
//!   from different processes serialize through redb's cross-process writer lock.
//! - **Routing never changes under a store.** The scheme is read from MANIFEST; opening with
//!   another scheme is [`Error::SchemeMismatch`]. A directory with neither MANIFEST nor shard
//!   files is a new store; shard files without MANIFEST are [`Error::Corrupted`], unless
//!   all of them are empty: those are an interrupted creation's leftovers and are replaced.
//! - **Creation is race-free.** Creators take `LOCK` exclusive, create the shard files, then
//!   publish MANIFEST; any number of processes creating one store at once end up using the one
//!   MANIFEST the first of them wrote.
//! - **Atomic single-shard writes.** A [`WriteBatch`] commits whole or not at all.
//! - **Limits.** Keys are 1..=1024 bytes; values at most 1 MiB unless configured; collection
//!   names 1..=64 bytes of `[A-Za-z0-9_.-]`. Violations are typed errors and write nothing.

#[cfg(test)]
mod fault_tests;
mod lock;
mod maintenance;
mod manifest;
mod scan;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use lock::StoreLock;
#[cfg(feature = "server")]
pub(crate) use lock::try_lock_file;
pub use maintenance::{CheckReport, ShardCheck, ShardHealth};
pub(crate) use manifest::sync_dir;
pub(crate) use manifest::write_atomically;
pub use manifest::{MANIFEST_FILE, Manifest};
pub use scan::{Entry, Scan};

use crate::batch::{Expect, Op, WriteBatch, Written, check_collection, check_key, check_op};
use crate::error::{Error, Result};
use crate::shard::{CommitMode, Faults, Shard, ShardOptions, ShardStats};
use crate::shard_by::ShardBy;

/// The default limit on a value, in bytes (1 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1 << 20;
/// The default page cache of each shard handle (redb's own default is 1 GiB per handle).
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// How long an open waits for a concurrent creator to publish MANIFEST.
const CREATION_WAIT: Duration = Duration::from_secs(10);
/// How long an open of an existing store waits for an exclusive holder before calling it
/// maintenance: longer than a creator's glance at an existing MANIFEST takes.
const MAINTENANCE_WAIT: Duration = Duration::from_secs(1);

/// Options for opening or creating a store. Get one from [`Store::shard_by`] or
/// [`Store::builder`].
#[derive(Clone, Debug)]
pub struct StoreBuilder {
    scheme: Option<ShardBy>,
    cache_bytes: usize,
    max_value_bytes: usize,
    commit_mode: CommitMode,
    faults: Option<Arc<Faults>>,
}

impl StoreBuilder {
    /// Opens every shard file through a backend that fails writes or syncs when `faults`
    /// says so: for tests of the failed-commit path.
    #[cfg(test)]
    pub(crate) fn inject_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    fn shard_options(&self) -> ShardOptions {
        ShardOptions {
            cache_bytes: self.cache_bytes,
            mode: self.commit_mode,
            max_value_bytes: self.max_value_bytes,
            faults: self.faults.clone(),
        }
    }

    /// The page cache of each shard handle, in bytes. Default 16 MiB.
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// The largest value accepted, in bytes. Default 1 MiB.
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// Group commit (the default) or one transaction per write.
    pub fn commit_mode(mut self, mode: CommitMode) -> Self {
        self.commit_mode = mode;
        self
    }

    /// Opens the store in `dir`, creating it (and `dir`) if there is none and a scheme was
    /// given.
    pub fn open(self, dir: impl AsRef<Path>) -> Result<Store> {
        let dir = dir.as_ref();
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(Error::InvalidInput(format!(
                    "{} exists and is not a directory",
                    dir.display()
                )));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.scheme.is_some() => {
                create_dir_durably(dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(no_store(dir));
            }
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        }
        // Since when this opener has waited for an exclusive holder, and whether MANIFEST
        // existed then. IMPORTANT: the patience runs from the start of the current kind of
        // wait, so a long creation (this opener's own, or a slow creator's) never counts
        // against the short wait for a creator that has just published MANIFEST.
        let mut waiting: Option<(bool, Instant)> = None;
        loop {
            let Some(lock) = StoreLock::try_shared(dir)? else {
                // An exclusive holder: a creator (no MANIFEST yet, or one that just found it
                // and is about to let go) or maintenance, which holds it for long.
                let exists = Manifest::read(dir)?.is_some();
                let since = match waiting {
                    Some((existed, since)) if existed == exists => since,
                    _ => waiting.insert((exists, Instant::now())).1,
                };
                let patience = if exists {
                    MAINTENANCE_WAIT
                } else {
                    CREATION_WAIT
                };
                if since.elapsed() > patience {
                    return Err(Error::Locked(format!(
                        "{} is under maintenance (LOCK is held exclusively)",
                        dir.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            waiting = None;
            if let Some(manifest) = Manifest::read(dir)? {
                return self.open_existing(dir, manifest, lock);
            }
            let Some(scheme) = &self.scheme else {
                let strays = stray_shard_files(dir)?;
                if !strays.is_empty() && !strays.iter().all(|n| never_written(&dir.join(n))) {
                    return Err(orphans(dir, &strays));
                }
                return Err(no_store(dir));
            };
            // Creating: trade the shared lock for the exclusive one. Another opener may win it;
            // then this one loops and finds its MANIFEST.
            drop(lock);
            if let Some(exclusive) = StoreLock::try_exclusive(dir)? {
                self.create(dir, scheme, &exclusive)?;
            } else {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Under the exclusive lock: creates the shard files, then publishes MANIFEST.
    fn create(&self, dir: &Path, scheme: &ShardBy, _exclusive: &StoreLock) -> Result<()> {
        if Manifest::read(dir)?.is_some() {
            return Ok(()); // Another creator finished first.
        }
        let strays = stray_shard_files(dir)?;
        // Shard files appear under their final names only complete (see below), and no store
        // opens a shard before MANIFEST exists, so empty ones are an interrupted creation's
        // leftovers and hold nothing: replace them. If any holds data or cannot be read, the
        // directory is an error: its routing is unknown.
        if !strays.is_empty() {
            if !strays.iter().all(|name| never_written(&dir.join(name))) {
                return Err(orphans(dir, &strays));
            }
            for name in &strays {
                std::fs::remove_file(dir.join(name))
                    .map_err(|e| Error::io(format!("removing leftover {name}"), e))?;
            }
            tracing::warn!(
                dir = %dir.display(),
                files = strays.len(),
                "replaced the empty shard files of an interrupted creation"
            );
        }
        for name in list_dir(dir)? {
            if let Some(shard) = name.strip_suffix(CREATING_SUFFIX)
                && manifest::is_shard_file(shard)
            {
                remove_if_present(&dir.join(&name))?;
            }
        }
        let manifest = Manifest::new(scheme.clone());
        for (i, name) in manifest.shards.iter().enumerate() {
            // Built under a temporary name and renamed, so a crash never leaves a half-made
            // file under a shard's name (redb writes its header last).
            let tmp = dir.join(format!("{name}{CREATING_SUFFIX}"));
            remove_if_present(&tmp)?;
            Shard::open(
                i,
                &tmp,
                &self.shard_options(),
                manifest.identity(i).as_ref(),
                true,
            )?;
            std::fs::rename(&tmp, dir.join(name))
                .map_err(|e| Error::io(format!("naming {name}"), e))?;
        }
        sync_dir(dir)?;
        manifest.write(dir)?;
        tracing::info!(dir = %dir.display(), scheme = %scheme, "created store");
        Ok(())
    }

    fn open_existing(&self, dir: &Path, manifest: Manifest, lock: StoreLock) -> Result<Store> {
        if let Some(requested) = &self.scheme
            && *requested != manifest.scheme
        {
            return Err(Error::SchemeMismatch {
                dir: dir.to_path_buf(),
                stored: manifest.scheme,
                requested: requested.clone(),
            });
        }
        let options = self.shard_options();
        let shards = manifest
            .shards
            .iter()
            .enumerate()
            .map(|(i, name)| {
                Shard::open(
                    i,
                    &dir.join(name),
                    &options,
                    manifest.identity(i).as_ref(),
                    false,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                manifest,
                shards,
                max_value_bytes: self.max_value_bytes,
                _lock: lock,
            }),
        })
    }
}

/// Creates a directory (and its parents) and makes its entry durable in its parent.
pub(crate) fn create_dir_durably(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Shard files with data but no MANIFEST: their routing is unknown.
fn orphans(dir: &Path, strays: &[String]) -> Error {
    let shown: Vec<&str> = strays.iter().take(8).map(String::as_str).collect();
    let more = strays.len().saturating_sub(shown.len());
    Error::Corrupted(format!(
        "{} holds shard files ({}{}) but no MANIFEST, so their routing is unknown; \
         restore MANIFEST, or move them away",
        dir.display(),
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    ))
}

fn no_store(dir: &Path) -> Error {
    Error::NotFound(format!(
        "no store at {} (no MANIFEST); create one by opening it with a routing scheme, such as hash:8",
        dir.display()
    ))
}

/// Suffix of a shard file being created.
const CREATING_SUFFIX: &str = ".creating";

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

/// Whether a shard file holds no data: empty, or a redb file without entries.
fn never_written(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => true,
        Ok(_) => maintenance::holds_no_entries(path),
        Err(_) => false,
    }
}

/// The names of a directory's entries that are valid UTF-8, sorted.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let listing = |e| Error::io(format!("listing {}", dir.display()), e);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        if let Some(name) = entry.map_err(listing)?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn stray_shard_files(dir: &Path) -> Result<Vec<String>> {
    Ok(list_dir(dir)?
        .into_iter()
        .filter(|name| manifest::is_shard_file(name))
        .collect())
}

/// A sharded key-value store in one directory. Cheap to clone; all clones share the shard
/// handles and their group committers. Dropping the last clone closes the shards and
/// releases `LOCK`.
///
/// ```
/// use shardkv::{ShardBy, Store};
/// # fn main() -> shardkv::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::shard_by(ShardBy::alphabetical(["a-m", "n-z"])?).open(dir.path())?;
/// store.put("dogs", "biscuit", br#"{"color":"orange"}"#)?;
/// assert_eq!(store.get("dogs", "biscuit")?.as_deref(), Some(&br#"{"color":"orange"}"#[..]));
/// assert_eq!(store.incr("counters", "requests", 1)?, 1);
/// assert_eq!(store.shard_of("peep"), 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    manifest: Manifest,
    shards: Vec<Shard>,
    max_value_bytes: usize,
    // Last, so that it is released after the shards are closed.
    _lock: StoreLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .field("scheme", &self.inner.manifest.scheme.to_string())
            .finish()
    }
}

impl Store {
    /// Options for a store routed by `scheme`: creates it if the directory holds none, and
    /// refuses a store created with another scheme.
    pub fn shard_by(scheme: ShardBy) -> StoreBuilder {
        StoreBuilder {
            scheme: Some(scheme),
            ..Store::builder()
        }
    }

    /// Options for opening an existing store with the scheme in its MANIFEST.
    pub fn builder() -> StoreBuilder {
        StoreBuilder {
            scheme: None,
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            commit_mode: CommitMode::Group,
            faults: None,
        }
    }

    /// Opens an existing store with the scheme in its MANIFEST.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::builder().open(dir)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The routing scheme.
    pub fn scheme(&self) -> &ShardBy {
        &self.inner.manifest.scheme
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The path of shard `i`'s file.
    pub fn shard_path(&self, i: usize) -> Option<PathBuf> {
        self.inner
            .manifest
            .shards
            .get(i)
            .map(|n| self.inner.dir.join(n))
    }

    /// The shard that holds `key`: the one its route names (see
    /// [`route_of`](crate::shard_by::route_of)), for every call.
    pub fn shard_of(&self, key: impl AsRef<[u8]>) -> usize {
        self.inner.manifest.scheme.shard_of(key.as_ref())
    }

    /// This process's counters for every shard.
    pub fn stats(&self) -> Vec<ShardStats> {
        self.inner.shards.iter().map(|s| s.stats()).collect()
    }

    /// The value of `key`, from a consistent snapshot of its shard.
    pub fn get(&self, collection: &str, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        check_collection(collection)?;
        check_key(key)?;
        self.inner.shards[self.shard_of(key)].get(collection, key)
    }

    /// Sets `key` to `value`. Durable when it returns.
    pub fn put(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(collection, key, value);
        self.write(batch).map(drop)
    }

    /// Inserts `key` only if it is absent. Returns whether it was inserted.
    pub fn insert(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<bool> {
        let mut batch = WriteBatch::new();
        batch
            .expect(collection, &key, Expect::Absent)
            .put(collection, &key, value);
        conflict_as_false(self.write(batch))
    }

    /// Replaces the value of `key` with `new` (`None` deletes) only if it currently is
    /// `expected` (`None`: absent). Returns whether it was replaced.
    pub fn compare_and_set(
        &self,
        collection: &str,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let mut batch = WriteBatch::new();
        batch.expect(
            collection,
            &key,
            expected.map_or(Expect::Absent, |v| Expect::Equals(v.to_vec())),
        );
        match new {
            Some(v) => batch.put(collection, &key, v),
            None => batch.delete(collection, &key),
        };
        conflict_as_false(self.write(batch))
    }

    /// Deletes `key`. Returns whether it existed.
    pub fn delete(&self, collection: &str, key: impl AsRef<[u8]>) -> Result<bool> {
        let mut batch = WriteBatch::new();
        batch
            .expect(collection, &key, Expect::Present)
            .delete(collection, &key);
        conflict_as_false(self.write(batch))
    }

    /// Adds `delta` to the decimal integer at `key` (absent is 0) and returns the new value.
    /// Exact across threads and processes: no two calls see the same result.
    pub fn incr(&self, collection: &str, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let mut batch = WriteBatch::new();
        batch.incr(collection, key, delta);
        let written = self.write(batch)?;
        Ok(written.values[0])
    }

    /// The value of a counter kept by [`incr`](Self::incr) (absent is 0), or
    /// [`Error::Corrupted`] if `key` holds something else.
    pub fn counter(&self, collection: &str, key: impl AsRef<[u8]>) -> Result<i64> {
        let key = key.as_ref();
        match self.get(collection, key)? {
            None => Ok(0),
            Some(bytes) => crate::shard::parse_counter(&bytes).ok_or_else(|| {
                Error::Corrupted(format!(
                    "{collection}/{} holds {:?}, not a counter",
                    String::from_utf8_lossy(key),
                    String::from_utf8_lossy(&bytes)
                ))
            }),
        }
    }

    /// Commits a batch atomically in the shard of its keys' shared route. Durable when it
    /// returns. Concurrent writers to one shard share a transaction; the calling thread may
    /// commit for the others.
    ///
    /// A failed [`Expect`] is [`Error::Conflict`], a bounded increment that would leave its
    /// range is [`Error::OutOfBounds`], and keys that do not share a route are
    /// [`Error::InvalidInput`]; each writes nothing of the batch.
    pub fn write(&self, batch: WriteBatch) -> Result<Written> {
        match self.prepare(batch)? {
            Some((shard, ops, bytes)) => self.inner.shards[shard].write(ops, bytes),
            None => Ok(Written::default()),
        }
    }

    /// [`Store::write`] for async callers: the batch is queued for the shard's committer
    /// thread and the task awaits its outcome, durable when it resolves, without holding a
    /// thread. Dropping the future does not withdraw a write already queued.
    ///
    /// ```
    /// # use shardkv::{ShardBy, Store, WriteBatch};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::shard_by(ShardBy::hash(2).unwrap()).open(dir.path()).unwrap();
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # runtime.block_on(async {
    /// let mut batch = WriteBatch::new();
    /// batch.incr("counters", "requests", 1);
    /// assert_eq!(store.write_async(batch).await?.values, [1]);
    /// # Ok::<(), shardkv::Error>(()) }).unwrap();
    /// ```
    pub async fn write_async(&self, batch: WriteBatch) -> Result<Written> {
        match self.prepare(batch)? {
            Some((shard, ops, bytes)) => self.inner.shards[shard].write_async(ops, bytes).await,
            None => Ok(Written::default()),
        }
    }

    /// Checks a batch's limits and names; its shard, ops and payload size, or `None` if it is
    /// empty.
    fn prepare(&self, batch: WriteBatch) -> Result<Option<(usize, Vec<Op>, usize)>> {
        let payload = batch.payload_bytes();
        for op in &batch.ops {
            check_op(op, self.inner.max_value_bytes)?;
        }
        let Some(route) = batch.route()? else {
            return Ok(None);
        };
        let shard = self.shard_of(route);
        Ok(Some((shard, batch.ops, payload)))
    }

    /// The entries of a collection in a range, from every shard, merged in byte order of the
    /// keys. Pages with [`Scan::after`] and [`Scan::limit`].
    pub fn scan(&self, collection: &str, scan: impl Into<Scan>) -> Result<Vec<Entry>> {
        let scan = scan.into();
        check_collection(collection)?;
        if scan.is_empty() || scan.limit == 0 {
            return Ok(Vec::new());
        }
        let runs = self
            .inner
            .shards
            .iter()
            .map(|s| s.scan(collection, scan.bounds(), scan.limit))
            .collect::<Result<Vec<_>>>()?;
        Ok(scan::merge(runs, scan.limit))
    }

    /// Every `(collection, key)` in shard `i`, for tools and tests that check placement.
    pub fn keys_in_shard(&self, i: usize) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner
            .shards
            .get(i)
            .ok_or_else(|| Error::NotFound(format!("shard {i}")))?
            .list_keys()
    }
}

fn conflict_as_false(result: Result<Written>) -> Result<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(Error::Conflict(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
