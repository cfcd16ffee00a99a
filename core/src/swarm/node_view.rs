//! What an engine reads about the rest of its node.
//!
//! A sharded node runs one engine per core; the kernel steers each peer's datagrams to one
//! shard, so each engine owns the sessions of its own peers. The few questions that span
//! shards — who is connected where, who connected recently, how many peers the node has,
//! which addresses are being dialled, which values the node stores — are answered through a
//! [`NodeView`]. An engine never writes to it: what it does that the rest of the node must
//! know comes out as [`crate::swarm::effects::ClusterEffect`] values, and the node applies
//! them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::identity::Id8;
use crate::swarm::dedupe::SeenFilter;
use crate::swarm::lan_addrs::LanAddrs;
use crate::swarm::node_limits::NodeLimits;

pub type ShardId = usize;

/// A peer somewhere in the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLocation {
    pub id8: Id8,
    pub addr: SocketAddr,
    pub shard: ShardId,
}

/// How long an address counts as being dialled: eight HELLOs 300 ms apart, then a grace.
pub const DIAL_MEMORY: Duration = Duration::from_secs(6);

/// A read-only view of the node an engine belongs to, as its shards last published it.
///
/// The engine asks these questions while it handles datagrams, so implementations must
/// answer without blocking: no lock another thread could hold for long.
pub trait NodeView: Send + Sync {
    /// Shards in the node (1 for a node that is a single engine).
    fn shards(&self) -> usize;
    /// Peers connected across the node.
    fn peer_count(&self) -> usize;
    fn locate(&self, id8: &Id8) -> Option<PeerLocation>;
    fn is_connected_addr(&self, addr: &SocketAddr) -> bool;
    /// Up to `n` peers, most recently connected first.
    fn recent(&self, n: usize) -> Vec<PeerLocation>;
    /// Whether some shard dialled `addr` within [`DIAL_MEMORY`] of `now`.
    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool;
    /// The value the node stores under `key`.
    fn stored(&self, key: &str) -> Option<Arc<[u8]>>;
    fn has_stored(&self, key: &str) -> bool;
    /// Up to `n` stored keys, most recent first.
    fn recent_keys(&self, n: usize) -> Vec<String>;
    /// The limits all shards charge together (asked once, when an engine is made).
    fn limits(&self) -> Arc<NodeLimits>;
    /// The duplicate filter all shards check application data against before they deliver
    /// or re-flood it (asked once, when an engine is made).
    fn seen(&self) -> Arc<SeenFilter>;
    /// The LAN addresses peers announced, by which peers behind one NAT are introduced
    /// (asked once, when an engine is made).
    fn lan_addrs(&self) -> Arc<LanAddrs>;
}
