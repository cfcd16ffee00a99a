//! The snapshot thread: writes a snapshot every interval while the node runs and a last one
//! when it stops, under the supervisor like every other long-lived thread.
//!
//! A snapshot that cannot be written (a full disk, say) is logged and counted, and the node
//! goes on: the previous snapshot is still there, whole. The peer cache is sampled every
//! second, because the shards end their sessions as soon as the node begins to stop: the
//! last snapshot takes the peers still connected then and those of the last sample.

use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::atomic;
use super::capture::{capture, Live};
use super::format::{encode, SnapshotLimits};
use super::StateOptions;
use crate::supervisor::Supervisor;
use crate::telemetry::state::StateMetrics;

/// How often the thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// How often the connected peers are sampled for the last snapshot.
const PEER_SAMPLE: Duration = Duration::from_secs(1);
/// Snapshot files are the node's alone.
const FILE_MODE: u32 = 0o600;

struct Snapshotter {
    path: PathBuf,
    limits: SnapshotLimits,
    live: Live,
    metrics: Arc<StateMetrics>,
}

/// Starts the snapshot thread `state-snapshot`.
pub fn spawn(
    options: &StateOptions,
    live: Live,
    metrics: Arc<StateMetrics>,
    supervisor: &Supervisor,
) -> io::Result<JoinHandle<()>> {
    let snapshotter = Snapshotter {
        path: options.dir.snapshot(),
        limits: options.limits,
        live,
        metrics,
    };
    let interval = options.interval;
    let stop = Arc::clone(supervisor.stop_flag());
    supervisor.spawn("state-snapshot".into(), move || {
        let mut next_snapshot = Instant::now() + interval;
        let mut next_sample = Instant::now();
        let mut sampled = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_sample {
                sampled = snapshotter.connected();
                next_sample = now + PEER_SAMPLE;
            }
            if now >= next_snapshot {
                sampled = snapshotter.connected();
                snapshotter.write(sampled.clone());
                next_snapshot = Instant::now() + interval;
            }
            std::thread::sleep(POLL);
        }
        let peers = merge(snapshotter.connected(), sampled, snapshotter.limits.peers);
        snapshotter.write(peers);
    })
}

impl Snapshotter {
    fn connected(&self) -> Vec<SocketAddr> {
        self.live.shared.directory.addresses(self.limits.peers)
    }

    /// Writes one snapshot; a failure is logged and counted.
    fn write(&self, peers: Vec<SocketAddr>) {
        let started = Instant::now();
        let unix_ms = unix_millis();
        let snapshot = capture(&self.live, &self.limits, peers, started, unix_ms);
        let bytes = encode(&snapshot, &self.limits);
        match atomic::write(&self.path, &bytes, FILE_MODE) {
            Ok(()) => {
                let took = started.elapsed();
                self.metrics.snapshot_written(unix_ms, took, bytes.len());
                tracing::debug!(
                    path = %self.path.display(),
                    bytes = bytes.len(),
                    dht_values = snapshot.dht_values.len(),
                    announcements = snapshot.announcements.len(),
                    values = snapshot.values.len(),
                    peers = snapshot.peers.len(),
                    took_ms = took.as_secs_f64() * 1e3,
                    "snapshot written"
                );
            }
            Err(e) => {
                self.metrics
                    .snapshot_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot write the snapshot; the previous one stays"
                );
            }
        }
    }
}

/// `first`, then those of `then` not in it, at most `cap` in all.
fn merge(first: Vec<SocketAddr>, then: Vec<SocketAddr>, cap: usize) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    first
        .into_iter()
        .chain(then)
        .filter(|addr| seen.insert(*addr))
        .take(cap)
        .collect()
}

/// The wall clock in Unix milliseconds (0 before 1970: a broken clock, not a reason to stop).
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_peer_cache_keeps_the_sampled_peers_too() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3".parse().unwrap();
        assert_eq!(merge(vec![a], vec![b, a, c], 10), [a, b, c]);
        assert_eq!(merge(vec![], vec![b, c], 1), [b]);
    }
}
