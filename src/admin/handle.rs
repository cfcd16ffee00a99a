//! A handle on the running shards for the control interfaces (stdio and the admin API):
//! their command channels and wakers, and the cluster's peer index.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::node::shard::ShardCommand;
use crate::node::shared::NodeShared;
use setowire_core::proto::identity::Id8;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::peer::PeerInfo;

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

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Queues `cmd` for `shard` (waiting while its inbox is full) and wakes it. False when
    /// the shard has stopped.
    pub fn to_shard(&self, shard: ShardId, cmd: ShardCommand) -> bool {
        let link = &self.shards[shard];
        let sent = link.commands.send(cmd).is_ok();
        if sent {
            (link.wake)();
        }
        sent
    }

    pub fn to_all(&self, mut cmd: impl FnMut() -> ShardCommand) {
        for shard in 0..self.shards.len() {
            self.to_shard(shard, cmd());
        }
    }

    /// Every shard's peers, each with its shard.
    pub fn peers(&self, timeout: Duration) -> Result<Vec<(ShardId, PeerInfo)>, String> {
        let (tx, rx) = mpsc::sync_channel(self.shards.len());
        self.to_all(|| ShardCommand::Peers(tx.clone()));
        let mut peers = Vec::new();
        for _ in 0..self.shards.len() {
            match rx.recv_timeout(timeout) {
                Ok((shard, list)) => peers.extend(list.into_iter().map(|p| (shard, p))),
                Err(_) => return Err("a shard did not answer".to_owned()),
            }
        }
        Ok(peers)
    }

    /// The shard holding `peer`'s session.
    pub fn locate(&self, peer: &Id8) -> Option<ShardId> {
        self.cluster.directory.shard_of(peer)
    }

    pub fn peer_count(&self) -> usize {
        self.cluster.directory.len()
    }

    /// Broadcasts `payload` from every shard; how many peers it went to.
    pub fn broadcast_counted(&self, payload: Arc<[u8]>, timeout: Duration) -> usize {
        let (tx, rx) = mpsc::sync_channel(self.shards.len());
        self.to_all(|| ShardCommand::BroadcastCounted(Arc::clone(&payload), tx.clone()));
        drop(tx);
        let mut total = 0;
        for _ in 0..self.shards.len() {
            match rx.recv_timeout(timeout) {
                Ok(n) => total += n,
                Err(_) => break,
            }
        }
        total
    }

    /// Fetches `key` through shard 0: `Some(Some(value))`, `Some(None)` when no peer had it
    /// in time, `None` when the shard did not answer.
    pub fn fetch(&self, key: String, timeout: Duration) -> Option<Option<Vec<u8>>> {
        let (tx, rx) = mpsc::sync_channel(1);
        if !self.to_shard(
            0,
            ShardCommand::FetchWait {
                key,
                timeout,
                reply: tx,
            },
        ) {
            return None;
        }
        rx.recv_timeout(timeout + Duration::from_secs(1)).ok()
    }
}
