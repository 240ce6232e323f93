//! The storage backend every shard file is opened through: redb's file backend, with two
//! changes.
//!
//! - **The file's length comes from `lseek(SEEK_END)`, not `fstat`.** redb asks for the length
//!   at the start of every write transaction. On Linux 6.13 and later (multigrain timestamps),
//!   a stat marks the file's ctime as observed, so the next write must store a fine-grained
//!   ctime, which dirties the inode, and the commit's `fdatasync` then writes the inode
//!   synchronously: one more device write per commit. Measured here (ext4, virtio), that is
//!   40-50 us on a 100 us `fdatasync`. `lseek` reads the same size without observing any
//!   timestamp. Nothing else changes: another process that grows the file is seen at once,
//!   since the size is read from the inode each time.
//! - **Storage faults on demand**, for tests of the failed-commit path: the backend fails
//!   writes or syncs while told to. Only tests can switch that on (through
//!   `StoreBuilder::inject_faults`, which exists under `cfg(test)`).
//!
//! The lock methods pass through, which MultiWriter mode needs.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::{BackendError, Builder, Database, DatabaseError, StorageBackend, StorageError};

/// Switches shared by every file a store opens with them.
#[derive(Debug, Default)]
pub struct Faults {
    fail_writes: AtomicBool,
    fail_syncs: AtomicBool,
    injected: AtomicU64,
}

impl Faults {
    /// Fail every write (`ENOSPC`) from now until turned off.
    #[cfg(test)]
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    /// Fail every sync (`EIO`) from now until turned off.
    #[cfg(test)]
    pub fn fail_syncs(&self, on: bool) {
        self.fail_syncs.store(on, Ordering::SeqCst);
    }

    /// How many operations failed on purpose.
    #[cfg(test)]
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn fail(&self, switch: &AtomicBool, kind: io::ErrorKind) -> io::Result<()> {
        if switch.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Err(io::Error::new(kind, "injected storage fault"))
        } else {
            Ok(())
        }
    }
}

#[derive(Debug)]
struct ShardFile {
    inner: redb::backends::FileBackend,
    /// The same open file (a duplicate descriptor), to seek to its end. redb reads and writes
    /// at explicit offsets, so the shared file position means nothing to it.
    file: File,
    faults: Option<Arc<Faults>>,
}

/// Opens `path` through [`ShardFile`]: created if missing or empty when `create`, as
/// [`Builder::create`] does; otherwise it must exist and hold a database, as [`Builder::open`]
/// requires.
pub(crate) fn open(
    builder: &Builder,
    path: &Path,
    create: bool,
    faults: Option<Arc<Faults>>,
) -> Result<Database, DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)?;
    if !create && (&file).seek(SeekFrom::End(0))? == 0 {
        // What `Builder::open` answers for an empty file.
        return Err(DatabaseError::Storage(StorageError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "Database file is empty and creating a new database was not requested",
        ))));
    }
    let backend = ShardFile {
        file: file.try_clone()?,
        inner: redb::backends::FileBackend::new(file)?,
        faults,
    };
    builder.create_with_backend(backend)
}

impl ShardFile {
    fn fail(&self, switch: impl Fn(&Faults) -> &AtomicBool, kind: io::ErrorKind) -> io::Result<()> {
        match &self.faults {
            Some(faults) => faults.fail(switch(faults), kind),
            None => Ok(()),
        }
    }
}

impl StorageBackend for ShardFile {
    fn len(&self) -> io::Result<u64> {
        (&self.file).seek(SeekFrom::End(0))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fail(|f| &f.fail_writes, io::ErrorKind::StorageFull)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fail(|f| &f.fail_syncs, io::ErrorKind::Other)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.fail(|f| &f.fail_writes, io::ErrorKind::StorageFull)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The length is the file's current size, whoever changed it: another process that grows
    /// the file (through its own descriptor) is seen at once, and nothing is cached.
    #[test]
    fn the_length_is_read_from_the_file_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard.redb");
        std::fs::write(&path, b"").unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let backend = ShardFile {
            file: file.try_clone().unwrap(),
            inner: redb::backends::FileBackend::new(file).unwrap(),
            faults: None,
        };
        assert_eq!(backend.len().unwrap(), 0);
        backend.write(0, &[7; 4096]).unwrap();
        assert_eq!(backend.len().unwrap(), 4096);
        let other = OpenOptions::new().write(true).open(&path).unwrap();
        other.set_len(1 << 20).unwrap();
        assert_eq!(backend.len().unwrap(), 1 << 20);
        backend.set_len(8192).unwrap();
        assert_eq!(backend.len().unwrap(), 8192);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8192);
    }

    /// A file that must exist is refused when it is empty, as redb's own `open` refuses it,
    /// rather than initialized.
    #[test]
    fn an_empty_file_is_not_a_database_unless_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard.redb");
        std::fs::write(&path, b"").unwrap();
        let builder = Database::builder();
        match open(&builder, &path, false, None) {
            Err(DatabaseError::Storage(StorageError::Io(e))) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData)
            }
            other => panic!("expected an invalid-data error, got {other:?}"),
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        let missing = dir.path().join("missing.redb");
        match open(&builder, &missing, false, None) {
            Err(DatabaseError::Storage(StorageError::Io(e))) => {
                assert_eq!(e.kind(), io::ErrorKind::NotFound)
            }
            other => panic!("expected not found, got {other:?}"),
        }
        assert!(open(&builder, &path, true, None).is_ok());
    }
}
