//! The state directory (config `state_dir`): created when missing (mode 0700), checked to be
//! a directory the node can write, and locked for as long as the node runs.
//!
//! The lock matters beyond the snapshot: the directory holds the identity key and its nonce
//! epoch, and two processes running one identity from one epoch would encrypt with the same
//! (key, nonce) pairs. A second node given the same directory therefore refuses to start.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::atomic;

/// The file held locked while the node runs.
const LOCK_FILE: &str = "lock";
/// The node's key when `identity` leaves it to the state directory.
const IDENTITY_KEY: &str = "identity.key";
/// The nonce epoch of a seeded identity (a key file keeps its own beside it).
const SEED_EPOCH: &str = "seed.epoch";
const SNAPSHOT: &str = "snapshot.bin";

/// Why the state directory cannot be used; the node does not start.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state_dir {}: cannot create it: {source}", path.display())]
    Create { path: PathBuf, source: io::Error },
    #[error("state_dir {}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("state_dir {}: not writable: {source}", path.display())]
    NotWritable { path: PathBuf, source: io::Error },
    #[error(
        "state_dir {}: in use by another process (another node?); each node needs a state \
         directory of its own",
        path.display()
    )]
    InUse { path: PathBuf },
    #[error("state_dir {}: cannot lock it: {source}", path.display())]
    Lock { path: PathBuf, source: io::Error },
}

/// The state directory, locked for this process while the value lives.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Holds the lock; closing it releases it.
    _lock: File,
}

impl StateDir {
    /// Creates `path` when missing (mode 0700), checks that it is a writable directory,
    /// locks it, and removes the temporary files a process that died midway left there.
    pub fn open(path: &Path) -> Result<StateDir, StateDirError> {
        let path = path.to_owned();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&path)
            .map_err(|source| StateDirError::Create {
                path: path.clone(),
                source,
            })?;
        let meta = fs::metadata(&path).map_err(|source| StateDirError::Create {
            path: path.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(StateDirError::NotADirectory { path });
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "state_dir is accessible to other users; chmod 700 it"
            );
        }
        // Opening the lock file for writing is the writability check: permissions, a
        // read-only mount, a full inode table all show here.
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path.join(LOCK_FILE))
            .map_err(|source| StateDirError::NotWritable {
                path: path.clone(),
                source,
            })?;
        // SAFETY: flock on an open descriptor we own has no memory-safety preconditions.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let source = io::Error::last_os_error();
            return Err(match source.kind() {
                io::ErrorKind::WouldBlock => StateDirError::InUse { path },
                _ => StateDirError::Lock { path, source },
            });
        }
        let dir = StateDir { path, _lock: lock };
        dir.remove_temporaries();
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn identity_key(&self) -> PathBuf {
        self.path.join(IDENTITY_KEY)
    }

    pub fn seed_epoch(&self) -> PathBuf {
        self.path.join(SEED_EPOCH)
    }

    pub fn snapshot(&self) -> PathBuf {
        self.path.join(SNAPSHOT)
    }

    /// Temporary files are only ever half-written ones here: this process holds the lock.
    fn remove_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.path) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().is_some_and(atomic::is_temporary) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => tracing::info!(
                        file = %entry.path().display(),
                        "removed a temporary file an earlier run left half-written"
                    ),
                    Err(e) => tracing::warn!(
                        file = %entry.path().display(),
                        error = %e,
                        "cannot remove a temporary file"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_locks_and_cleans_up() {
        let path = atomic::scratch::dir("statedir").join("nested");
        let dir = StateDir::open(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(matches!(
            StateDir::open(&path),
            Err(StateDirError::InUse { .. })
        ));
        let stale = atomic::temporary_path(&dir.snapshot());
        fs::write(&stale, b"half").unwrap();
        drop(dir);
        let dir = StateDir::open(&path).unwrap();
        assert!(!stale.exists(), "a stale temporary file is removed");
        assert_eq!(dir.snapshot(), path.join("snapshot.bin"));
        drop(dir);
        fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_what_is_not_a_writable_directory() {
        let scratch = atomic::scratch::dir("statedir-file");
        let path = scratch.join("a-file");
        fs::write(&path, b"x").unwrap();
        let e = StateDir::open(&path).unwrap_err();
        assert!(
            matches!(
                e,
                StateDirError::Create { .. } | StateDirError::NotADirectory { .. }
            ),
            "{e}"
        );
        fs::remove_dir_all(&scratch).unwrap();
    }
}
