//! What an engine that is one shard of a node tells the rest of the node.
//!
//! The engine queues these while it handles its inputs; the shard polls them with
//! [`crate::swarm::engine::Engine::poll_cluster_effect`] and carries them out: it updates the
//! node-wide index and value store, and hands [`ShardMessage`]s to the shards they name,
//! whose engines take them with
//! [`crate::swarm::engine::Engine::handle_shard_message`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::proto::identity::Id8;
use crate::swarm::node_view::{PeerLocation, ShardId};

/// One thing the rest of the node must learn or do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterEffect {
    /// A session completed on this shard.
    Connected(PeerLocation),
    /// A session of this shard ended (the peer may have reconnected on another shard since).
    Disconnected(PeerLocation),
    /// This shard started dialling `addr`: the answer may reach another shard.
    Dialing { addr: SocketAddr, at: Instant },
    /// Keep this value in the node's store.
    Store { key: String, value: Arc<[u8]> },
    /// Work for other shards' engines.
    Message {
        to: ShardTarget,
        message: ShardMessage,
    },
}

/// Which shards a [`ShardMessage`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardTarget {
    /// Every shard but the sender.
    Others,
    One(ShardId),
}

/// Work one shard asks of another shard's engine, about that shard's own peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardMessage {
    /// Flood this application data to your mesh (another shard delivered it already).
    Flood(Arc<[u8]>),
    /// Introduce `newcomer` to these peers of yours.
    Introduce {
        targets: Vec<Id8>,
        newcomer: PeerLocation,
    },
    /// Ask your mesh for this key too.
    Want(String),
    /// This key arrived in the node's store: a fetch of it waiting with you is complete.
    ValueArrived(String),
    /// List these peers of mine in your PEX round, each to at most as many of your peers as
    /// it paid for (see the engine's PEX round).
    Pex(Arc<[PexListing]>),
}

/// A peer to be listed in PEX, and to how many recipients, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexListing {
    pub peer: PeerLocation,
    pub recipients: u16,
}
