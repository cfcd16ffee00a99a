//! A deterministic simulated network for sans-IO hosts such as the [`Engine`].
//!
//! Hosts ([`SimHost`]) live at addresses, on the public network or behind a NAT box
//! ([`NatConfig`]: RFC 4787 mapping and filtering, mapping timeouts, port allocation). The path
//! between two IP addresses is a [`Link`] that may lose, delay, reorder and duplicate
//! datagrams. Time is virtual: it starts at an `Instant` the caller chooses and moves only as
//! the network runs, and every random choice comes from one seeded generator, so a run with
//! the same seed and the same hosts repeats exactly.
//!
//! The network runs one step at a time, in time order: a datagram arrives, or a host's
//! timeout comes. After each step the host's transmits are put on the wire and its events
//! collected. Everything is bounded: the datagrams in flight, the events kept per host and
//! the steps one call may take ([`SimConfig`]).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rand::{rngs::StdRng, SeedableRng};
//! use setowire_core::proto::identity::Identity;
//! use setowire_core::simnet::{Link, SimConfig, SimNet};
//! use setowire_core::swarm::{config::EngineConfig, engine::Engine, event::Event};
//!
//! let start = Instant::now();
//! let mut net = SimNet::new(start, SimConfig::default());
//! net.set_default_link(Link { latency: Duration::from_millis(20), ..Link::PERFECT })?;
//! let engine = |seed: u8| {
//!     let identity = Identity::from_seed(&[seed; 4]);
//!     Engine::with_rng(identity, EngineConfig::default(), start, StdRng::seed_from_u64(0))
//! };
//! let alice = net.add_host("10.0.0.1:4000".parse()?, engine(1))?;
//! let bob = net.add_host("10.0.0.2:4000".parse()?, engine(2))?;
//!
//! let (now, bob_addr) = (net.now(), net.addr(bob));
//! net.host_mut(alice).dial(now, bob_addr);
//! net.settle()?;
//! assert!(net.take_events(bob).iter().any(|e| matches!(e, Event::Connected { .. })));
//! assert_eq!(net.elapsed(), Duration::from_millis(40), "HELLO there, HELLO_ACK back");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Engine`]: crate::swarm::engine::Engine

mod clock;
mod counters;
mod host;
mod link;
mod nat;
mod route;
mod run;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

pub use counters::Counters;
pub use host::SimHost;
pub use link::Link;
pub use nat::{Dependency, NatConfig, PortAllocation};

use clock::VirtualClock;
use link::Links;
use nat::Nat;
use wire::Wire;

/// A host of a [`SimNet`], as [`SimNet::add_host`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostId(usize);

/// A NAT box of a [`SimNet`], as [`SimNet::add_nat`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NatId(usize);

/// The seed and the bounds of a [`SimNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimConfig {
    /// Seeds every random choice: loss, delays, duplication, NAT ports.
    pub seed: u64,
    /// Datagrams on the wire at once; more are dropped and counted.
    pub max_in_flight: usize,
    /// Steps one [`SimNet::run_until`] or [`SimNet::settle`] may take before giving up.
    pub max_steps: usize,
    /// Events kept per host until taken; more are dropped and counted.
    pub max_events_per_host: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            max_in_flight: 65_536,
            max_steps: 1_000_000,
            max_events_per_host: 65_536,
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("{0} is already taken by a host")]
    AddressInUse(SocketAddr),
    #[error("{0} is already taken by a NAT or a host")]
    IpInUse(IpAddr),
    #[error("probability {0} is not within 0..=1")]
    InvalidProbability(f64),
    #[error("still busy after {0} steps")]
    StepLimit(usize),
}

/// One host, where it is, and the events it reported that nobody took yet.
struct HostSlot<H: SimHost> {
    addr: SocketAddr,
    /// The NAT whose private side the host is on; `None` on the public network.
    network: Option<NatId>,
    host: H,
    events: Vec<H::Event>,
}

impl<H: SimHost> HostSlot<H> {
    fn collect_events(&mut self, cap: usize, counters: &mut Counters) {
        while let Some(event) = self.host.poll_event() {
            if self.events.len() < cap {
                self.events.push(event);
            } else {
                counters.events_dropped += 1;
            }
        }
    }
}

/// A simulated network of hosts of type `H`. See the [module documentation](self).
pub struct SimNet<H: SimHost> {
    config: SimConfig,
    clock: VirtualClock,
    rng: StdRng,
    /// Indexed by [`HostId`]; `None` once removed, so ids stay valid.
    hosts: Vec<Option<HostSlot<H>>>,
    by_addr: HashMap<SocketAddr, HostId>,
    /// Indexed by [`NatId`].
    nats: Vec<Nat>,
    links: Links,
    wire: Wire,
    counters: Counters,
    /// The transmits of the host being drained; kept to reuse its allocation.
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    /// Bytes hosts sent toward each watched IP (see [`SimNet::watch`]).
    watched: HashMap<IpAddr, u64>,
}

