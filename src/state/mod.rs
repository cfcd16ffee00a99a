//! Persistence across restarts (config `state_dir`).
//!
//! The state directory ([`dir`]) holds the identity key and its nonce epoch (written by
//! `config::identity_file`: the key once, the epoch at every start) and a snapshot of what
//! the node would otherwise lose: the DHT's id and the values it keeps for others, the HTTP
//! bootstrap announcements, the most recently stored values and the addresses of the peers
//! it was connected to. The key lives in a file of its own, not in the snapshot, so that a
//! corrupt snapshot never changes the node's id.
//!
//! - [`format`]: the snapshot file, versioned and checksummed part by part, bounded by
//!   [`SnapshotLimits`] on both ends; [`codec`] its byte-level pieces.
//! - [`atomic`]: whole-file replacement (temporary file, fsync, rename, fsync of the
//!   directory) and size-bounded reads.
//! - [`capture`]: a snapshot of the running node; [`restore`]: one put back at start.
//! - [`snapshotter`]: the thread writing one every interval and a last one at shutdown.
//!
//! At start ([`load`]) a snapshot that cannot be read, or a part of it, is logged at warn
//! with the reason and counted (`setowire_state_restore_failures_total{part}`); the node
//! starts with what was whole.

pub mod atomic;
mod capture;
mod codec;
mod dir;
mod format;
mod restore;
mod snapshotter;

use std::time::{Duration, Instant};

pub use capture::Live;
pub use dir::{StateDir, StateDirError};
pub use format::{Snapshot, SnapshotLimits};
pub use snapshotter::spawn;

use crate::telemetry::state::{StateMetrics, StatePart};

/// What the runtime needs to persist the node.
#[derive(Debug)]
pub struct StateOptions {
    /// Locked while this value lives.
    pub dir: StateDir,
    pub interval: Duration,
    pub limits: SnapshotLimits,
}

/// Reads the snapshot in the state directory: the parts that are whole and within the caps
/// (the others empty, logged and counted). No snapshot yet is no failure.
pub fn load(options: &StateOptions, metrics: &StateMetrics) -> Snapshot {
    let path = options.dir.snapshot();
    let bytes = match atomic::read_limited(&path, options.limits.max_file_bytes()) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            tracing::info!(path = %path.display(), "no snapshot yet: starting afresh");
            return Snapshot::default();
        }
        Err(e) => {
            tracing::warn!(
                path = %path.display(),
                part = %StatePart::File.name(),
                error = %e,
                "snapshot skipped: the node starts without it"
            );
            metrics.count_restore_failure(StatePart::File);
            return Snapshot::default();
        }
    };
    let decoded = format::decode(&bytes, &options.limits);
    for failure in &decoded.failures {
        tracing::warn!(
            path = %path.display(),
            part = %failure.part.name(),
            error = %failure.error,
            "snapshot part skipped: the node starts without it"
        );
        metrics.count_restore_failure(failure.part);
    }
    tracing::info!(
        path = %path.display(),
        bytes = bytes.len(),
        written_unix_ms = decoded.snapshot.written_unix_ms,
        "snapshot read"
    );
    decoded.snapshot
}

/// Puts `snapshot` back into the starting node; returns the peer addresses to dial.
pub fn restore(
    snapshot: Snapshot,
    live: &Live,
    metrics: &StateMetrics,
) -> Vec<std::net::SocketAddr> {
    restore::restore(
        snapshot,
        live,
        metrics,
        Instant::now(),
        snapshotter::unix_millis(),
    )
}
