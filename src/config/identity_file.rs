//! Key files: a node identity kept on disk (config `identity = "/path/to/key"`).
//!
//! A key file holds the 32 secret scalar bytes of the node's X25519 key pair, either raw
//! (exactly 32 bytes) or as 64 hex digits (surrounding whitespace ignored). New files are
//! written as 64 hex digits and a newline with mode 0600, and an existing file is never
//! replaced: two nodes starting at once with the same missing path end up with the same key.
//!
//! With a state directory and no key file configured, the key file is
//! `<state_dir>/identity.key` (see `NodeConfig::load_identity`).
//!
//! A persistent identity keeps its session keys across restarts, so the runtime must start
//! its nonce counters above the previous run's
//! ([`setowire_core::proto::session::restart_safe_counter_base`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::num::ParseIntError;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::state::atomic::{self, temporary_path};
use setowire_core::proto::identity::{decode_hex, encode_hex, Identity};
use setowire_core::proto::session::restart_safe_counter_base;

/// Larger files are not key files; they are refused before being read.
const MAX_FILE_BYTES: u64 = 1024;

/// Why a key file or its epoch file could not be used. `Display` includes the underlying
/// cause, since the binary reports the error as one log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// `doing` says what failed, e.g. "opening key file".
    #[error("{doing} {}: {error}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    #[error("key file {} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    #[error(
        "key file {} is not a key file: expected 32 raw bytes or 64 hex digits, found {len} bytes",
        path.display()
    )]
    TooLarge { path: PathBuf, len: u64 },
    #[error(
        "key file {} is not a key file: expected 32 raw bytes or 64 hex digits",
        path.display()
    )]
    NotAKey { path: PathBuf },
    #[error("epoch file {} does not hold a number: {error}", path.display())]
    BadEpoch { path: PathBuf, error: ParseIntError },
}

fn io_error(doing: &'static str, path: &Path, error: io::Error) -> KeyFileError {
    KeyFileError::Io {
        doing,
        path: path.to_owned(),
        error,
    }
}

/// The secret in a key file's contents: 32 raw bytes, or 64 hex digits.
pub fn parse_key(contents: &[u8]) -> Option<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(contents) {
        return Some(raw);
    }
    let text = std::str::from_utf8(contents).ok()?.trim();
    if text.len() != 64 {
        return None;
    }
    decode_hex(text)?.try_into().ok()
}

/// Reads the identity in the key file at `path`. Logs a warning when the file is readable by
/// other users.
pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
    let mut file = File::open(path).map_err(|e| io_error("opening key file", path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_error("reading key file", path, e))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotRegular {
            path: path.to_owned(),
        });
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(KeyFileError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "key file is accessible to other users; chmod 600 it"
        );
    }
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)
        .map_err(|e| io_error("reading key file", path, e))?;
    let secret = parse_key(&contents).ok_or_else(|| KeyFileError::NotAKey {
        path: path.to_owned(),
    })?;
    Ok(Identity::from_secret(secret))
}

/// The first nonce counter of this run of an identity whose epoch is recorded at
/// `epoch_path` (for a key file: [`epoch_path`] of it).
///
/// The epoch file holds the epoch of the previous run; this run takes the later of that plus
/// one and the current Unix second, records it (atomically and durably, before any session
/// uses it), and counts from [`restart_safe_counter_base`] of it. So counters grow from run
/// to run even if the clock went back, and no (key, nonce) pair is ever used twice.
pub fn next_counter_base(epoch_path: &Path, unix_seconds: u64) -> Result<u64, KeyFileError> {
    let previous = match fs::read_to_string(epoch_path) {
        Ok(text) => Some(
            text.trim()
                .parse::<u64>()
                .map_err(|error| KeyFileError::BadEpoch {
                    path: epoch_path.to_owned(),
                    error,
                })?,
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(io_error("reading", epoch_path, e)),
    };
    let epoch = previous.map_or(unix_seconds, |p| unix_seconds.max(p + 1));
    atomic::write(epoch_path, format!("{epoch}\n").as_bytes(), 0o600)
        .map_err(|e| io_error("writing", epoch_path, e))?;
    Ok(restart_safe_counter_base(epoch))
}

/// Where the epoch of the key file at `key_path` is recorded: `<key>.epoch`.
pub fn epoch_path(key_path: &Path) -> PathBuf {
    let mut name = key_path.as_os_str().to_owned();
    name.push(".epoch");
    PathBuf::from(name)
}

/// Reads the key file at `path`, or creates it with a fresh identity (mode 0600) when it does
/// not exist. The directory must exist.
pub fn load_or_create(path: &Path) -> Result<Identity, KeyFileError> {
    match fs::symlink_metadata(path) {
        Ok(_) => return load(path),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io_error("checking key file", path, e)),
    }
    let identity = Identity::generate();
    if create(path, &identity)? {
        tracing::info!(path = %path.display(), id = %identity.id_hex(), "created key file");
        Ok(identity)
    } else {
        // Another process created it first: use theirs.
        load(path)
    }
}

