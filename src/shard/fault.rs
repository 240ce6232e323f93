//! Storage faults on demand: a redb [`StorageBackend`] that wraps the file backend and fails
//! writes or syncs while told to, for tests of the failed-commit path. Its lock methods pass
//! through, which MultiWriter mode needs. Only tests can switch it on (through
//! `StoreBuilder::inject_faults`, which exists under `cfg(test)`); nothing else builds one.

use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::{BackendError, Builder, Database, DatabaseError, StorageBackend};

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
struct FaultyFile {
    inner: redb::backends::FileBackend,
    faults: Arc<Faults>,
}

/// Opens (creating) `path` through a faulty file backend.
pub(crate) fn open(
    builder: &Builder,
    path: &Path,
    faults: Arc<Faults>,
) -> Result<Database, DatabaseError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let inner = redb::backends::FileBackend::new(file)?;
    builder.create_with_backend(FaultyFile { inner, faults })
}

impl StorageBackend for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults
            .fail(&self.faults.fail_writes, io::ErrorKind::StorageFull)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.faults
            .fail(&self.faults.fail_syncs, io::ErrorKind::Other)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults
            .fail(&self.faults.fail_writes, io::ErrorKind::StorageFull)?;
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
