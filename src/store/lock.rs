//! `LOCK`: the advisory lock that keeps maintenance away from a store in use.
//!
//! Every open [`Store`](crate::Store) holds `LOCK` shared; maintenance (creation, integrity
//! repair, destruction) holds it exclusive. The lock is `flock(2)` through std's
//! [`File::lock_shared`] and friends: it belongs to the open file description, so two stores
//! in one process are two holders, and the OS releases it when the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;

use crate::error::{Error, Result};

/// The lock file's name inside a store directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held `LOCK`. Dropping it releases the lock.
#[derive(Debug)]
pub struct StoreLock {
    file: File,
    exclusive: bool,
}

impl StoreLock {
    /// Takes `LOCK` shared without waiting. `Ok(None)` means an exclusive holder (maintenance
    /// or creation) has it.
    pub fn try_shared(dir: &Path) -> Result<Option<StoreLock>> {
        Self::try_take(dir, false)
    }

    /// Takes `LOCK` exclusive without waiting. `Ok(None)` means some store has it open.
    pub fn try_exclusive(dir: &Path) -> Result<Option<StoreLock>> {
        Self::try_take(dir, true)
    }

    /// Takes `LOCK` exclusive for maintenance, or fails with [`Error::Locked`] while any
    /// process (this one included) has the store open.
    pub fn exclusive(dir: &Path) -> Result<StoreLock> {
        Self::try_exclusive(dir)?.ok_or_else(|| {
            Error::Locked(format!(
                "{} is in use (LOCK is held); stop the processes using it first",
                dir.display()
            ))
        })
    }

    fn try_take(dir: &Path, exclusive: bool) -> Result<Option<StoreLock>> {
        Ok(try_lock_file(&dir.join(LOCK_FILE), exclusive)?
            .map(|file| StoreLock { file, exclusive }))
    }

    /// Whether this is the exclusive (maintenance) lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

/// Opens (creating) a lock file and takes its flock without waiting: `Ok(None)` if another
/// holder's lock conflicts. The lock lasts as long as the returned file is open.
pub fn try_lock_file(path: &Path, exclusive: bool) -> Result<Option<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        // Closing the file releases the flock too; unlocking first makes it prompt even if
        // the descriptor was duplicated into a child process.
        let _ = self.file.unlock();
    }
}