/// Writes `identity` to a new file at `path`; `false` if the path exists already. The key is
/// written to a temporary file and hard-linked into place, so `path` never holds a partial
/// key.
fn create(path: &Path, identity: &Identity) -> Result<bool, KeyFileError> {
    let contents = format!("{}\n", encode_hex(&identity.secret_bytes()));
    let tmp = temporary_path(path);
    let written = write_new(&tmp, contents.as_bytes());
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error("creating key file", path, e));
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        // A file system without hard links: create the file in place.
        Err(_) => match write_new(path, contents.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_error("creating key file", path, e)),
        },
    }
    // Make the new directory entry durable; best effort.
    let _ = atomic::sync_dir(path);
    Ok(true)
}

fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_base_grows_across_runs_even_when_the_clock_goes_back() {
        let dir = std::env::temp_dir().join(format!("swn-epoch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let key = epoch_path(&dir.join("node.key"));
        assert_eq!(key, dir.join("node.key.epoch"));
        let first = next_counter_base(&key, 1_000).unwrap();
        let second = next_counter_base(&key, 1_000).unwrap();
        let after_clock_went_back = next_counter_base(&key, 10).unwrap();
        let later = next_counter_base(&key, 5_000).unwrap();
        assert!(first < second && second < after_clock_went_back && after_clock_went_back < later);
        assert_eq!(first, restart_safe_counter_base(1_000));
        fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        crate::state::atomic::scratch::dir(&format!("identity-{name}"))
    }

    #[test]
    fn parses_raw_and_hex_keys() {
        let secret = [7u8; 32];
        assert_eq!(parse_key(&secret), Some(secret));
        let hex = encode_hex(&secret);
        assert_eq!(parse_key(hex.as_bytes()), Some(secret));
        assert_eq!(
            parse_key(format!("  {}\n", hex.to_uppercase()).as_bytes()),
            Some(secret)
        );
        assert_eq!(parse_key(&[1u8; 31]), None);
        assert_eq!(parse_key(&hex.as_bytes()[..62]), None);
        assert_eq!(parse_key(format!("{}zz", &hex[..62]).as_bytes()), None);
    }

    #[test]
    fn creates_once_with_mode_0600_then_loads() {
        let dir = temp_dir("create");
        let path = dir.join("node.key");
        let created = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let contents = fs::read_to_string(&path).unwrap();
        assert_eq!(
            contents,
            format!("{}\n", encode_hex(&created.secret_bytes()))
        );
        let loaded = load_or_create(&path).unwrap();
        assert_eq!(loaded.id(), created.id());
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loads_raw_key_files() {
        let dir = temp_dir("raw");
        let path = dir.join("raw.key");
        fs::write(&path, [9u8; 32]).unwrap();
        let identity = load_or_create(&path).unwrap();
        assert_eq!(identity.id(), Identity::from_secret([9u8; 32]).id());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_files_that_are_not_keys() {
        let dir = temp_dir("bad");
        let path = dir.join("bad.key");
        fs::write(&path, "not a key\n").unwrap();
        let e = format!("{:#}", load_or_create(&path).unwrap_err());
        assert!(e.contains("not a key file"), "{e}");
        fs::write(&path, vec![b'a'; 4096]).unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(e.contains("4096 bytes"), "{e}");
        let e = format!(
            "{:#}",
            load_or_create(&dir.join("missing/dir/key")).unwrap_err()
        );
        assert!(e.contains("creating key file"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
