//! What one engine needs from the other engines of the same node.
//!
//! A sharded node runs one engine per core; the kernel sends each peer's datagrams to one
//! shard, so each engine owns the sessions of its own peers. The few things that span shards —
//! who is connected where, who connected recently, the node-wide peer limit, addresses being
//! dialled, and work for another shard's peers — go through this trait. A single engine uses
//! [`SoloCluster`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proto::identity::Id8;
use crate::swarm::store::ValueStore;

pub type ShardId = usize;

/// The node's value store, shared by its shards (touched by HAVE/WANT/CHUNK, not per packet).
pub type SharedStore = Arc<Mutex<ValueStore>>;

/// A peer somewhere in the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLocation {
    pub id8: Id8,
    pub addr: SocketAddr,
    pub shard: ShardId,
}

pub trait Cluster: Send {
    /// The shard this engine is.
    fn shard(&self) -> ShardId;
    /// Peers connected across the node.
    fn peer_count(&self) -> usize;
    /// Records a new session (node-wide index and the recently-connected list).
    fn connected(&self, id8: Id8, addr: SocketAddr);
    fn disconnected(&self, id8: &Id8);
    fn locate(&self, id8: &Id8) -> Option<PeerLocation>;
    fn is_connected_addr(&self, addr: &SocketAddr) -> bool;
    /// Up to `n` peers, most recently connected first.
    fn recent(&self, n: usize) -> Vec<PeerLocation>;
    /// Notes that this node is dialling `addr`: the answer may reach another shard.
    fn dialing(&self, addr: SocketAddr, now: Instant);
    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool;
    /// Application data delivered here, to be flooded by the other shards too.
    fn flood_elsewhere(&self, payload: &[u8]);
    /// Asks `shard` to introduce `newcomer` to some of its peers.
    fn introduce_elsewhere(&self, shard: ShardId, targets: Vec<Id8>, newcomer: PeerLocation);
    /// Asks the other shards to fetch `key` from their mesh as well.
    fn want_elsewhere(&self, key: &str);
    /// Tells the other shards that `key` arrived in the shared store.
    fn value_arrived(&self, key: &str);
}

/// How long an address counts as being dialled: eight HELLOs 300 ms apart, then a grace.
pub const DIAL_MEMORY: Duration = Duration::from_secs(6);

/// Node-wide peer index and recently-connected list; shared by a node's shards and used
/// alone by a single engine.
/// Looked up for relaying and introductions across shards: fast hashes, randomly keyed because
/// ids and addresses are chosen by the peers.
#[derive(Default)]
pub struct PeerIndex {
    by_id: HashMap<Id8, PeerLocation, ahash::RandomState>,
    by_addr: HashMap<SocketAddr, Id8, ahash::RandomState>,
    recent: VecDeque<Id8>,
    recent_cap: usize,
    dials: HashMap<SocketAddr, Instant>,
    dials_cap: usize,
}

impl PeerIndex {
    pub fn new(recent_cap: usize, dials_cap: usize) -> Self {
        Self {
            recent_cap: recent_cap.max(1),
            dials_cap,
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn insert(&mut self, location: PeerLocation) {
        if let Some(old) = self.by_id.insert(location.id8, location) {
            self.by_addr.remove(&old.addr);
        }
        self.by_addr.insert(location.addr, location.id8);
        self.dials.remove(&location.addr);
        self.recent.retain(|id| *id != location.id8);
        self.recent.push_front(location.id8);
        self.recent.truncate(self.recent_cap);
    }

    pub fn remove(&mut self, id8: &Id8) {
        if let Some(old) = self.by_id.remove(id8) {
            if self.by_addr.get(&old.addr) == Some(id8) {
                self.by_addr.remove(&old.addr);
            }
            self.recent.retain(|id| id != id8);
        }
    }

    pub fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.by_id.get(id8).copied()
    }

    pub fn has_addr(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    pub fn recent(&self, n: usize) -> Vec<PeerLocation> {
        self.recent
            .iter()
            .filter_map(|id| self.by_id.get(id).copied())
            .take(n)
            .collect()
    }

    pub fn note_dial(&mut self, addr: SocketAddr, now: Instant) {
        if self.dials.len() >= self.dials_cap {
            self.dials
                .retain(|_, at| now.saturating_duration_since(*at) < DIAL_MEMORY);
        }
        if self.dials.len() < self.dials_cap {
            self.dials.insert(addr, now);
        }
    }

    pub fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.dials
            .get(addr)
            .is_some_and(|at| now.saturating_duration_since(*at) < DIAL_MEMORY)
    }
}

/// The cluster of a node with one engine: an index, and nobody else to tell anything.
pub struct SoloCluster {
    index: Mutex<PeerIndex>,
}

impl SoloCluster {
    pub fn new(recent_cap: usize, dials_cap: usize) -> Self {
        Self {
            index: Mutex::new(PeerIndex::new(recent_cap, dials_cap)),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, PeerIndex> {
        // A panic elsewhere cannot leave the index half-updated in a way that matters here.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cluster for SoloCluster {
    fn shard(&self) -> ShardId {
        0
    }

    fn peer_count(&self) -> usize {
        self.index().len()
    }

    fn connected(&self, id8: Id8, addr: SocketAddr) {
        self.index().insert(PeerLocation {
            id8,
            addr,
            shard: 0,
        });
    }

    fn disconnected(&self, id8: &Id8) {
        self.index().remove(id8);
    }

    fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.index().locate(id8)
    }

    fn is_connected_addr(&self, addr: &SocketAddr) -> bool {
        self.index().has_addr(addr)
    }

    fn recent(&self, n: usize) -> Vec<PeerLocation> {
        self.index().recent(n)
    }

    fn dialing(&self, addr: SocketAddr, now: Instant) {
        self.index().note_dial(addr, now);
    }

    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.index().is_dialing(addr, now)
    }

    fn flood_elsewhere(&self, _payload: &[u8]) {}

    fn introduce_elsewhere(&self, _shard: ShardId, _targets: Vec<Id8>, _newcomer: PeerLocation) {}

    fn want_elsewhere(&self, _key: &str) {}

    fn value_arrived(&self, _key: &str) {}
}
