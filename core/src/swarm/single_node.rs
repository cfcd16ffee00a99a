//! The node of an engine that is the whole node: its own peer index and value store, which
//! it updates at once instead of publishing effects for other shards.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::proto::identity::Id8;
use crate::swarm::config::EngineConfig;
use crate::swarm::dedupe::{SeenFilter, ROTATE_EVERY};
use crate::swarm::lan_addrs::LanAddrs;
use crate::swarm::node_limits::NodeLimits;
use crate::swarm::node_view::{NodeView, PeerLocation, DIAL_MEMORY};
use crate::swarm::store::ValueStore;

/// Peers by id and by address, the most recently connected ones, and addresses being
/// dialled. Looked up for relaying and introductions: fast hashes, randomly keyed because ids
/// and addresses are chosen by the peers.
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

/// Everything a lone engine's node is: the index of its peers and its value store.
pub(crate) struct SingleNode {
    pub(crate) index: PeerIndex,
    pub(crate) store: ValueStore,
    limits: Arc<NodeLimits>,
    seen: Arc<SeenFilter>,
    lan_addrs: Arc<LanAddrs>,
}

impl SingleNode {
    pub(crate) fn new(config: &EngineConfig, now: Instant) -> Self {
        Self {
            limits: Arc::new(NodeLimits::new(config, now)),
            seen: Arc::new(SeenFilter::new(config.seen_filter_bits, ROTATE_EVERY, now)),
            lan_addrs: Arc::default(),
            index: PeerIndex::new(config.recent_peers_wanted(), config.max_dials),
            store: ValueStore::new(
                config.store_max_entries,
                config.store_max_bytes,
                config.store_max_value,
            ),
        }
    }
}

impl NodeView for SingleNode {
    fn shards(&self) -> usize {
        1
    }

    fn peer_count(&self) -> usize {
        self.index.len()
    }

    fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.index.locate(id8)
    }

    fn is_connected_addr(&self, addr: &SocketAddr) -> bool {
        self.index.has_addr(addr)
    }

    fn recent(&self, n: usize) -> Vec<PeerLocation> {
        self.index.recent(n)
    }

    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.index.is_dialing(addr, now)
    }

    fn stored(&self, key: &str) -> Option<Arc<[u8]>> {
        self.store.peek_shared(key)
    }

    fn has_stored(&self, key: &str) -> bool {
        self.store.contains(key)
    }

    fn recent_keys(&self, n: usize) -> Vec<String> {
        self.store.recent_keys(n).map(str::to_owned).collect()
    }

    fn limits(&self) -> Arc<NodeLimits> {
        Arc::clone(&self.limits)
    }

    fn seen(&self) -> Arc<SeenFilter> {
        Arc::clone(&self.seen)
    }

    fn lan_addrs(&self) -> Arc<LanAddrs> {
        Arc::clone(&self.lan_addrs)
    }
}
