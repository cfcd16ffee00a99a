//! How an engine reaches the rest of its node: directly when it is the whole node, through a
//! read-only view and a queue of effects when it is one shard.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::proto::identity::Id8;
use crate::swarm::effects::{ClusterEffect, ShardMessage, ShardTarget};
use crate::swarm::node_view::{NodeView, PeerLocation, ShardId};
use crate::swarm::single_node::SingleNode;
use crate::swarm::store::ValueLimits;

pub(crate) enum NodeLink {
    /// The engine is the whole node and keeps its index and store itself.
    Single(Box<SingleNode>),
    Shard(ShardLink),
}

pub(crate) struct ShardLink {
    shard: ShardId,
    view: Arc<dyn NodeView>,
    limits: ValueLimits,
    effects: VecDeque<ClusterEffect>,
    /// Sessions connected minus sessions ended among the queued effects: the view does not
    /// count them yet, the node-wide peer limit must.
    unpublished_peers: isize,
}

impl NodeLink {
    pub(crate) fn shard(shard: ShardId, view: Arc<dyn NodeView>, limits: ValueLimits) -> NodeLink {
        NodeLink::Shard(ShardLink {
            shard,
            view,
            limits,
            effects: VecDeque::new(),
            unpublished_peers: 0,
        })
    }

    pub(crate) fn view(&self) -> &dyn NodeView {
        match self {
            NodeLink::Single(node) => &**node,
            NodeLink::Shard(link) => &*link.view,
        }
    }

    pub(crate) fn shard_id(&self) -> ShardId {
        match self {
            NodeLink::Single(_) => 0,
            NodeLink::Shard(link) => link.shard,
        }
    }

    /// Peers connected across the node, including this shard's not yet published.
    pub(crate) fn peer_count(&self) -> usize {
        match self {
            NodeLink::Single(node) => node.index.len(),
            NodeLink::Shard(link) => {
                (link.view.peer_count() as isize + link.unpublished_peers).max(0) as usize
            }
        }
    }

    /// Up to `n` peers, most recently connected first, this shard's not yet published
    /// included: two peers whose handshakes land in one receive batch are each other's most
    /// recent, and would otherwise never be introduced to each other.
    pub(crate) fn recent(&self, n: usize) -> Vec<PeerLocation> {
        let NodeLink::Shard(link) = self else {
            return self.view().recent(n);
        };
        let mut recent: Vec<PeerLocation> = link
            .effects
            .iter()
            .rev()
            .filter_map(|effect| match effect {
                ClusterEffect::Connected(location) => Some(*location),
                _ => None,
            })
            .take(n)
            .collect();
        let unpublished = recent.len();
        for location in link.view.recent(n) {
            if recent.len() >= n {
                break;
            }
            if !recent[..unpublished].iter().any(|r| r.id8 == location.id8) {
                recent.push(location);
            }
        }
        recent
    }

    pub(crate) fn connected(&mut self, id8: Id8, addr: SocketAddr) {
        let location = PeerLocation {
            id8,
            addr,
            shard: self.shard_id(),
        };
        match self {
            NodeLink::Single(node) => node.index.insert(location),
            NodeLink::Shard(link) => {
                link.unpublished_peers += 1;
                link.effects.push_back(ClusterEffect::Connected(location));
            }
        }
    }

    pub(crate) fn disconnected(&mut self, id8: Id8, addr: SocketAddr) {
        match self {
            NodeLink::Single(node) => node.index.remove(&id8),
            NodeLink::Shard(link) => {
                link.unpublished_peers -= 1;
                link.effects
                    .push_back(ClusterEffect::Disconnected(PeerLocation {
                        id8,
                        addr,
                        shard: link.shard,
                    }));
            }
        }
    }

    pub(crate) fn dialing(&mut self, addr: SocketAddr, at: Instant) {
        match self {
            NodeLink::Single(node) => node.index.note_dial(addr, at),
            NodeLink::Shard(link) => link.effects.push_back(ClusterEffect::Dialing { addr, at }),
        }
    }

    /// Keeps a value in the node's store; false when the store's limits refuse it.
    pub(crate) fn store(&mut self, key: &str, value: Arc<[u8]>) -> bool {
        match self {
            NodeLink::Single(node) => node.store.insert(key, value),
            NodeLink::Shard(link) => {
                if !link.limits.admits(key, value.len()) {
                    return false;
                }
                link.effects.push_back(ClusterEffect::Store {
                    key: key.to_owned(),
                    value,
                });
                true
            }
        }
    }

    /// Whether there are other shards to send work to (messages are built only then).
    pub(crate) fn has_other_shards(&self) -> bool {
        self.view().shards() > 1
    }

    pub(crate) fn send(&mut self, to: ShardTarget, message: ShardMessage) {
        if let NodeLink::Shard(link) = self {
            if link.view.shards() > 1 {
                link.effects
                    .push_back(ClusterEffect::Message { to, message });
            }
        }
    }

    pub(crate) fn poll_effect(&mut self) -> Option<ClusterEffect> {
        let NodeLink::Shard(link) = self else {
            return None;
        };
        let effect = link.effects.pop_front()?;
        match effect {
            ClusterEffect::Connected(_) => link.unpublished_peers -= 1,
            ClusterEffect::Disconnected(_) => link.unpublished_peers += 1,
            _ => {}
        }
        Some(effect)
    }
}
