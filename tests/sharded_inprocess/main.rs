//! A node of several shards (engines sharing one address, a peer index, a value store and
//! inboxes, as in the real runtime) and peers around it, stepped in one process over a
//! simulated network. Which shard a peer's datagrams reach is chosen per peer, as the
//! kernel's SO_REUSEPORT hash would.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use setowire_core::proto::frame::{Endpoint, Frame};
use setowire_core::proto::identity::{Id8, Identity};
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_view::NodeView;
use setowire_core::swarm::store::ValueStore;
use setowire_node::node::shared::NodeShared;

const NODE: &str = "127.0.0.1:4000";

struct World {
    now: Instant,
    shared: Arc<NodeShared>,
    shards: Vec<Engine>,
    /// Peer address → the shard its datagrams reach.
    steering: HashMap<SocketAddr, usize>,
    peers: Vec<(SocketAddr, Engine)>,
    wire: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    node_events: Vec<Event>,
    peer_events: Vec<Vec<Event>>,
}

impl World {
    /// A node of `shards` shards and one peer per entry of `peer_shards` (the shard it lands on).
    fn new(shards: usize, peer_shards: &[usize], node: EngineConfig, peer: EngineConfig) -> World {
        let now = Instant::now();
        let store = ValueStore::new(
            node.store_max_entries,
            node.store_max_bytes,
            node.store_max_value,
        );
        let shared = NodeShared::new(
            (0..shards).map(|_| Box::new(|| {}) as _).collect(),
            32,
            1024,
            store,
        );
        let identity = Identity::from_seed(b"node");
        let shard_engines = (0..shards)
            .map(|i| {
                Engine::for_shard(
                    identity.clone(),
                    node.clone(),
                    now,
                    StdRng::seed_from_u64(i as u64),
                    i,
                    Arc::clone(&shared) as Arc<dyn NodeView>,
                )
            })
            .collect();
        let mut steering = HashMap::new();
        let peers = peer_shards
            .iter()
            .enumerate()
            .map(|(i, shard)| {
                let addr: SocketAddr = format!("127.0.1.{}:5000", i + 1).parse().unwrap();
                steering.insert(addr, *shard);
                let identity = Identity::from_seed(&[i as u8; 3]);
                let rng = StdRng::seed_from_u64(100 + i as u64);
                (addr, Engine::with_rng(identity, peer.clone(), now, rng))
            })
            .collect();
        World {
            now,
            shared,
            shards: shard_engines,
            steering,
            peer_events: vec![Vec::new(); peer_shards.len()],
            peers,
            wire: VecDeque::new(),
            node_events: Vec::new(),
        }
    }

    fn node_addr() -> SocketAddr {
        NODE.parse().unwrap()
    }

    fn id8(&self, peer: usize) -> Id8 {
        self.peers[peer].1.identity().id8()
    }

    fn settle(&mut self) {
        let node = World::node_addr();
        for _ in 0..100_000 {
            let mut inbox = Vec::new();
            for (i, shard) in self.shards.iter_mut().enumerate() {
                self.shared.inboxes.take(i, &mut inbox);
                for message in inbox.drain(..) {
                    shard.handle_shard_message(self.now, message);
                }
                while let Some(effect) = shard.poll_cluster_effect() {
                    self.shared.apply(i, effect);
                }
                shard.drain_transmits(|dst, b| self.wire.push_back((node, dst, b.to_vec())));
            }
            for (addr, peer) in &mut self.peers {
                let src = *addr;
                peer.drain_transmits(|dst, b| self.wire.push_back((src, dst, b.to_vec())));
            }
            let Some((src, dst, bytes)) = self.wire.pop_front() else {
                break;
            };
            if dst == node {
                let shard = self.steering[&src];
                self.shards[shard].handle_datagram(self.now, src, &bytes);
                while let Some(effect) = self.shards[shard].poll_cluster_effect() {
                    self.shared.apply(shard, effect);
                }
            } else if let Some((_, peer)) = self.peers.iter_mut().find(|(a, _)| *a == dst) {
                peer.handle_datagram(self.now, src, &bytes);
            }
        }
        for shard in &mut self.shards {
            while let Some(e) = shard.poll_event() {
                self.node_events.push(e);
            }
        }
        for (i, (_, peer)) in self.peers.iter_mut().enumerate() {
            while let Some(e) = peer.poll_event() {
                self.peer_events[i].push(e);
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while self.now < end {
            self.now += Duration::from_millis(10);
            let now = self.now;
            for engine in self
                .shards
                .iter_mut()
                .chain(self.peers.iter_mut().map(|(_, e)| e))
            {
                if now >= engine.poll_timeout() {
                    engine.handle_timeout(now);
                }
            }
            self.settle();
        }
    }

    /// Peer `i` dials the node.
    fn join(&mut self, i: usize) {
        let now = self.now;
        self.peers[i].1.dial(now, World::node_addr());
        self.settle();
    }

    fn data_at_peer(&self, i: usize) -> Vec<Vec<u8>> {
        self.peer_events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Data { payload, .. } => Some(payload.clone()),
                _ => None,
            })
            .collect()
    }
}

