//! Files that are either wholly the old contents or wholly the new, whatever stops the
//! process or the machine: written to a temporary file beside the target, flushed to the
//! disk, renamed over it, and the directory flushed so the rename itself is durable. And
//! reads that refuse a file larger than expected before reading it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Suffix of the temporary files [`write`] makes; ones left by a process that died midway
/// are removed at the next start ([`is_temporary`]).
const TEMPORARY_SUFFIX: &str = ".tmp";

/// A fresh temporary path beside `path`: hidden, naming the target, the process and a
/// random nonce, so that concurrent writers never share one.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let nonce: u64 = rand::random();
    path.with_file_name(format!(
        ".{name}.{}.{nonce:016x}{TEMPORARY_SUFFIX}",
        std::process::id()
    ))
}

/// Whether `name` is one of [`temporary_path`]'s.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMPORARY_SUFFIX)
}

/// Replaces `path` with `contents` atomically and durably; the file gets `mode`.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temporary_path(path);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    sync_dir(path)
}

/// Flushes the directory holding `path`, so that an entry made or renamed there survives a
/// crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{len} bytes, more than the {max} allowed")]
    TooLarge { len: u64, max: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The contents of `path`, if it exists and holds at most `max` bytes. A larger file is
/// refused from its size before anything is read; one that grows while it is read is cut
/// off at `max + 1` bytes and refused too.
pub fn read_limited(path: &Path, max: u64) -> Result<Option<Vec<u8>>, ReadError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata()?.len();
    if len > max {
        return Err(ReadError::TooLarge { len, max });
    }
    let mut contents = Vec::with_capacity(len as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > max {
        return Err(ReadError::TooLarge {
            len: contents.len() as u64,
            max,
        });
    }
    Ok(Some(contents))
}

/// Fresh directories for the crate's unit tests.
#[cfg(test)]
pub(crate) mod scratch {
    use std::path::PathBuf;

    /// A new, empty directory under the system's temporary directory, named after `name`.
    pub fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "setowire-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(name: &str) -> PathBuf {
        scratch::dir(&format!("atomic-{name}"))
    }

    #[test]
    fn replaces_whole_files_and_leaves_no_temporaries() {
        let dir = temp_dir("write");
        let path = dir.join("snapshot.bin");
        write(&path, b"first", 0o600).unwrap();
        write(&path, b"second, longer", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["snapshot.bin"]);
        assert!(is_temporary(
            temporary_path(&path).file_name().unwrap().to_str().unwrap()
        ));
        assert!(!is_temporary("snapshot.bin"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_are_bounded() {
        let dir = temp_dir("read");
        let path = dir.join("f");
        assert!(
            read_limited(&path, 10).unwrap().is_none(),
            "missing is None"
        );
        fs::write(&path, [1u8; 11]).unwrap();
        assert!(matches!(
            read_limited(&path, 10),
            Err(ReadError::TooLarge { len: 11, max: 10 })
        ));
        assert_eq!(read_limited(&path, 11).unwrap().unwrap(), [1u8; 11]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
