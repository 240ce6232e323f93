//! Maintenance: a live check that reads everything, an offline integrity repair, and
//! destruction.
//!
//! The check runs beside live writers. For each shard named in MANIFEST it opens the file as a
//! writer would (redb's MultiWriter protocol lets any number of processes do so; the open
//! changes no data, and refuses to run a crash recovery), compares the file's identity with
//! MANIFEST's, and reads every table, key and value of one snapshot, all under
//! [`contain`](crate::shard::contain): a damaged page that makes redb panic is reported as
//! that shard's damage, never as a crash of the check. A shard that a server found damaged
//! (its `.damaged` marker) is reported so until a repair clears it. Files that MANIFEST does
//! not name are listed.
//!
//! Repair and destruction take `LOCK` exclusive, so they are refused with
//! [`Error::Locked`](crate::Error::Locked) while any process has the store open.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTableMetadata, TableHandle};

use super::lock::StoreLock;
use super::manifest::{MANIFEST_FILE, Manifest, is_shard_file, sync_dir};
use super::{DEFAULT_CACHE_BYTES, Store, list_dir, no_store, remove_if_present};
use crate::error::{Error, Result};
use crate::shard::{
    DAMAGED_SUFFIX, IDENTITY_TABLE, Identity, OpenMode, check_identity, clear_damage_mark, contain,
    damage_mark, open_db, read_identity,
};

/// The state of one shard file, as a check found it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardHealth {
    /// Every table, key and value read back; with `--repair`, the full integrity check passed
    /// too.
    Ok,
    /// The integrity check found damage and repaired it.
    Repaired,
    /// A writer crashed and no live process has recovered the file yet; the next writer to
    /// open it (or a repair) will.
    NeedsRecovery,
    /// The operating system refused the file (permissions, I/O): the message says how.
    Unreadable(String),
    /// Damaged, missing, or not this store's: the message says how.
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
    /// Each collection with its number of entries, as read (not as redb's header says).
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
    /// Shard files in the directory that MANIFEST does not name.
    pub unnamed_shards: Vec<String>,
    /// Other files shardkv did not make.
    pub unexpected: Vec<String>,
    /// Whether the store was in use, so that only what a reader sees was checked: not page
    /// checksums, nor the allocator state a writer loads.
    pub live: bool,
}

impl CheckReport {
    /// Whether every shard is usable (healthy, repaired, or merely awaiting recovery) and no
    /// shard file lies beside them that MANIFEST does not name.
    pub fn is_healthy(&self) -> bool {
        self.unnamed_shards.is_empty()
            && self.shards.iter().all(|s| {
                matches!(
                    s.health,
                    ShardHealth::Ok | ShardHealth::Repaired | ShardHealth::NeedsRecovery
                )
            })
    }

