//! The counters of the node's persistence (config `state_dir`): snapshots written and the
//! time, length and size of the last one, snapshots that failed, and what the start-up
//! restore took back or refused, by part. The state module counts into atomics; the
//! collector reads them at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The parts a snapshot is read in, as the `part` label names them. `File` is the file as a
/// whole: unreadable, not a snapshot, cut short, or larger than the caps allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatePart {
    File,
    Dht,
    Announcements,
    Values,
    Peers,
}

impl StatePart {
    pub const ALL: [StatePart; 5] = [
        StatePart::File,
        StatePart::Dht,
        StatePart::Announcements,
        StatePart::Values,
        StatePart::Peers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StatePart::File => "file",
            StatePart::Dht => "dht",
            StatePart::Announcements => "announcements",
            StatePart::Values => "values",
            StatePart::Peers => "peers",
        }
    }
}

#[derive(Default)]
pub struct StateMetrics {
    /// Snapshots written.
    pub snapshots: AtomicU64,
    /// Snapshots that could not be written.
    pub snapshot_failures: AtomicU64,
    /// When the last snapshot was written, Unix milliseconds (0: never).
    pub last_unix_ms: AtomicU64,
    /// How long the last snapshot took, from capture to the directory flushed, microseconds.
    pub last_duration_us: AtomicU64,
    /// Bytes of the last snapshot file.
    pub last_bytes: AtomicU64,
    restore_failures: [AtomicU64; StatePart::ALL.len()],
    restored: [AtomicU64; StatePart::ALL.len()],
}

impl StateMetrics {
    pub fn count_restore_failure(&self, part: StatePart) {
        self.restore_failures[part as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn restore_failures(&self, part: StatePart) -> u64 {
        self.restore_failures[part as usize].load(Ordering::Relaxed)
    }

    /// `n` entries of `part` taken back at start.
    pub fn count_restored(&self, part: StatePart, n: usize) {
        self.restored[part as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn restored(&self, part: StatePart) -> u64 {
        self.restored[part as usize].load(Ordering::Relaxed)
    }

    /// A snapshot of `bytes` bytes written at `unix_ms`, taking `took`.
    pub fn snapshot_written(&self, unix_ms: u64, took: Duration, bytes: usize) {
        self.snapshots.fetch_add(1, Ordering::Relaxed);
        self.last_unix_ms.store(unix_ms, Ordering::Relaxed);
        self.last_duration_us
            .store(took.as_micros() as u64, Ordering::Relaxed);
        self.last_bytes.store(bytes as u64, Ordering::Relaxed);
    }
}
