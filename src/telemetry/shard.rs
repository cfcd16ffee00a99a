//! One shard's published counters and its liveness.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::io::{IoStats, SendErrorKind};
use setowire_core::proto::frame::FrameKind;
use setowire_core::swarm::engine::tables::TableSizes;
use setowire_core::swarm::stats::{DropReason, Stats};

/// How often a shard publishes its counters.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// A running shard whose loop has not published for this long is stalled: its loop comes
/// round at least every 100 ms when idle, so this is a turn stuck twenty times over (a
/// deadlock, an endless loop, a batch of work far too large), not a slow moment.
pub const STALL_AFTER: Duration = Duration::from_secs(2);

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
    pub wants_repeated: AtomicU64,
    pub data_late: AtomicU64,
    pub stun_responses: AtomicU64,
    /// Received datagrams longer than the receive buffers, dropped unread.
    pub truncated: AtomicU64,
    /// Failed receive operations.
    pub recv_errors: AtomicU64,
    /// Turns of the shard's loop.
    pub loop_iterations: AtomicU64,
    send_errors: [AtomicU64; SendErrorKind::ALL.len()],
    frames: [AtomicU64; FrameKind::ALL.len()],
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Entries per engine table, in [`TableSizes::named`]'s order.
    tables: [AtomicU64; TableSizes::COUNT],
    /// Milliseconds since the node started at the last publish (0: never).
    last_publish_ms: AtomicU64,
    /// Set once the shard's loop has ended.
    stopped: AtomicBool,
}

/// What a shard's own counters say, besides the engine's and the socket's.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoopStats {
    pub peers: usize,
    /// Turns of the loop so far.
    pub iterations: u64,
    /// Entries in each of the engine's tables.
    pub tables: TableSizes,
}

/// Whether a shard's loop is running, as its publishes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardHealth {
    /// Not published yet.
    Starting,
    Running,
    /// Running, but its loop has not published for this long (at least [`STALL_AFTER`]).
    Stalled(Duration),
    /// Its loop has ended.
    Stopped,
}

impl ShardMetrics {
    /// Copies the counters out. Datagrams and bytes are the socket's (all traffic on the
    /// port: Setowire, DHT and STUN), as the backend counted them.
    pub fn publish(
        &self,
        epoch: Instant,
        now: Instant,
        stats: &Stats,
        io: &IoStats,
        shard: LoopStats,
    ) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.peers, shard.peers as u64);
        set(&self.loop_iterations, shard.iterations);
        set(&self.handshakes, stats.handshakes);
        set(&self.datagrams_received, io.datagrams_received);
        set(&self.datagrams_sent, io.datagrams_sent);
        set(&self.bytes_received, io.bytes_received);
        set(&self.bytes_sent, io.bytes_sent);
        set(&self.relay_forwards, stats.relay_forwards);
        set(&self.data_delivered, stats.data_delivered);
        set(&self.peers_displaced, stats.peers_displaced);
        set(&self.credit_probes, stats.credit_probes);
        set(&self.wants_repeated, stats.wants_repeated);
        set(&self.data_late, stats.data_late);
        set(&self.stun_responses, stats.stun_responses);
        set(&self.truncated, io.truncated);
        set(&self.recv_errors, io.recv_errors);
        for (slot, kind) in self.send_errors.iter().zip(SendErrorKind::ALL) {
            set(slot, io.send_errors.get(kind));
        }
        for (slot, kind) in self.frames.iter().zip(FrameKind::ALL) {
            set(slot, stats.frames(kind));
        }
        for (slot, reason) in self.drops.iter().zip(DropReason::ALL) {
            set(slot, stats.drops(reason));
        }
        for (slot, (_, entries)) in self.tables.iter().zip(shard.tables.named()) {
            set(slot, entries as u64);
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

    /// `(table, entries)` for each engine table, as last published.
    pub fn tables(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let names = TableSizes::default().named().map(|(name, _)| name);
        names
            .into_iter()
            .zip(&self.tables)
            .map(|(name, entries)| (name, entries.load(Ordering::Relaxed)))
    }

    pub fn send_errors(&self, kind: SendErrorKind) -> u64 {
        self.send_errors[kind as usize].load(Ordering::Relaxed)
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

    pub fn health(&self, epoch: Instant, now: Instant) -> ShardHealth {
        if self.stopped.load(Ordering::Relaxed) {
            return ShardHealth::Stopped;
        }
        match self.since_publish(epoch, now) {
            None => ShardHealth::Starting,
            Some(age) if age >= STALL_AFTER => ShardHealth::Stalled(age),
            Some(_) => ShardHealth::Running,
        }
    }

    /// Running and publishing: published within the last [`STALL_AFTER`] and not stopped.
    pub fn healthy(&self, epoch: Instant, now: Instant) -> bool {
        self.health(epoch, now) == ShardHealth::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_the_publishes() {
        let epoch = Instant::now();
        let shard = ShardMetrics::default();
        assert_eq!(shard.health(epoch, epoch), ShardHealth::Starting);
        let io = IoStats::default();
        shard.publish(epoch, epoch, &Stats::default(), &io, LoopStats::default());
        assert_eq!(shard.health(epoch, epoch), ShardHealth::Running);
        let later = epoch + STALL_AFTER - Duration::from_millis(10);
        assert!(shard.healthy(epoch, later));
        let stuck = epoch + STALL_AFTER + Duration::from_millis(500);
        assert!(matches!(
            shard.health(epoch, stuck),
            ShardHealth::Stalled(age) if age >= STALL_AFTER
        ));
        assert!(!shard.healthy(epoch, stuck));
        // Publishing again is recovery.
        shard.publish(epoch, stuck, &Stats::default(), &io, LoopStats::default());
        assert!(shard.healthy(epoch, stuck));
        shard.mark_stopped();
        assert_eq!(shard.health(epoch, stuck), ShardHealth::Stopped);
    }
}