    /// The report for people: a table of shards, then what else was found and what to do.
    pub fn render(&self, dir: &Path, repaired: bool) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "store {} ({})", dir.display(), self.scheme);
        let _ = writeln!(
            out,
            "{:>5}  {:<16} {:>12}  {:<14} collections",
            "shard", "file", "bytes", "health"
        );
        for s in &self.shards {
            let health = match &s.health {
                ShardHealth::Ok => "ok".to_owned(),
                ShardHealth::Repaired => "repaired".to_owned(),
                ShardHealth::NeedsRecovery => "needs recovery".to_owned(),
                ShardHealth::Unreadable(why) => format!("UNREADABLE: {why}"),
                ShardHealth::Corrupted(why) => format!("CORRUPTED: {why}"),
            };
            let collections: Vec<String> = s
                .collections
                .iter()
                .map(|(c, n)| format!("{c}={n}"))
                .collect();
            let _ = writeln!(
                out,
                "{:>5}  {:<16} {:>12}  {:<14} {}",
                s.shard,
                s.file,
                s.bytes,
                health,
                collections.join(" ")
            );
        }
        if !self.unnamed_shards.is_empty() {
            let _ = writeln!(
                out,
                "shard files MANIFEST does not name: {} (MANIFEST may have been replaced; \
                 restore the one these files were created with, or move them away)",
                self.unnamed_shards.join(", ")
            );
        }
        if !self.unexpected.is_empty() {
            let _ = writeln!(
                out,
                "other files shardkv did not make: {}",
                self.unexpected.join(", ")
            );
        }
        let count =
            |f: fn(&ShardHealth) -> bool| self.shards.iter().filter(|s| f(&s.health)).count();
        let fixed = count(|h| matches!(h, ShardHealth::Repaired));
        let damaged = count(|h| matches!(h, ShardHealth::Corrupted(_)));
        let unreadable = count(|h| matches!(h, ShardHealth::Unreadable(_)));
        if self.live {
            let _ = writeln!(
                out,
                "note: the store is in use, so every key and value was read but page checksums \
                 were not verified; stop it for a full check"
            );
        }
        if repaired {
            let _ = match fixed {
                0 if damaged == 0 && unreadable == 0 => writeln!(out, "repair: nothing to repair"),
                0 => writeln!(out, "repair: nothing could be repaired"),
                n => writeln!(out, "repair: repaired {n} shard file(s)"),
            };
        }
        if damaged > 0 {
            let _ = if repaired {
                writeln!(
                    out,
                    "next: the damaged shard files above cannot be repaired; restore them (with \
                     MANIFEST) from a backup, or move the store away and start a new one: their \
                     data is lost"
                )
            } else {
                writeln!(
                    out,
                    "next: stop every process using the store, then run `shardkv check --repair \
                     --data {}`",
                    dir.display()
                )
            };
        }
        if unreadable > 0 {
            let _ = writeln!(
                out,
                "next: give this user read and write access to the files above (or run as \
                 their owner), then check again"
            );
        }
        out
    }
}

impl Store {
    /// Checks a store while other processes may be using it: every shard's identity, and
    /// every table, key and value of one snapshot of it (see the module docs).
    pub fn check(dir: impl AsRef<Path>) -> Result<CheckReport> {
        check_store(dir.as_ref(), false)
    }

    /// Runs redb's full integrity check on every shard, repairs what it can, then checks it as
    /// [`Store::check`] does; a shard that passes loses its `.damaged` marker. Takes `LOCK`
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
            remove_if_present(&dir.join(&name))?;
            remove_if_present(&dir.join(format!("{name}{DAMAGED_SUFFIX}")))?;
        }
        sync_dir(dir)
    }
}

fn check_store(dir: &Path, repair: bool) -> Result<CheckReport> {
    // Without --repair, LOCK exclusive is taken only if free: then no store is open, and the
    // check goes further (see `verify_copy`); held to the end, so none opens meanwhile.
    let taken = if repair {
        Ok(None)
    } else {
        StoreLock::try_exclusive(dir)
    };
    let offline = match taken {
        Ok(lock) => lock,
        // A user who may read the store but not write LOCK checks it as a live one.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
            None
        }
        Err(e) => return Err(e),
    };
    let manifest = Manifest::read(dir)?.ok_or_else(|| match super::stray_shard_files(dir) {
        Ok(strays) if !strays.is_empty() => super::orphans(dir, &strays),
        _ => no_store(dir),
    })?;
    let shards = manifest
        .shards
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let identity = manifest.identity(i);
            check_shard(dir, i, file, identity.as_ref(), repair, offline.is_some())
        })
        .collect();
    let (mut unnamed_shards, mut unexpected) = (Vec::new(), Vec::new());
    for name in list_dir(dir)? {
        let named = |n: &str| manifest.shards.iter().any(|s| s == n);
        if named(&name) || is_ours(&name, &named) {
            continue;
        }
        if is_shard_file(&name) {
            unnamed_shards.push(name);
        } else {
            unexpected.push(name);
        }
    }
    Ok(CheckReport {
        scheme: manifest.scheme.to_string(),
        shards,
        unnamed_shards,
        unexpected,
        live: !repair && offline.is_none(),
    })
}

