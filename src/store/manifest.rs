//! `MANIFEST`: the store's format version, routing scheme and shard files.
//!
//! It is written once, when the store is created, under the exclusive `LOCK`, and atomically:
//! a temporary file is written and fsync'd, renamed over `MANIFEST`, and the directory is
//! fsync'd, so a reader sees either no MANIFEST or a complete one, before and after a crash.
//!
//! ```json
//! {
//!   "format": 1,
//!   "scheme": "hash:2",
//!   "routing": { "kind": "hash", "starts": ["0x0000000000000000", "0x8000000000000000"] },
//!   "shards": ["shard-000.redb", "shard-001.redb"]
//! }
//! ```
//!
//! `routing` is authoritative (hash range starts and alphabetical split points, exactly);
//! `scheme` is the same thing written as a spec, for people.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard_by::ShardBy;

/// The manifest file's name inside a store directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The on-disk format this version writes and reads.
pub const FORMAT: u32 = 1;

/// The parsed MANIFEST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Routing scheme.
    pub scheme: ShardBy,
    /// Shard file names, by shard number.
    pub shards: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Json {
    format: u32,
    scheme: String,
    routing: Routing,
    shards: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Routing {
    Alpha { splits: Vec<String> },
    Hash { starts: Vec<String> },
}

/// The file name of shard `i`.
pub fn shard_file_name(i: usize) -> String {
    format!("shard-{i:03}.redb")
}

/// Whether a directory entry looks like a shard file.
pub fn is_shard_file(name: &str) -> bool {
    name.starts_with("shard-") && name.ends_with(".redb")
}

impl Manifest {
    /// A manifest for a new store with this scheme.
    pub fn new(scheme: ShardBy) -> Manifest {
        let shards = (0..scheme.shard_count()).map(shard_file_name).collect();
        Manifest { scheme, shards }
    }

    /// Reads `dir/MANIFEST`; `Ok(None)` if there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let corrupted = |why: String| Error::Corrupted(format!("{}: {why}", path.display()));
        let json: Json = serde_json::from_str(&text).map_err(|e| corrupted(e.to_string()))?;
        if json.format != FORMAT {
            return Err(corrupted(format!(
                "format {} is not {FORMAT}, the one this shardkv reads",
                json.format
            )));
        }
        let scheme = match json.routing {
            Routing::Alpha { splits } => ShardBy::split_points(splits),
            Routing::Hash { starts } => starts
                .iter()
                .map(|s| {
                    s.strip_prefix("0x")
                        .and_then(|h| u64::from_str_radix(h, 16).ok())
                        .ok_or_else(|| corrupted(format!("bad hash range start {s:?}")))
                })
                .collect::<Result<Vec<u64>>>()
                .and_then(ShardBy::hash_ranges),
        }
        .map_err(|e| corrupted(e.to_string()))?;
        if json.shards.len() != scheme.shard_count() {
            return Err(corrupted(format!(
                "{} shard files listed for {} ranges",
                json.shards.len(),
                scheme.shard_count()
            )));
        }
        if let Some(bad) = json
            .shards
            .iter()
            .find(|name| !is_shard_file(name) || name.contains('/'))
        {
            return Err(corrupted(format!("{bad:?} is not a shard file name")));
        }
        // Two ranges in one file would mix their keys and their writer locks.
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = json.shards.iter().find(|name| !seen.insert(name.as_str())) {
            return Err(corrupted(format!("{twice:?} is listed for two shards")));
        }
        Ok(Some(Manifest {
            scheme,
            shards: json.shards,
        }))
    }

    /// Writes `dir/MANIFEST` atomically (temp file, fsync, rename, fsync the directory).
    /// The caller holds the exclusive `LOCK`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let routing = match (self.scheme.splits(), self.scheme.hash_starts()) {
            (Some(splits), _) => Routing::Alpha {
                splits: splits
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            },
            (None, Some(starts)) => Routing::Hash {
                starts: starts.iter().map(|s| format!("{s:#018x}")).collect(),
            },
            (None, None) => unreachable!("a scheme is alphabetical or hashed"),
        };
        let json = Json {
            format: FORMAT,
            scheme: self.scheme.to_string(),
            routing,
            shards: self.shards.clone(),
        };
        let mut text = serde_json::to_string_pretty(&json).expect("manifest serializes");
        text.push('\n');
        write_atomically(dir, MANIFEST_FILE, text.as_bytes())
    }
}

/// Replaces `dir/name` with `bytes` so that readers see the old or the new file, never a
/// torn one, and the new one survives a crash once this returns.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    // Unique per writer, so concurrent writers never share a temporary file.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()));
    let target = dir.join(name);
    let io = |what: &str, e| Error::io(format!("{what} {}", target.display()), e);
    let mut file = File::create(&tmp).map_err(|e| io("creating a temporary file for", e))?;
    file.write_all(bytes).map_err(|e| io("writing", e))?;
    file.sync_all().map_err(|e| io("syncing", e))?;
    drop(file);
    fs::rename(&tmp, &target).map_err(|e| io("renaming into place", e))?;
    sync_dir(dir)
}

/// Makes a directory's entries (a rename, a new file) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}
