//! The cross-shard side of a sharded node: a shared peer index (read-mostly, consulted off
//! the per-packet path) and one bounded inbox per shard for work on another shard's peers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use setowire_core::proto::identity::Id8;
use setowire_core::swarm::cluster::{Cluster, PeerIndex, PeerLocation, ShardId};
use setowire_core::swarm::engine::Engine;

/// Messages one shard waiting in another's inbox may hold at most; beyond that they are
/// dropped and counted (flooding is best-effort, as it is on the wire).
pub const INBOX_CAPACITY: usize = 65_536;

/// Work for a shard that concerns its own peers.
#[derive(Debug, Clone)]
pub enum ShardMsg {
    /// Flood this application data to your mesh (another shard delivered it).
    Flood(Arc<[u8]>),
    /// Introduce `newcomer` to these peers of yours.
    Introduce {
        targets: Vec<Id8>,
        newcomer: PeerLocation,
    },
    /// Ask your mesh for this key too.
    Want(String),
    /// This key arrived in the shared store.
    ValueArrived(String),
}

impl ShardMsg {
    /// Applies the message to the shard's engine.
    pub fn apply(self, engine: &mut Engine, now: Instant) {
        match self {
            ShardMsg::Flood(payload) => engine.flood_from_elsewhere(now, &payload),
            ShardMsg::Introduce { targets, newcomer } => {
                engine.introduce_from_elsewhere(&targets, newcomer)
            }
            ShardMsg::Want(key) => engine.want_from_elsewhere(now, &key),
            ShardMsg::ValueArrived(key) => engine.value_arrived_elsewhere(&key),
        }
    }
}

/// Wakes a shard that may be blocked waiting for datagrams.
pub type Wake = Box<dyn Fn() + Send + Sync>;

struct Inbox {
    queue: Mutex<VecDeque<ShardMsg>>,
    wake: Wake,
}

/// State shared by all shards of a node.
pub struct ClusterShared {
    index: RwLock<PeerIndex>,
    inboxes: Vec<Inbox>,
    /// Cross-shard messages dropped because an inbox was full.
    pub inbox_drops: AtomicU64,
}

impl ClusterShared {
    /// `wakers[i]` wakes shard `i`.
    pub fn new(wakers: Vec<Wake>, recent_cap: usize, dials_cap: usize) -> Arc<Self> {
        Arc::new(Self {
            index: RwLock::new(PeerIndex::new(recent_cap, dials_cap)),
            inboxes: wakers
                .into_iter()
                .map(|wake| Inbox {
                    queue: Mutex::new(VecDeque::new()),
                    wake,
                })
                .collect(),
            inbox_drops: AtomicU64::new(0),
        })
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// The handle shard `shard` gives its engine.
    pub fn handle(self: &Arc<Self>, shard: ShardId) -> NodeCluster {
        NodeCluster {
            shared: Arc::clone(self),
            shard,
        }
    }

    /// Takes every message waiting for `shard`.
    pub fn take_inbox(&self, shard: ShardId, into: &mut Vec<ShardMsg>) {
        let mut queue = lock(&self.inboxes[shard].queue);
        into.extend(queue.drain(..));
    }

    fn send(&self, shard: ShardId, msg: ShardMsg) {
        let inbox = &self.inboxes[shard];
        {
            let mut queue = lock(&inbox.queue);
            if queue.len() >= INBOX_CAPACITY {
                self.inbox_drops.fetch_add(1, Ordering::Relaxed);
                return;
            }
            queue.push_back(msg);
        }
        (inbox.wake)();
    }

    fn send_to_others(&self, from: ShardId, msg: impl Fn() -> ShardMsg) {
        for shard in (0..self.inboxes.len()).filter(|s| *s != from) {
            self.send(shard, msg());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, PeerIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, PeerIndex> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn peer_count(&self) -> usize {
        self.read().len()
    }

    pub fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.read().locate(id8)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One shard's view of the node.
pub struct NodeCluster {
    shared: Arc<ClusterShared>,
    shard: ShardId,
}

impl Cluster for NodeCluster {
    fn shard(&self) -> ShardId {
        self.shard
    }

    fn peer_count(&self) -> usize {
        self.shared.peer_count()
    }

    fn connected(&self, id8: Id8, addr: SocketAddr) {
        self.shared.write().insert(PeerLocation {
            id8,
            addr,
            shard: self.shard,
        });
    }

    fn disconnected(&self, id8: &Id8) {
        let mut index = self.shared.write();
        // Only the owning shard's record: the peer may have reconnected on another shard.
        if index.locate(id8).is_some_and(|p| p.shard == self.shard) {
            index.remove(id8);
        }
    }

    fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.shared.locate(id8)
    }

    fn is_connected_addr(&self, addr: &SocketAddr) -> bool {
        self.shared.read().has_addr(addr)
    }

    fn recent(&self, n: usize) -> Vec<PeerLocation> {
        self.shared.read().recent(n)
    }

    fn dialing(&self, addr: SocketAddr, now: Instant) {
        self.shared.write().note_dial(addr, now);
    }

    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.shared.read().is_dialing(addr, now)
    }

    fn flood_elsewhere(&self, payload: &[u8]) {
        if self.shared.shard_count() > 1 {
            let payload: Arc<[u8]> = Arc::from(payload);
            self.shared
                .send_to_others(self.shard, || ShardMsg::Flood(Arc::clone(&payload)));
        }
    }

    fn introduce_elsewhere(&self, shard: ShardId, targets: Vec<Id8>, newcomer: PeerLocation) {
        self.shared
            .send(shard, ShardMsg::Introduce { targets, newcomer });
    }

    fn want_elsewhere(&self, key: &str) {
        self.shared
            .send_to_others(self.shard, || ShardMsg::Want(key.to_owned()));
    }

    fn value_arrived(&self, key: &str) {
        self.shared
            .send_to_others(self.shard, || ShardMsg::ValueArrived(key.to_owned()));
    }
}