/// Files shardkv makes beside the shard files: MANIFEST and LOCK, the cluster's status and
/// lock, temporary files of atomic writes, and damage markers of named shards.
fn is_ours(name: &str, named: &dyn Fn(&str) -> bool) -> bool {
    matches!(name, MANIFEST_FILE | super::lock::LOCK_FILE)
        || name.starts_with("CLUSTER")
        || name.starts_with(".CLUSTER")
        || name.starts_with(".MANIFEST")
        || name.starts_with(".check-")
        || name.strip_suffix(DAMAGED_SUFFIX).is_some_and(named)
}

fn check_shard(
    dir: &Path,
    shard: usize,
    file: &str,
    identity: Option<&Identity>,
    repair: bool,
    offline: bool,
) -> ShardCheck {
    let path = dir.join(file);
    let mut check = ShardCheck {
        shard,
        file: file.to_owned(),
        bytes: 0,
        collections: Vec::new(),
        health: ShardHealth::Ok,
    };
    match std::fs::metadata(&path) {
        Ok(m) => check.bytes = m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            check.health = ShardHealth::Corrupted("missing: MANIFEST names it".into());
            return check;
        }
        Err(e) => {
            check.health = ShardHealth::Unreadable(format!("{}: {e}", path.display()));
            return check;
        }
    }
    let marked = match damage_mark(&path) {
        Ok(marked) => marked,
        Err(e) => {
            check.health = ShardHealth::Unreadable(e.to_string());
            return check;
        }
    };
    let examined = if repair {
        // Under the exclusive LOCK: repair the file itself, then read it all back.
        open_db(&path, DEFAULT_CACHE_BYTES, OpenMode::Open, None).and_then(|mut db| {
            let passed = contain(&path, "checking the integrity of", || {
                db.check_integrity().map_err(Error::from)
            })?;
            read_shard(&*db, &path, identity).map(|collections| (passed, collections))
        })
    } else {
        read_only(&path, identity).and_then(|collections| {
            let passed = match verify_copy(dir, &path, offline)? {
                Some(false) => {
                    return Err(Error::Corrupted(
                        "redb's integrity check finds damage (checksums or allocator state)".into(),
                    ));
                }
                _ => true,
            };
            Ok((passed, collections))
        })
    };
    check.health = match examined {
        Ok((passed, collections)) => {
            check.collections = collections;
            if repair {
                if let Err(e) = clear_damage_mark(&path) {
                    check.health = ShardHealth::Unreadable(e.to_string());
                    return check;
                }
                if passed && marked.is_none() {
                    ShardHealth::Ok
                } else {
                    ShardHealth::Repaired
                }
            } else if let Some(why) = marked {
                ShardHealth::Corrupted(format!("a server found it damaged: {}", why.trim()))
            } else {
                ShardHealth::Ok
            }
        }
        Err(Error::Storage(e)) if matches!(*e, redb::Error::RepairAborted) => {
            ShardHealth::NeedsRecovery
        }
        Err(Error::Io { context, source }) => {
            ShardHealth::Unreadable(format!("{context}: {source}"))
        }
        Err(e @ Error::Storage(_)) if is_os_failure(&e) => ShardHealth::Unreadable(e.to_string()),
        Err(Error::Corrupted(why)) => ShardHealth::Corrupted(strip_path(&why, &path)),
        Err(e) => ShardHealth::Corrupted(e.to_string()),
    };
    check
}

/// Opens a shard file read-only (writing nothing, not even a flag) and reads it all.
fn read_only(path: &Path, identity: Option<&Identity>) -> Result<Vec<(String, u64)>> {
    contain(path, "reading", || {
        let mut builder = redb::Database::builder();
        builder
            .set_cache_size(DEFAULT_CACHE_BYTES)
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter);
        let db = builder.open_read_only(path).map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() == std::io::ErrorKind::InvalidData =>
            {
                Error::Corrupted(io.to_string())
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
                Error::io(format!("opening {}", path.display()), io)
            }
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => {
                Error::Corrupted(why)
            }
            other => Error::from(other),
        })?;
        read_shard(&db, path, identity)
    })
}

