//! A handle on the running shards for the control interfaces (stdio and the admin API):
//! their command channels and wakers, and the node-wide peer directory.

use std::net::SocketAddr;
use std::sync::mpsc::{self, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use crate::node::shard::ShardCommand;
use crate::node::shared::NodeShared;
use setowire_core::proto::identity::Id8;
use setowire_core::swarm::lan_addrs::LanAddrs;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::peer::PeerInfo;

/// Why a command did not reach a shard, or got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("shard {0} has stopped")]
    ShardStopped(ShardId),
    #[error("shard {0} is too busy to take the command")]
    ShardBusy(ShardId),
    #[error("a shard did not answer")]
    NoAnswer,
    #[error("no such peer")]
    NoSuchPeer,
}

/// One shard's inbox.
pub struct ShardLink {
    pub commands: mpsc::SyncSender<ShardCommand>,
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

pub struct NodeHandle {
    shards: Vec<ShardLink>,
    cluster: Arc<NodeShared>,
}

impl NodeHandle {
    pub fn new(shards: Vec<ShardLink>, cluster: Arc<NodeShared>) -> Self {
        NodeHandle { shards, cluster }
    }

    /// Where the node keeps the LAN addresses peers announce.
    pub fn lan_addrs(&self) -> Arc<LanAddrs> {
        Arc::clone(&self.cluster.lan_addrs)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Ends every shard's current wait, e.g. so that each sees the node stop at once.
    pub fn wake_all(&self) {
        for link in &self.shards {
            (link.wake)();
        }
    }

    /// Queues `cmd` for `shard` (waiting while its inbox is full) and wakes it.
    pub fn to_shard(&self, shard: ShardId, cmd: ShardCommand) -> Result<(), RouteError> {
        let link = &self.shards[shard];
        link.commands
            .send(cmd)
            .map_err(|_| RouteError::ShardStopped(shard))?;
        (link.wake)();
        Ok(())
    }

    /// Like [`to_shard`](Self::to_shard) but never waits: for threads that must not stall
    /// behind a busy shard.
    pub fn try_to_shard(&self, shard: ShardId, cmd: ShardCommand) -> Result<(), RouteError> {
        let link = &self.shards[shard];
        link.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => RouteError::ShardBusy(shard),
            TrySendError::Disconnected(_) => RouteError::ShardStopped(shard),
        })?;
        (link.wake)();
        Ok(())
    }

    /// Queues a command for every shard; the first shard that could not take its command
    /// is the error, the others still get theirs.
    pub fn to_all(&self, mut cmd: impl FnMut() -> ShardCommand) -> Result<(), RouteError> {
        let mut result = Ok(());
        for shard in 0..self.shards.len() {
            let sent = self.to_shard(shard, cmd());
            result = result.and(sent);
        }
        result
    }

    /// Every shard's peers, each with its shard.
    pub fn peers(&self, timeout: Duration) -> Result<Vec<(ShardId, PeerInfo)>, RouteError> {
        let (tx, rx) = mpsc::sync_channel(self.shards.len());
        self.to_all(|| ShardCommand::Peers(tx.clone()))?;
        let mut peers = Vec::new();
        for _ in 0..self.shards.len() {
            let (shard, list) = rx.recv_timeout(timeout).map_err(|_| RouteError::NoAnswer)?;
            peers.extend(list.into_iter().map(|p| (shard, p)));
        }
        Ok(peers)
    }

    /// The shard holding `peer`'s session.
    pub fn locate(&self, peer: &Id8) -> Option<ShardId> {
        self.cluster.directory.shard_of(peer)
    }

    /// The address of the node's session with `peer`, as the node sees it.
    pub fn session_addr(&self, peer: &Id8) -> Option<SocketAddr> {
        self.cluster.directory.locate(peer).map(|at| at.addr)
    }

    /// Whether some shard has a session with a peer at `addr`.
    pub fn has_session_at(&self, addr: &SocketAddr) -> bool {
        self.cluster.directory.has_addr(addr)
    }

    /// Broadcasts `payload` from every shard; how many peers it went to.
    pub fn broadcast_counted(
        &self,
        payload: Arc<[u8]>,
        timeout: Duration,
    ) -> Result<usize, RouteError> {
        let (tx, rx) = mpsc::sync_channel(self.shards.len());
        self.to_all(|| ShardCommand::BroadcastCounted(Arc::clone(&payload), tx.clone()))?;
        // Only the shards hold senders now: one that drops its reply ends the wait at once.
        drop(tx);
        let mut total = 0;
        for _ in 0..self.shards.len() {
            total += rx.recv_timeout(timeout).map_err(|_| RouteError::NoAnswer)?;
        }
        Ok(total)
    }

    /// Fetches `key` through shard 0: the value, or `None` when no peer had it in time.
    pub fn fetch(&self, key: String, timeout: Duration) -> Result<Option<Vec<u8>>, RouteError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.to_shard(
            0,
            ShardCommand::FetchWait {
                key,
                timeout,
                reply: tx,
            },
        )?;
        rx.recv_timeout(timeout + Duration::from_secs(1))
            .map_err(|_| RouteError::NoAnswer)
    }
}
