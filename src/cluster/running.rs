//! The per-user list of running clusters, so that `shardkv status`, `stop` and `reload` work
//! from any directory, as `pm2 list` does.
//!
//! ```text
//! $XDG_RUNTIME_DIR/shardkv/        (or /tmp/shardkv-$UID/, mode 0700, owned by the user)
//!   shards.json      {"name","data","supervisor_pid","address","started_unix_ms"}
//!   dogs.json        one file per running cluster, named after the cluster
//! ```
//!
//! # Invariants
//!
//! - **An entry is live exactly while its supervisor holds the entry file's flock.** The
//!   supervisor writes the entry to a temporary file, locks it, then links it into place, so
//!   an entry is never visible unlocked while its supervisor lives. A supervisor that dies,
//!   even by SIGKILL, loses the lock with its process; readers treat an unlocked entry as
//!   stale and delete it. No pid is trusted, so a reused pid cannot fake a cluster.
//! - **Names are unique among running clusters**: an entry is claimed with `link(2)`, which
//!   never replaces an existing file.
//! - The data directory's own `CLUSTER` file stays the source of truth for workers and state;
//!   an entry only says where to look.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The longest cluster name.
pub const MAX_NAME_BYTES: usize = 64;

/// One running cluster, as its supervisor registered it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    /// The cluster's name (`serve --name`).
    pub name: String,
    /// Its data directory, absolute.
    #[serde(with = "super::status::any_path")]
    pub data: PathBuf,
    /// The supervisor's pid.
    pub supervisor_pid: u32,
    /// The address served, `host:port`.
    pub address: String,
    /// Supervisor start, Unix ms.
    pub started_unix_ms: u64,
}

/// A registered entry; dropping it unregisters the cluster.
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    _lock: File,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The directory holding this user's entries: `$XDG_RUNTIME_DIR/shardkv` when that variable
/// names a directory, else `/tmp/shardkv-$UID`.
pub fn dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(runtime) if runtime.is_absolute() && runtime.is_dir() => runtime.join("shardkv"),
        _ => std::env::temp_dir().join(format!("shardkv-{}", uid())),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Creates [`dir`] (0700) if needed and checks that it is this user's own directory: in a
/// shared /tmp, another user could have made it first.
fn own_dir() -> Result<PathBuf> {
    let dir = dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let meta = std::fs::symlink_metadata(&dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    if !meta.is_dir() || meta.uid() != uid() {
        return Err(Error::Locked(format!(
            "{} is not a directory of yours; remove it or set XDG_RUNTIME_DIR",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Checks a name given to `serve --name`: letters, digits, `.`, `_` and `-`, not starting
/// with `.`, 1 to 64 bytes.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "--name {name:?} should be 1 to {MAX_NAME_BYTES} letters, digits, '.', '_' or '-', \
             not starting with '.'"
        )))
    }
}

/// The name a cluster gets without `--name`: its data directory's own name, made valid.
pub fn default_name(data: &Path) -> String {
    let base = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_BYTES - 4)
        .collect();
    name = name.trim_start_matches('.').to_owned();
    if name.is_empty() {
        name = "shardkv".into();
    }
    name
}

/// Registers a running cluster under `entry.name`. With `exact`, a name already taken by a
/// running cluster is an error; without, the first free of `name`, `name-2`, `name-3`, ... is
/// used (the returned entry says which).
pub fn register(mut entry: Entry, exact: bool) -> Result<(Registration, Entry)> {
    let dir = own_dir()?;
    let base = entry.name.clone();
    for n in 1..=100 {
        if n > 1 {
            entry.name = format!("{base}-{n}");
        }
        let path = dir.join(format!("{}.json", entry.name));
        let tmp = dir.join(format!(".{}.{}.tmp", entry.name, std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        file.try_lock()
            .map_err(|e| Error::io(format!("locking {}", tmp.display()), e.into()))?;
        let json = serde_json::to_vec_pretty(&entry)
            .map_err(|e| Error::InvalidInput(format!("the cluster's entry: {e}")))?;
        file.write_all(&json)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        // Only a stale entry may be replaced; a live one keeps its name.
        if read_entry(&path).is_none() {
            let _ = std::fs::remove_file(&path);
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => return Ok((Registration { path, _lock: file }, entry)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if exact {
                    let other = read_entry(&path)
                        .map(|o| format!(" (serving {} on http://{})", o.data.display(), o.address))
                        .unwrap_or_default();
                    return Err(Error::Conflict(format!(
                        "a cluster named {base:?} is already running{other}; pick another --name"
                    )));
                }
            }
            Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
        }
    }
    Err(Error::Conflict(format!(
        "too many clusters named {base:?} are running; pick a --name"
    )))
}

/// The entry at `path` if its supervisor is alive; a stale entry is deleted.
fn read_entry(path: &Path) -> Option<Entry> {
    let file = File::open(path).ok()?;
    match file.try_lock_shared() {
        // Nobody holds it: its supervisor is gone. Removed only if the name still points at
        // this file, never at a new entry a supervisor has linked in since.
        Ok(()) => {
            let same = |a: &std::fs::Metadata, b: &std::fs::Metadata| {
                a.dev() == b.dev() && a.ino() == b.ino()
            };
            if let (Ok(now), Ok(ours)) = (std::fs::metadata(path), file.metadata())
                && same(&now, &ours)
            {
                let _ = std::fs::remove_file(path);
            }
            None
        }
        Err(TryLockError::WouldBlock) => serde_json::from_reader(&file).ok(),
        Err(TryLockError::Error(_)) => None,
    }
}

/// Every running cluster of this user, by name. Stale entries are removed on the way.
pub fn list() -> Vec<Entry> {
    let Ok(read) = std::fs::read_dir(dir()) else {
        return Vec::new();
    };
    let mut entries: Vec<Entry> = read
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") && !name.starts_with('.')
        })
        .filter_map(|e| read_entry(&e.path()))
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_defaults_are_valid() {
        for good in ["shards", "dogs-1", "a.b_c", &"x".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "sp ace", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for (data, name) in [
            ("/srv/shards", "shards"),
            ("/tmp/my dogs", "my-dogs"),
            ("/", "shardkv"),
            ("/x/.hidden", "hidden"),
        ] {
            let got = default_name(Path::new(data));
            assert_eq!(got, name);
            check_name(&got).unwrap();
        }
    }
}