fn read_shard(
    db: &impl ReadableDatabase,
    path: &Path,
    identity: Option<&Identity>,
) -> Result<Vec<(String, u64)>> {
    contain(path, "reading", || {
        check_identity(path, read_identity(db, path)?.as_ref(), identity)?;
        read_everything(db)
    })
}

/// When the store is not in use (`offline`: this check holds LOCK exclusive), runs redb's full
/// integrity check (every page checksum of the committed trees, and the allocator state a
/// writer would load) on a copy of the file, so that the file itself is never written.
/// `None` when the store is in use: a copy taken beside live writers could be torn.
fn verify_copy(dir: &Path, path: &Path, offline: bool) -> Result<Option<bool>> {
    if !offline {
        return Ok(None);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("shard");
    let copy = dir.join(format!(".check-{name}"));
    std::fs::copy(path, &copy)
        .map_err(|e| Error::io(format!("copying {} to check it", path.display()), e))?;
    let verdict = open_db(&copy, DEFAULT_CACHE_BYTES, OpenMode::Open, None)
        .and_then(|mut db| {
            contain(path, "checking the integrity of", || {
                db.check_integrity().map_err(Error::from)
            })
        })
        .map_err(|e| match e {
            // The copy's name means nothing to the user: name the file.
            Error::Corrupted(why) => {
                Error::Corrupted(why.replace(&*copy.to_string_lossy(), &path.to_string_lossy()))
            }
            Error::Storage(inner) => Error::Corrupted(inner.to_string()),
            other => other,
        });
    remove_if_present(&copy)?;
    verdict.map(Some)
}

/// Whether a storage error is the OS refusing I/O rather than a damaged file.
fn is_os_failure(e: &Error) -> bool {
    let Error::Storage(inner) = e else {
        return false;
    };
    matches!(&**inner, redb::Error::Io(io) if io.kind() != std::io::ErrorKind::InvalidData)
}

/// The check's table already names the file: drop its path from the message.
fn strip_path(why: &str, path: &Path) -> String {
    let shown = path.display().to_string();
    why.strip_prefix(&shown)
        .map(|rest| rest.trim_start_matches([':', ' ']).to_owned())
        .unwrap_or_else(|| why.to_owned())
}

/// Reads every key and value of every collection (the reserved identity table is checked by
/// the caller and not counted), so that a damaged page anywhere in the data is found.
fn read_everything(db: &impl ReadableDatabase) -> Result<Vec<(String, u64)>> {
    let txn = db.begin_read()?;
    let mut out = Vec::new();
    for handle in txn.list_tables()? {
        let name = handle.name().to_owned();
        if name == IDENTITY_TABLE {
            continue;
        }
        let table = txn.open_untyped_table(handle)?;
        let header_count = table.len()?;
        let typed = txn.open_table(redb::TableDefinition::<&[u8], &[u8]>::new(&name))?;
        let mut count = 0u64;
        let mut bytes = 0usize;
        for entry in redb::ReadableTable::iter(&typed)? {
            let (k, v) = entry?;
            // Touch every byte's length: the page holding each value is read and parsed.
            bytes = bytes.wrapping_add(k.value().len() + v.value().len());
            count += 1;
        }
        std::hint::black_box(bytes);
        if count != header_count {
            return Err(Error::Corrupted(format!(
                "collection {name} holds {count} entries but its header says {header_count}"
            )));
        }
        out.push((name, count));
    }
    out.sort();
    Ok(out)
}

/// Whether a shard file opens and holds no entry in any collection. Called under the
/// exclusive LOCK, on files no MANIFEST names.
pub(super) fn holds_no_entries(path: &Path) -> bool {
    open_db(path, 1 << 20, OpenMode::OpenNoRecovery, None)
        .and_then(|db| contain(path, "reading", || read_everything(&*db)))
        .is_ok_and(|collections| collections.iter().all(|(_, n)| *n == 0))
}
