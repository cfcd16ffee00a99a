//! What the simulated network needs from whatever sits at an address.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use crate::dht::Dht;
use crate::swarm::engine::Engine;
use crate::swarm::event::Event;

/// Anything that lives at one address of a [`SimNet`](crate::simnet::SimNet): it takes
/// datagrams and the passage of time, and hands out datagrams and events.
///
/// Only datagrams and time cross this boundary, so a host may be more than one engine: a
/// sharded node steering each source to one of its shards is a host too.
pub trait SimHost {
    /// What the host reports; the network collects these per host.
    type Event;

    /// A datagram from `src` arrived at `now`.
    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]);

    /// The time [`SimHost::poll_timeout`] asked for has come.
    fn handle_timeout(&mut self, now: Instant);

    /// When the host next wants [`SimHost::handle_timeout`], if ever. A time in the past is
    /// handled at once; it must move on once handled, or the network spins on it until its
    /// step bound.
    fn poll_timeout(&self) -> Option<Instant>;

    /// Hands each datagram the host wants sent, with its destination, to `sink`.
    fn drain_transmits(&mut self, sink: &mut dyn FnMut(SocketAddr, &[u8]));

    fn poll_event(&mut self) -> Option<Self::Event>;
}

impl SimHost for Engine {
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        Engine::handle_datagram(self, now, src, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Engine::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(Engine::poll_timeout(self))
    }

    fn drain_transmits(&mut self, sink: &mut dyn FnMut(SocketAddr, &[u8])) {
        Engine::drain_transmits(self, sink);
    }

    fn poll_event(&mut self) -> Option<Event> {
        Engine::poll_event(self)
    }
}

impl SimHost for Dht {
    /// A DHT node reports nothing but its answers; what it learnt is in its table and store.
    type Event = Infallible;

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        // A malformed datagram is counted in the node's stats.
        Dht::handle_datagram(self, now, src, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Dht::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(Dht::poll_timeout(self))
    }

    fn drain_transmits(&mut self, sink: &mut dyn FnMut(SocketAddr, &[u8])) {
        Dht::drain_transmits(self, sink);
    }

    fn poll_event(&mut self) -> Option<Infallible> {
        None
    }
}