fn quiet_peers() -> EngineConfig {
    EngineConfig {
        follow_introductions: false,
        ..EngineConfig::default()
    }
}

#[test]
fn peers_on_different_shards_are_introduced_to_each_other() {
    let mut w = World::new(2, &[0, 1], EngineConfig::default(), EngineConfig::default());
    w.join(0);
    w.join(1);
    w.advance(Duration::from_millis(200));
    assert_eq!(w.shards[0].peer_count(), 1);
    assert_eq!(w.shards[1].peer_count(), 1);
    let id1 = w.id8(1);
    assert!(
        w.peers[0].1.peer(&id1).is_some(),
        "peer 0 met peer 1 across shards"
    );
    assert_eq!(w.shared.peer_count(), 2);
}

#[test]
fn data_is_flooded_across_shards() {
    let mut w = World::new(2, &[0, 1, 1], EngineConfig::default(), quiet_peers());
    for i in 0..3 {
        w.join(i);
    }
    let node = w.shards[0].identity().id8();
    w.peers[0].1.send(&node, b"from shard 0").unwrap();
    w.settle();
    assert_eq!(w.data_at_peer(1), vec![b"from shard 0".to_vec()]);
    assert_eq!(w.data_at_peer(2), vec![b"from shard 0".to_vec()]);
    assert!(w.data_at_peer(0).is_empty());
    let delivered: usize = w
        .node_events
        .iter()
        .filter(|e| matches!(e, Event::Data { .. }))
        .count();
    assert_eq!(
        delivered, 1,
        "the node surfaces the data once, on the shard it arrived at"
    );
}

#[test]
fn a_dial_answered_on_another_shard_connects() {
    let mut w = World::new(2, &[1], EngineConfig::default(), quiet_peers());
    let (now, peer) = (w.now, w.peers[0].0);
    // Shard 0 dials, but the peer's answers reach shard 1.
    assert!(w.shards[0].dial(now, peer));
    w.settle();
    assert_eq!(w.shards[1].peer_count(), 1);
    assert_eq!(w.shards[0].peer_count(), 0);
    assert_eq!(w.peers[0].1.peer_count(), 1);
}

#[test]
fn relay_request_for_a_peer_on_another_shard() {
    let mut w = World::new(2, &[0, 1], EngineConfig::default(), quiet_peers());
    w.join(0);
    let (from, to) = (w.id8(1), w.id8(0));
    let request = Frame::RelayReq {
        from,
        to,
        endpoint: Endpoint {
            ip: "127.0.1.2",
            port: 5000,
        },
    }
    .to_vec()
    .unwrap();
    let (now, src) = (w.now, w.peers[1].0);
    // Peer 1 has no session; its request lands on shard 1, the target lives on shard 0.
    w.shards[1].handle_datagram(now, src, &request);
    assert_eq!(w.shards[1].stats().relay_forwards, 1);
    let mut sent = Vec::new();
    w.shards[1].drain_transmits(|dst, _| sent.push(dst));
    assert!(
        sent.contains(&w.peers[0].0) && sent.contains(&src),
        "{sent:?}"
    );
}

#[test]
fn store_and_forward_across_shards_after_the_owner_left() {
    let node = EngineConfig {
        store_forward: true,
        ..EngineConfig::default()
    };
    let mut w = World::new(2, &[0, 1], node, quiet_peers());
    w.join(0);
    w.peers[0].1.store("kept", b"value".to_vec());
    w.settle();
    let hub = w.shards[0].identity().id8();
    w.peers[0].1.disconnect(&hub);
    w.settle();
    w.join(1);
    let now = w.now;
    w.peers[1].1.fetch(now, "kept");
    w.settle();
    assert!(w.peer_events[1].contains(&Event::Fetched {
        key: "kept".into(),
        value: b"value".to_vec()
    }));
}

#[test]
fn a_fetch_on_one_shard_is_answered_by_a_peer_on_another() {
    let node = EngineConfig {
        store_forward: false,
        ..EngineConfig::default()
    };
    let mut w = World::new(2, &[1], node, quiet_peers());
    w.join(0);
    w.peers[0].1.store("remote", b"held on shard 1".to_vec());
    w.settle();
    let now = w.now;
    w.shards[0].fetch(now, "remote");
    w.settle();
    assert!(w.node_events.contains(&Event::Fetched {
        key: "remote".into(),
        value: b"held on shard 1".to_vec()
    }));
}