impl<H: SimHost> SimNet<H> {
    /// An empty network whose virtual clock starts at `start`, with perfect links.
    pub fn new(start: Instant, config: SimConfig) -> Self {
        Self {
            clock: VirtualClock::new(start),
            rng: StdRng::seed_from_u64(config.seed),
            hosts: Vec::new(),
            by_addr: HashMap::new(),
            nats: Vec::new(),
            links: Links::default(),
            wire: Wire::new(config.max_in_flight),
            counters: Counters::default(),
            outbox: Vec::new(),
            watched: HashMap::new(),
            config,
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// Puts `host` on the public network at `addr`.
    pub fn add_host(&mut self, addr: SocketAddr, host: H) -> Result<HostId, SimError> {
        self.insert_host(addr, None, host)
    }

    /// Puts `host` on the private side of `nat` at `addr`. Private addresses share one
    /// address space across all NATs, so give each private side its own range.
    pub fn add_host_behind(
        &mut self,
        nat: NatId,
        addr: SocketAddr,
        host: H,
    ) -> Result<HostId, SimError> {
        self.insert_host(addr, Some(nat), host)
    }

    /// A NAT box whose public side is `public_ip`; put hosts behind it with
    /// [`SimNet::add_host_behind`].
    pub fn add_nat(&mut self, public_ip: IpAddr, config: NatConfig) -> Result<NatId, SimError> {
        if self.ip_in_use(public_ip) {
            return Err(SimError::IpInUse(public_ip));
        }
        self.nats.push(Nat::new(public_ip, config));
        Ok(NatId(self.nats.len() - 1))
    }

    /// Takes a host off the network (datagrams still on their way to it are unroutable);
    /// `None` if it was removed already.
    pub fn remove_host(&mut self, id: HostId) -> Option<H> {
        let slot = self.hosts.get_mut(id.0)?.take()?;
        self.by_addr.remove(&slot.addr);
        Some(slot.host)
    }

    /// # Panics
    /// If the host was removed.
    pub fn host(&self, id: HostId) -> &H {
        &self.slot(id).host
    }

    /// For commands to the host; what it queues is sent when the network next runs.
    ///
    /// # Panics
    /// If the host was removed.
    pub fn host_mut(&mut self, id: HostId) -> &mut H {
        &mut self.slot_mut(id).host
    }

    /// The host's own address (a private one behind a NAT).
    ///
    /// # Panics
    /// If the host was removed.
    pub fn addr(&self, id: HostId) -> SocketAddr {
        self.slot(id).addr
    }

    /// The events the host reported since they were last taken, including any it has
    /// queued since the network last ran.
    ///
    /// # Panics
    /// If the host was removed.
    pub fn take_events(&mut self, id: HostId) -> Vec<H::Event> {
        let cap = self.config.max_events_per_host;
        let slot = self.hosts[id.0].as_mut().expect("host was removed");
        slot.collect_events(cap, &mut self.counters);
        std::mem::take(&mut slot.events)
    }

    /// The link between addresses that were not given one with [`SimNet::set_link`].
    pub fn set_default_link(&mut self, link: Link) -> Result<(), SimError> {
        link.validate()?;
        self.links.set_default(link);
        Ok(())
    }

    /// The link between `a` and `b`, both ways. A host behind a NAT reaches the outside
    /// from the NAT's public IP, so that is the address its outside links are set for.
    pub fn set_link(&mut self, a: IpAddr, b: IpAddr, link: Link) -> Result<(), SimError> {
        link.validate()?;
        self.links.set(a, b, link);
        Ok(())
    }

    /// Counts from now on the bytes hosts send toward `ip` (which need not be a host's: a
    /// forged source's, say), for [`SimNet::bytes_sent_to`].
    pub fn watch(&mut self, ip: IpAddr) {
        self.watched.entry(ip).or_insert(0);
    }

    /// Bytes hosts sent toward a watched IP, whether or not anything received them.
    pub fn bytes_sent_to(&self, ip: IpAddr) -> u64 {
        self.watched.get(&ip).copied().unwrap_or(0)
    }

    /// Puts a datagram on the public network as if `src` had sent it (an attacker forging
    /// its source): it arrives at `dst` now, whatever the links do.
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, bytes: Vec<u8>) {
        let now = self.now();
        self.put_on_wire(
            now,
            wire::Datagram {
                src,
                dst,
                network: None,
                bytes,
            },
        );
    }

    pub fn counters(&self) -> Counters {
        Counters {
            in_flight: self.wire.len() as u64,
            ..self.counters
        }
    }

    fn insert_host(
        &mut self,
        addr: SocketAddr,
        network: Option<NatId>,
        host: H,
    ) -> Result<HostId, SimError> {
        if self.by_addr.contains_key(&addr) {
            return Err(SimError::AddressInUse(addr));
        }
        if self.nat_at(addr.ip()).is_some() {
            return Err(SimError::IpInUse(addr.ip()));
        }
        let id = HostId(self.hosts.len());
        self.hosts.push(Some(HostSlot {
            addr,
            network,
            host,
            events: Vec::new(),
        }));
        self.by_addr.insert(addr, id);
        Ok(id)
    }

    fn ip_in_use(&self, ip: IpAddr) -> bool {
        self.nat_at(ip).is_some() || self.by_addr.keys().any(|addr| addr.ip() == ip)
    }

    /// The NAT whose public side is `ip`.
    fn nat_at(&self, ip: IpAddr) -> Option<NatId> {
        self.nats
            .iter()
            .position(|nat| nat.public_ip() == ip)
            .map(NatId)
    }

    fn slot(&self, id: HostId) -> &HostSlot<H> {
        self.hosts[id.0].as_ref().expect("host was removed")
    }

    fn slot_mut(&mut self, id: HostId) -> &mut HostSlot<H> {
        self.hosts[id.0].as_mut().expect("host was removed")
    }
}
