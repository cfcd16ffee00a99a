//! What the node tells about itself: Prometheus metrics (served as text at `GET /metrics` on
//! the admin listener), its readiness, and its logs.
//!
//! Nothing here takes a lock on the hot path. Each shard copies its engine's
//! [`Stats`](setowire_core::swarm::stats::Stats) and its backend's
//! [`IoStats`](crate::io::IoStats) into its own [`ShardMetrics`] (relaxed atomic stores) about
//! every [`PUBLISH_EVERY`]; the HTTP listener counts into its own [`HttpMetrics`] (atomics).
//! At scrape time [`collector::NodeCollector`] reads all of them, and the DHT's counters
//! under its lock, and turns them into metric families. So a scrape sees the shards as of at
//! most ~100 ms ago.
//!
//! Labels are bounded: `shard`, `type` (a frame kind or a DHT request type), `reason` (a drop
//! reason), `kind` (a send error kind), `backend`, `route`, `code_class` and `part` (a part
//! of the state snapshot); never a peer id or address.
//!
//! A shard's health is read from its publishes: `setowire_shard_heartbeat_age_seconds` is the
//! time since its last one (so up to about [`PUBLISH_EVERY`] more than the time since its
//! loop last came round), and a running shard whose heartbeat is [`STALL_AFTER`] old is
//! stalled, in `setowire_shard_stalled` and in `/readyz`. Counting the loop's turns costs
//! the loop a local increment; nothing is stored per turn.
//!
//! `setowire_handshake_duration_seconds` is the time the shard spends in
//! `Engine::handle_datagram` on the HELLO or HELLO_ACK that completes a handshake: the X25519
//! agreement, key derivation and session set-up (plus whatever else that datagram triggers,
//! such as introductions). It is not the network round trip of the handshake: the engine is
//! sans-IO and has no clock of its own to tell when the first HELLO left.

pub mod bootstrap;
pub mod collector;
pub mod logging;
pub mod process;
pub mod readiness;
pub mod shard;
pub mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Histogram, HistogramOpts, Registry};

use crate::discovery::dht::SharedDht;
use crate::http::metrics::HttpMetrics;
use crate::io::BackendKind;
use setowire_core::swarm::node_limits::NodeLimits;

pub use collector::{render, CONTENT_TYPE};
pub use shard::{LoopStats, ShardHealth, ShardMetrics, PUBLISH_EVERY, STALL_AFTER};

/// Everything the node exports, shared by the shards (writers) and the admin API (reader).
pub struct NodeMetrics {
    pub shards: Vec<Arc<ShardMetrics>>,
    pub http: Arc<HttpMetrics>,
    pub handshake_seconds: Histogram,
    pub backend: BackendKind,
    pub max_peers: usize,
    /// When the node started.
    pub epoch: Instant,
    pub start_unix: f64,
    pub dht: Option<Arc<SharedDht>>,
    /// The node-wide limits, for the memory they hold.
    pub limits: Option<Arc<NodeLimits>>,
    /// Cross-shard messages dropped because the destination's inbox was full, indexed by
    /// destination shard (the inboxes' own counters, read at scrape time).
    pub inbox_drops: Option<Arc<[AtomicU64]>>,
    /// Snapshots and restores (all zero without a state directory).
    pub state: Arc<state::StateMetrics>,
    /// Bootstrap nodes joined and dialled (all zero without `bootstrap`).
    pub bootstrap: Arc<bootstrap::BootstrapMetrics>,
}

impl NodeMetrics {
    pub fn new(shards: usize, backend: BackendKind, max_peers: usize, epoch: Instant) -> Self {
        let handshake_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "setowire_handshake_duration_seconds",
                "Time spent handling the HELLO or HELLO_ACK that completes a handshake \
                 (X25519, key derivation, session set-up)",
            )
            .buckets(vec![
                10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3,
            ]),
        )
        .expect("valid histogram options");
        NodeMetrics {
            shards: (0..shards).map(|_| Arc::default()).collect(),
            http: Arc::default(),
            handshake_seconds,
            backend,
            max_peers,
            epoch,
            start_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            dht: None,
            limits: None,
            inbox_drops: None,
            state: Arc::default(),
            bootstrap: Arc::default(),
        }
    }

    pub fn peer_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.peers.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of one counter over the shards.
    pub fn total(&self, field: impl Fn(&ShardMetrics) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }

    /// A registry holding the node's families, the handshake histogram and the process
    /// metrics (`process_*`).
    pub fn registry(self: &Arc<Self>) -> prometheus::Result<Registry> {
        let registry = Registry::new();
        registry.register(Box::new(collector::NodeCollector::new(Arc::clone(self))?))?;
        registry.register(Box::new(self.handshake_seconds.clone()))?;
        registry.register(Box::new(process::ProcessCollector::new()?))?;
        Ok(registry)
    }
}
