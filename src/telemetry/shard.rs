//! One shard's published counters and its liveness.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::io::IoStats;
use setowire_core::proto::frame::FrameKind;
use setowire_core::swarm::stats::{DropReason, Stats};

/// How often a shard publishes its counters.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// One shard's counters, written by the shard alone, read at scrape time.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub peers: AtomicU64,
    pub handshakes: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagrams_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub relay_forwards: AtomicU64,
    pub data_delivered: AtomicU64,
    pub peers_displaced: AtomicU64,
    pub credit_probes: AtomicU64,
    pub stun_responses: AtomicU64,
    pub send_errors: AtomicU64,
    frames: [AtomicU64; FrameKind::ALL.len()],
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Milliseconds since the node started at the last publish (0: never).
    last_publish_ms: AtomicU64,
    /// Set once the shard's loop has ended.
    stopped: AtomicBool,
}

impl ShardMetrics {
    /// Copies the counters out. Datagrams and bytes are the socket's (all traffic on the
    /// port: Setowire, DHT and STUN), as the backend counted them.
    pub fn publish(&self, epoch: Instant, now: Instant, stats: &Stats, io: &IoStats, peers: usize) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.peers, peers as u64);
        set(&self.handshakes, stats.handshakes);
        set(&self.datagrams_received, io.datagrams_received);
        set(&self.datagrams_sent, io.datagrams_sent);
        set(&self.bytes_received, io.bytes_received);
        set(&self.bytes_sent, io.bytes_sent);
        set(&self.relay_forwards, stats.relay_forwards);
        set(&self.data_delivered, stats.data_delivered);
        set(&self.peers_displaced, stats.peers_displaced);
        set(&self.credit_probes, stats.credit_probes);
        set(&self.stun_responses, stats.stun_responses);
        set(&self.send_errors, io.send_errors);
        for (slot, kind) in self.frames.iter().zip(FrameKind::ALL) {
            set(slot, stats.frames(kind));
        }
        for (slot, reason) in self.drops.iter().zip(DropReason::ALL) {
            set(slot, stats.drops(reason));
        }
        let ms = now.saturating_duration_since(epoch).as_millis() as u64;
        set(&self.last_publish_ms, ms.max(1));
    }

    /// Marks the shard as stopped (its loop has returned).
    pub fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn frames(&self, kind: FrameKind) -> u64 {
        self.frames[kind as usize].load(Ordering::Relaxed)
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// How long ago the shard last published; `None` before its first publish.
    pub fn since_publish(&self, epoch: Instant, now: Instant) -> Option<Duration> {
        match self.last_publish_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                now.saturating_duration_since(epoch)
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Running and publishing: published within the last two seconds and not stopped.
    pub fn healthy(&self, epoch: Instant, now: Instant) -> bool {
        !self.stopped.load(Ordering::Relaxed)
            && self
                .since_publish(epoch, now)
                .is_some_and(|d| d < Duration::from_secs(2))
    }
}
