//! What a node's shards share: the peer directory, the value store and the inboxes. It is
//! every engine's [`NodeView`], and each shard applies its engine's effects to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use setowire_core::proto::identity::Id8;
use setowire_core::swarm::dedupe::SeenFilter;
use setowire_core::swarm::effects::ClusterEffect;
use setowire_core::swarm::lan_addrs::LanAddrs;
use setowire_core::swarm::node_limits::NodeLimits;
use setowire_core::swarm::node_view::{NodeView, PeerLocation, ShardId};
use setowire_core::swarm::store::ValueStore;

use crate::node::directory::PeerDirectory;
use crate::node::inboxes::{ShardInboxes, Wake};
use crate::node::values::NodeValues;

pub struct NodeShared {
    pub directory: PeerDirectory,
    pub values: NodeValues,
    pub inboxes: ShardInboxes,
    /// Per-source limits and memory caps every shard charges.
    pub limits: Arc<NodeLimits>,
    /// Application data already delivered, by any shard.
    pub seen: Arc<SeenFilter>,
    /// LAN addresses announced to the HTTP bootstrap, for introductions behind one NAT.
    pub lan_addrs: Arc<LanAddrs>,
}

impl NodeShared {
    /// `wakers[i]` wakes shard `i`; `recent_cap`: the most recent peers an engine asks for;
    /// `dials_cap`: addresses being dialled at once.
    pub fn new(
        wakers: Vec<Wake>,
        recent_cap: usize,
        dials_cap: usize,
        store: ValueStore,
        limits: NodeLimits,
        seen: SeenFilter,
    ) -> Arc<Self> {
        Arc::new(Self {
            directory: PeerDirectory::new(wakers.len(), recent_cap, dials_cap),
            values: NodeValues::new(store),
            inboxes: ShardInboxes::new(wakers),
            limits: Arc::new(limits),
            seen: Arc::new(seen),
            lan_addrs: Arc::default(),
        })
    }

    /// Carries out what shard `shard`'s engine asked of the node.
    pub fn apply(&self, shard: ShardId, effect: ClusterEffect) {
        match effect {
            ClusterEffect::Connected(location) => self.directory.insert(location),
            ClusterEffect::Disconnected(location) => self.directory.remove(&location),
            ClusterEffect::Dialing { addr, at } => self.directory.note_dial(addr, at),
            ClusterEffect::Store { key, value } => {
                // The engine checked the store's limits already.
                self.values.insert(&key, value);
            }
            ClusterEffect::Message { to, message } => self.inboxes.send(shard, to, message),
        }
    }
}

impl NodeView for NodeShared {
    fn shards(&self) -> usize {
        self.inboxes.shard_count()
    }

    fn peer_count(&self) -> usize {
        self.directory.len()
    }

    fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.directory.locate(id8)
    }

    fn is_connected_addr(&self, addr: &SocketAddr) -> bool {
        self.directory.has_addr(addr)
    }

    fn recent(&self, n: usize) -> Vec<PeerLocation> {
        self.directory.recent(n)
    }

    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.directory.is_dialing(addr, now)
    }

    fn stored(&self, key: &str) -> Option<Arc<[u8]>> {
        self.values.get(key)
    }

    fn has_stored(&self, key: &str) -> bool {
        self.values.contains(key)
    }

    fn recent_keys(&self, n: usize) -> Vec<String> {
        self.values.recent_keys(n)
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
