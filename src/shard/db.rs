//! A redb handle that cannot take the process down, the identity each shard file records,
//! and the marker that remembers a damaged file across restarts.
//!
//! redb trusts the pages it reads: a page damaged outside redb can make it panic (in an open,
//! a lookup, a commit, or a close). Every call into redb goes through [`contain`], which turns
//! such a panic into [`Error::Corrupted`] naming the file, and [`Db`] closes its database
//! under the same guard. A panic is a verdict on the file, not on the caller: the shard that
//! saw one is marked damaged (see [`mark_damaged`]) and touched no more by this process, and
//! the marker file it leaves makes the next open refuse the file until a repair clears it.
//!
//! Identity: at creation each shard file records, in the reserved table [`IDENTITY_TABLE`]
//! (a name no collection can take: collection names have no `:`), which store (MANIFEST's
//! random `store_id`), which shard of how many, and which routing range it holds. Every
//! open compares it with what MANIFEST says, so a MANIFEST that does not match its files,
//! or a file from another store, is an error instead of silently re-routed data.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{ConcurrencyMode, Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard_by::{ShardBy, ShardRange};

/// The reserved table that holds a shard file's identity. Not a valid collection name.
pub const IDENTITY_TABLE: &str = "shardkv:identity";
const IDENTITY: TableDefinition<&str, &str> = TableDefinition::new(IDENTITY_TABLE);
const IDENTITY_KEY: &str = "identity";

/// Suffix of the marker file left beside a shard file found damaged.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// What a shard file says it is. Compared whole: any difference is a mismatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The store's random id, from MANIFEST.
    pub store: String,
    /// The shard's number.
    pub shard: usize,
    /// How many shards the store has.
    pub shards: usize,
    /// The routing range the shard holds, as text.
    pub range: String,
}

impl Identity {
    /// The identity MANIFEST gives shard `shard` of a store.
    pub fn expected(store: &str, scheme: &ShardBy, shard: usize) -> Identity {
        Identity {
            store: store.to_owned(),
            shard,
            shards: scheme.shard_count(),
            range: range_text(&scheme.range_of(shard)),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} of {} ({}) of store {}",
            self.shard, self.shards, self.range, self.store
        )
    }
}

fn range_text(range: &ShardRange) -> String {
    fn show(b: &Option<Vec<u8>>) -> String {
        b.as_deref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    }
    match range {
        ShardRange::Alpha { start, end } => format!("keys {}..{}", show(start), show(end)),
        ShardRange::Hash { start, last } => format!("hashes {start:#018x}..={last:#018x}"),
    }
}

/// A [`Database`] whose close runs under [`contain`]: closing a damaged file can make redb
/// panic, which must not abort a drop (or a process) that is already reporting the damage.
pub(crate) struct Db {
    db: Option<Database>,
    path: PathBuf,
}

impl std::ops::Deref for Db {
    type Target = Database;

    fn deref(&self) -> &Database {
        self.db.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut Database {
        self.db.as_mut().expect("open until dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let db = self.db.take();
        if let Err(e) = contain(&self.path, "closing", || {
            drop(db);
            Ok(())
        }) {
            tracing::error!(error = %e, "closing a shard file failed");
        }
    }
}

/// Runs `f`, turning a panic inside it (redb's) into [`Error::Corrupted`] naming the file.
pub(crate) fn contain<T>(path: &Path, doing: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(damaged(path, doing, &*panic)))
}

/// The error for a file that made redb panic.
fn damaged(path: &Path, doing: &str, panic: &(dyn Any + Send)) -> Error {
    let why = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    Error::Corrupted(format!(
        "{} is damaged: redb failed while {doing} it ({why}); {}",
        path.display(),
        repair_hint(path)
    ))
}

/// What to do about a damaged shard file, for error messages.
pub(crate) fn repair_hint(path: &Path) -> String {
    let dir = path.parent().unwrap_or(Path::new("."));
    format!(
        "stop every process using the store, then run `shardkv check --repair --data {}` \
         (if it cannot repair the file, restore the store from a backup)",
        dir.display()
    )
}

/// The marker file of a shard file.
pub(crate) fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(DAMAGED_SUFFIX);
    path.with_file_name(name)
}

/// Records that `path` is damaged, so that later opens refuse it until a repair. Best effort:
/// a disk that cannot take the marker is logged.
pub(crate) fn mark_damaged(path: &Path, why: &str) {
    let marker = marker_path(path);
    let written = marker
        .parent()
        .zip(marker.file_name().and_then(|n| n.to_str()))
        .map(|(dir, name)| crate::store::write_atomically(dir, name, why.as_bytes()));
    if let Some(Err(e)) = written {
        tracing::error!(error = %e, "could not record the damage in {}", marker.display());
    }
}

