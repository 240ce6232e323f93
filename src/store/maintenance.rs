//! Maintenance: a live read-only check, an offline integrity repair, and destruction.
//!
//! The check runs beside live writers: it opens each shard read-only (redb's MultiWriter
//! protocol lets any number of processes read while others write) and reads one snapshot.
//! Repair and destruction take `LOCK` exclusive, so they are refused with
//! [`Error::Locked`](crate::Error::Locked) while any process has the store open.

use std::path::Path;

use redb::{ConcurrencyMode, Database, ReadableDatabase, ReadableTableMetadata, TableHandle};

use super::lock::StoreLock;
use super::manifest::{MANIFEST_FILE, Manifest, sync_dir};
use super::{DEFAULT_CACHE_BYTES, Store, no_store, remove_if_present};
use crate::error::Result;

/// The state of one shard file, as a check found it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardHealth {
    /// Readable; with `--repair`, the full integrity check passed.
    Ok,
    /// The integrity check found damage and repaired it.
    Repaired,
    /// A writer crashed and no live process has recovered the file yet; the next writer to
    /// open it (or a repair) will.
    NeedsRecovery,
    /// Damaged beyond repair, or unreadable: the message says how.
    Corrupted(String),
}

/// What a check found in one shard.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardCheck {
    /// Shard number.
    pub shard: usize,
    /// File name inside the store directory.
    pub file: String,
    /// File size in bytes.
    pub bytes: u64,
    /// Each collection with its number of entries.
    pub collections: Vec<(String, u64)>,
    /// The verdict.
    pub health: ShardHealth,
}

/// What a check found in a store.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckReport {
    /// The routing scheme, as a spec.
    pub scheme: String,
    /// One entry per shard.
    pub shards: Vec<ShardCheck>,
}

impl CheckReport {
    /// Whether every shard is usable (healthy, repaired, or merely awaiting recovery).
    pub fn is_healthy(&self) -> bool {
        self.shards
            .iter()
            .all(|s| !matches!(s.health, ShardHealth::Corrupted(_)))
    }
}

impl Store {
    /// Checks a store read-only, while other processes may be using it: opens every shard,
    /// reads one snapshot, and counts each collection's entries.
    pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport> {
        check_store(dir.as_ref(), false)
    }

    /// Runs redb's full integrity check on every shard and repairs what it can. Takes `LOCK`
    /// exclusive: [`Error::Locked`](crate::Error::Locked) while the store is in use.
    pub fn repair(dir: impl AsRef<Path>) -> Result<CheckReport> {
        let dir = dir.as_ref();
        let _lock = StoreLock::exclusive(dir)?;
        check_store(dir, true)
    }

    /// Deletes a store's MANIFEST and shard files (`LOCK` stays, so that a process waiting
    /// on it never locks a file that was unlinked). [`Error::Locked`](crate::Error::Locked) while the store is in
    /// use.
    pub fn destroy(dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let _lock = StoreLock::exclusive(dir)?;
        // MANIFEST first: once it is gone nobody can open the store, whatever remains.
        remove_if_present(&dir.join(MANIFEST_FILE))?;
        for name in super::stray_shard_files(dir)? {
            remove_if_present(&dir.join(name))?;
        }
        sync_dir(dir)
    }
}

fn check_store(dir: &Path, repair: bool) -> Result<CheckReport> {
    let manifest = Manifest::read(dir)?.ok_or_else(|| no_store(dir))?;
    let shards = manifest
        .shards
        .iter()
        .enumerate()
        .map(|(i, file)| check_shard(dir, i, file, repair))
        .collect();
    Ok(CheckReport {
        scheme: manifest.scheme.to_string(),
        shards,
    })
}

fn check_shard(dir: &Path, shard: usize, file: &str, repair: bool) -> ShardCheck {
    let path = dir.join(file);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut check = ShardCheck {
        shard,
        file: file.to_owned(),
        bytes,
        collections: Vec::new(),
        health: ShardHealth::Ok,
    };
    let mut builder = Database::builder();
    builder
        .set_cache_size(DEFAULT_CACHE_BYTES)
        .set_concurrency_mode(ConcurrencyMode::MultiWriter);
    let counted = if repair {
        builder
            .open(&path)
            .map_err(redb::Error::from)
            .and_then(|mut db| {
                if !db.check_integrity()? {
                    check.health = ShardHealth::Repaired;
                }
                count_entries(&db)
            })
    } else {
        builder
            .open_read_only(&path)
            .map_err(redb::Error::from)
            .and_then(|db| count_entries(&db))
    };
    match counted {
        Ok(collections) => check.collections = collections,
        Err(redb::Error::RepairAborted) => check.health = ShardHealth::NeedsRecovery,
        Err(e) => check.health = ShardHealth::Corrupted(e.to_string()),
    }
    check
}

/// Whether a shard file opens and holds no entry in any collection. Called under the
/// exclusive LOCK, on files no MANIFEST names.
pub(super) fn holds_no_entries(path: &Path) -> bool {
    let mut builder = Database::builder();
    builder
        .set_cache_size(1 << 20)
        .set_concurrency_mode(ConcurrencyMode::MultiWriter);
    builder
        .open_read_only(path)
        .map_err(redb::Error::from)
        .and_then(|db| count_entries(&db))
        .is_ok_and(|collections| collections.iter().all(|(_, n)| *n == 0))
}

fn count_entries(db: &impl ReadableDatabase) -> Result<Vec<(String, u64)>, redb::Error> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for handle in txn.list_tables()? {
        let name = handle.name().to_owned();
        let table = txn.open_untyped_table(handle)?;
        out.push((name, table.len()?));
    }
    out.sort();
    Ok(out)
}
