//! Engines talking to each other over the simulated network, with a virtual clock:
//! deterministic tests of the engine's behaviour.

mod hostile;
mod impaired;
mod network;
mod protocol;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::proto::identity::{Id8, Identity};
use crate::simnet::{HostId, NatId, SimConfig, SimNet};
use crate::swarm::config::EngineConfig;
use crate::swarm::engine::Engine;
use crate::swarm::event::Event;

/// Engines on a [`SimNet`], numbered in the order they were added.
struct Swarm {
    net: SimNet<Engine>,
    hosts: Vec<HostId>,
}

impl Swarm {
    /// `count` engines on the public network at 127.0.0.1:4000, 127.0.0.2:4000, ...
    fn new(count: usize, config: EngineConfig) -> Swarm {
        let mut swarm = Swarm::empty(0);
        for _ in 0..count {
            swarm.add_public(&config);
        }
        swarm
    }

    /// No engines yet; `seed` seeds the network's losses, delays and NAT ports.
    fn empty(seed: u64) -> Swarm {
        let config = SimConfig {
            seed,
            ..SimConfig::default()
        };
        Swarm {
            net: SimNet::new(Instant::now(), config),
            hosts: Vec::new(),
        }
    }

    /// The next engine on the public network, at 127.0.0.<its number + 1>:4000.
    fn add_public(&mut self, config: &EngineConfig) -> usize {
        let addr = SocketAddr::from(([127, 0, 0, self.hosts.len() as u8 + 1], 4000));
        let engine = self.next_engine(config);
        let host = self.net.add_host(addr, engine).expect("a free address");
        self.push(host)
    }

    /// The next engine, at `addr` on the private side of `nat`.
    fn add_behind(&mut self, nat: NatId, addr: SocketAddr, config: &EngineConfig) -> usize {
        let engine = self.next_engine(config);
        let host = self
            .net
            .add_host_behind(nat, addr, engine)
            .expect("a free address");
        self.push(host)
    }

    /// Engine number n has its own reproducible identity and random source.
    fn next_engine(&self, config: &EngineConfig) -> Engine {
        let n = self.hosts.len();
        let identity = Identity::from_seed(&[n as u8 + 1; 4]);
        let rng = StdRng::seed_from_u64(n as u64);
        Engine::with_rng(identity, config.clone(), self.net.now(), rng)
    }

    fn push(&mut self, host: HostId) -> usize {
        self.hosts.push(host);
        self.hosts.len() - 1
    }

    fn now(&self) -> Instant {
        self.net.now()
    }

    /// The engine's own address (a private one behind a NAT).
    fn addr(&self, i: usize) -> SocketAddr {
        self.net.addr(self.hosts[i])
    }

    fn id8(&self, i: usize) -> Id8 {
        self.net.host(self.hosts[i]).identity().id8()
    }

    fn engine(&mut self, i: usize) -> &mut Engine {
        self.net.host_mut(self.hosts[i])
    }

    /// Takes the engine off the network: it goes silent.
    fn remove(&mut self, i: usize) -> Engine {
        self.net
            .remove_host(self.hosts[i])
            .expect("removed only once")
    }

    /// Delivers every datagram in flight, and those they cause, until the network is quiet.
    fn settle(&mut self) {
        self.net.settle().expect("the network settles");
    }

    /// Runs the virtual clock forward: timers, and the network.
    fn advance(&mut self, by: Duration) {
        self.net.run_for(by).expect("the network keeps up");
    }

    /// Engine `a` dials `addr` and the network settles.
    fn dial(&mut self, a: usize, addr: SocketAddr) {
        let now = self.now();
        self.engine(a).dial(now, addr);
        self.settle();
    }

    /// Engine `a` dials engine `b` at its own address.
    fn connect(&mut self, a: usize, b: usize) {
        self.dial(a, self.addr(b));
    }

    fn take_events(&mut self, i: usize) -> Vec<Event> {
        self.net.take_events(self.hosts[i])
    }
}

fn connected_to(events: &[Event]) -> Vec<Id8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Connected { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

fn data_from(events: &[Event]) -> Vec<(Id8, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data { peer, payload } => Some((*peer, payload.clone())),
            _ => None,
        })
        .collect()
}