/// The reason recorded by [`mark_damaged`], if the file is marked.
pub(crate) fn damage_mark(path: &Path) -> Result<Option<String>> {
    let marker = marker_path(path);
    match std::fs::read_to_string(&marker) {
        Ok(why) => Ok(Some(why)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", marker.display()), e)),
    }
}

/// Clears the marker of a repaired file.
pub(crate) fn clear_damage_mark(path: &Path) -> Result<()> {
    match std::fs::remove_file(marker_path(path)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("removing {}", marker_path(path).display()),
            e,
        )),
    }
}

/// How [`open_db`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// Create it if it is missing or empty.
    Create,
    /// It must exist.
    Open,
    /// It must exist, and a crash recovery it would need is refused
    /// ([`redb::DatabaseError::RepairAborted`]): for checks that must not write.
    OpenNoRecovery,
}

/// Opens a shard file in redb's MultiWriter mode, under [`contain`]. A missing file, one
/// that is not a redb database, and an OS failure are each told apart, naming the file.
pub(crate) fn open_db(
    path: &Path,
    cache_bytes: usize,
    mode: OpenMode,
    faults: Option<&std::sync::Arc<super::file::Faults>>,
) -> Result<Db> {
    let mut builder = Database::builder();
    builder
        .set_cache_size(cache_bytes)
        .set_concurrency_mode(ConcurrencyMode::MultiWriter);
    if mode == OpenMode::OpenNoRecovery {
        builder.set_repair_callback(|session| session.abort());
    }
    let opened = contain(path, "opening", || {
        Ok(super::file::open(
            &builder,
            path,
            mode == OpenMode::Create,
            faults.cloned(),
        ))
    })?;
    let db = opened.map_err(|e| open_error(path, e))?;
    Ok(Db {
        db: Some(db),
        path: path.to_path_buf(),
    })
}

fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    use redb::{DatabaseError as D, StorageError as S};
    match e {
        D::DatabaseAlreadyOpen | D::LockProtocolMismatch => {
            Error::Locked(format!("{}: {e}", path.display()))
        }
        D::RepairAborted => Error::Storage(std::sync::Arc::new(redb::Error::RepairAborted)),
        D::Storage(S::Io(io)) if io.kind() == std::io::ErrorKind::NotFound => Error::Corrupted(
            format!("shard file {} named in MANIFEST is missing", path.display()),
        ),
        // redb reports a file that is not a database (a bad magic number) as invalid data.
        D::Storage(S::Io(io)) if io.kind() == std::io::ErrorKind::InvalidData => {
            Error::Corrupted(format!("{}: {io}; {}", path.display(), repair_hint(path)))
        }
        D::Storage(S::Io(io)) => Error::io(format!("opening shard file {}", path.display()), io),
        D::Storage(S::Corrupted(msg)) => {
            Error::Corrupted(format!("{}: {msg}; {}", path.display(), repair_hint(path)))
        }
        other => Error::Corrupted(format!(
            "{}: {other}; {}",
            path.display(),
            repair_hint(path)
        )),
    }
}

/// Writes the file's identity (at creation).
pub(crate) fn write_identity(db: &Database, identity: &Identity) -> Result<()> {
    let text = serde_json::to_string(identity).expect("an identity serializes");
    let txn = db.begin_write()?;
    txn.open_table(IDENTITY)?
        .insert(IDENTITY_KEY, text.as_str())?;
    txn.commit()?;
    Ok(())
}

/// The identity the file recorded, `None` if it recorded none (made before identities).
pub(crate) fn read_identity(db: &impl ReadableDatabase, path: &Path) -> Result<Option<Identity>> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(IDENTITY) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(text) = table.get(IDENTITY_KEY)? else {
        return Ok(None);
    };
    serde_json::from_str(text.value()).map(Some).map_err(|e| {
        Error::Corrupted(format!(
            "{}: its identity record is unreadable ({e})",
            path.display()
        ))
    })
}

/// Checks a file's recorded identity against MANIFEST's. A file without one is accepted only
/// in a store whose MANIFEST has no store id either (both made before identities).
pub(crate) fn check_identity(
    path: &Path,
    found: Option<&Identity>,
    expected: Option<&Identity>,
) -> Result<()> {
    let mismatch = |what: String| {
        Err(Error::Corrupted(format!(
            "{} {what}: MANIFEST does not match its shard files; restore the MANIFEST the \
             files were created with, or the files that belong to it",
            path.display()
        )))
    };
    match (found, expected) {
        (Some(found), Some(expected)) if found == expected => Ok(()),
        (Some(found), Some(expected)) => mismatch(format!(
            "was created as {found}, but MANIFEST names it {expected}"
        )),
        (Some(found), None) => mismatch(format!(
            "was created as {found}, but MANIFEST has no store id"
        )),
        (None, Some(expected)) => mismatch(format!(
            "records no identity (it is not a file of this store), but MANIFEST names it {expected}"
        )),
        (None, None) => Ok(()),
    }
}
