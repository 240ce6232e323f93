//! `MANIFEST`: the store's format version, routing scheme and shard files.
//!
//! It is written once, when the store is created, under the exclusive `LOCK`, and atomically:
//! a temporary file is written and fsync'd, renamed over `MANIFEST`, and the directory is
//! fsync'd, so a reader sees either no MANIFEST or a complete one, before and after a crash.
//!
//! ```json
//! {
//!   "format": 1,
//!   "store_id": "5f0c9a4e2b7d4c1a9e3f6b8d0a2c4e6f",
//!   "scheme": "hash:2",
//!   "routing": { "kind": "hash", "starts": ["0x0000000000000000", "0x8000000000000000"] },
//!   "shards": ["shard-000.redb", "shard-001.redb"]
//! }
//! ```
//!
//! `routing` is authoritative (hash range starts and alphabetical split points, exactly);
//! `scheme` is the same thing written as a spec, for people. `store_id` is random, made at
//! creation; every shard file records it with its shard number and range (see
//! [`Identity`](crate::shard::Identity)), and every open compares the two. Stores made before
//! identities have no `store_id`, and their files record none.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard::Identity;
use crate::shard_by::ShardBy;

/// The manifest file's name inside a store directory.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// The on-disk format this version writes and reads.
pub const FORMAT: u32 = 1;

/// The parsed MANIFEST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// The store's random id (`None` in stores made before identities).
    pub store_id: Option<String>,
    /// Routing scheme.
    pub scheme: ShardBy,
    /// Shard file names, by shard number.
    pub shards: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Json {
    format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_id: Option<String>,
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
        Manifest {
            store_id: Some(new_store_id()),
            scheme,
            shards,
        }
    }

    /// The identity MANIFEST gives shard `i`'s file, `None` in a store made before identities.
    pub fn identity(&self, i: usize) -> Option<Identity> {
        self.store_id
            .as_deref()
            .map(|id| Identity::expected(id, &self.scheme, i))
    }

    /// Reads `dir/MANIFEST`; `Ok(None)` if there is none.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let corrupted = |why: String| Error::Corrupted(format!("{}: {why}", path.display()));
        let text = String::from_utf8(bytes)
            .map_err(|_| corrupted("is not text; restore it from a backup".into()))?;
        if text.trim().is_empty() {
            return Err(corrupted(
                "is empty; restore it from a backup (it names the routing of the shard files)"
                    .into(),
            ));
        }
        // The format first, so that a newer MANIFEST is reported as newer, not as garbage.
        #[derive(Deserialize)]
        struct Format {
            format: u32,
        }
        if let Ok(Format { format }) = serde_json::from_str(&text)
            && format > FORMAT
        {
            return Err(corrupted(format!(
                "format {format} was written by a newer shardkv; this one reads format \
                 {FORMAT}: upgrade shardkv to open this store"
            )));
        }
        let json: Json = serde_json::from_str(&text)
            .map_err(|e| corrupted(format!("is not a MANIFEST shardkv can read ({e})")))?;
        if json.format != FORMAT {
            return Err(corrupted(format!(
                "format {} is not {FORMAT}, the one this shardkv reads",
                json.format
            )));
        }
        if let Some(id) = &json.store_id
            && (id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(corrupted(format!("bad store_id {id:?}")));
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
            store_id: json.store_id,
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
            store_id: self.store_id.clone(),
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

/// 128 random bits as hex, from the OS; if it has none to give, from the clock and the pid
/// through xxh3 (unique enough to tell stores apart, which is all the id is for).
fn new_store_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let seed = format!(
            "{:?} {} {:p}",
            std::time::SystemTime::now(),
            std::process::id(),
            &bytes
        );
        bytes = xxhash_rust::xxh3::xxh3_128(seed.as_bytes()).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
