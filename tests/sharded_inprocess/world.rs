//! The sharded node and the peers around it on one simulated network.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use setowire_core::proto::identity::{Id8, Identity};
use setowire_core::simnet::{HostId, SimConfig, SimHost, SimNet};
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;

use crate::sharded_node::ShardedNode;

const NODE: &str = "127.0.0.1:4000";

/// What sits at an address of the world: the node, or a peer (a plain engine).
pub enum Host {
    Node(ShardedNode),
    Peer(Box<Engine>),
}

impl Host {
    fn inner(&self) -> &dyn SimHost<Event = Event> {
        match self {
            Host::Node(node) => node,
            Host::Peer(engine) => &**engine,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn SimHost<Event = Event> {
        match self {
            Host::Node(node) => node,
            Host::Peer(engine) => &mut **engine,
        }
    }
}

impl SimHost for Host {
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        self.inner_mut().handle_datagram(now, src, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner_mut().handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner().poll_timeout()
    }

    fn drain_transmits(&mut self, sink: &mut dyn FnMut(SocketAddr, &[u8])) {
        self.inner_mut().drain_transmits(sink);
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.inner_mut().poll_event()
    }
}

pub struct World {
    pub net: SimNet<Host>,
    node: HostId,
    /// Peer `i` is at 127.0.1.<i + 1>:5000.
    peers: Vec<HostId>,
}

impl World {
    /// A node of `shards` shards and one peer per entry of `peer_shards` (the shard it lands
    /// on), on perfect links.
    pub fn new(
        shards: usize,
        peer_shards: &[usize],
        node: EngineConfig,
        peer: EngineConfig,
    ) -> World {
        let now = Instant::now();
        let mut net = SimNet::new(now, SimConfig::default());
        let peer_addrs: Vec<SocketAddr> = (0..peer_shards.len())
            .map(|i| format!("127.0.1.{}:5000", i + 1).parse().unwrap())
            .collect();
        let steering: HashMap<SocketAddr, usize> = peer_addrs
            .iter()
            .copied()
            .zip(peer_shards.iter().copied())
            .collect();
        let node = ShardedNode::new(
            &Identity::from_seed(b"node"),
            &node,
            now,
            shards,
            Box::new(move |src| *steering.get(&src).expect("a peer's datagram")),
        );
        let node = net.add_host(World::node_addr(), Host::Node(node)).unwrap();
        let peers = peer_addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| {
                let identity = Identity::from_seed(&[i as u8; 3]);
                let rng = StdRng::seed_from_u64(100 + i as u64);
                let engine = Engine::with_rng(identity, peer.clone(), now, rng);
                net.add_host(addr, Host::Peer(Box::new(engine))).unwrap()
            })
            .collect();
        World { net, node, peers }
    }

    pub fn node_addr() -> SocketAddr {
        NODE.parse().unwrap()
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    pub fn node(&mut self) -> &mut ShardedNode {
        match self.net.host_mut(self.node) {
            Host::Node(node) => node,
            Host::Peer(_) => unreachable!("the node's host is the node"),
        }
    }

    pub fn peer(&mut self, i: usize) -> &mut Engine {
        match self.net.host_mut(self.peers[i]) {
            Host::Peer(engine) => engine,
            Host::Node(_) => unreachable!("a peer's host is a peer"),
        }
    }

    pub fn peer_addr(&self, i: usize) -> SocketAddr {
        self.net.addr(self.peers[i])
    }

    pub fn id8(&mut self, peer: usize) -> Id8 {
        self.peer(peer).identity().id8()
    }

    /// Delivers every datagram in flight, and those they cause, until the network is quiet.
    pub fn settle(&mut self) {
        self.net.settle().expect("the network settles");
    }

    /// Runs the virtual clock forward: timers, and the network.
    pub fn advance(&mut self, by: Duration) {
        self.net.run_for(by).expect("the network keeps up");
    }

    /// Peer `i` dials the node.
    pub fn join(&mut self, i: usize) {
        let now = self.now();
        self.peer(i).dial(now, World::node_addr());
        self.settle();
    }

    /// The node's events, from every shard, since they were last taken.
    pub fn take_node_events(&mut self) -> Vec<Event> {
        self.net.take_events(self.node)
    }

    /// Peer `i`'s events since they were last taken.
    pub fn take_peer_events(&mut self, i: usize) -> Vec<Event> {
        self.net.take_events(self.peers[i])
    }

    /// The payloads of the data peer `i` received since its events were last taken.
    pub fn take_data_at_peer(&mut self, i: usize) -> Vec<Vec<u8>> {
        self.take_peer_events(i)
            .into_iter()
            .filter_map(|e| match e {
                Event::Data { payload, .. } => Some(payload),
                _ => None,
            })
            .collect()
    }
}
