//! Where a datagram goes: within a private side, out through its NAT, across a link, and in
//! through the destination's NAT.

use std::net::SocketAddr;
use std::time::Instant;

use crate::simnet::link::Fate;
use crate::simnet::wire::Datagram;
use crate::simnet::{HostId, NatId, SimHost, SimNet};

impl<H: SimHost> SimNet<H> {
    /// Sends a datagram from host `from`: translated by its NAT unless it stays on the
    /// private side, then lost, delayed or duplicated by the link.
    pub(super) fn transmit(&mut self, from: HostId, dst: SocketAddr, bytes: Vec<u8>) {
        self.counters.sent += 1;
        if let Some(watched) = self.watched.get_mut(&dst.ip()) {
            *watched += bytes.len() as u64;
        }
        let now = self.now();
        let slot = self.slot(from);
        let (own, network) = (slot.addr, slot.network);
        let (src, network) = match network {
            Some(_) if self.host_on(dst, network).is_some() => (own, network),
            Some(nat) => {
                let nat = &mut self.nats[nat.0];
                if dst.ip() == nat.public_ip() {
                    // Hairpinning is not modelled.
                    self.counters.unroutable += 1;
                    return;
                }
                match nat.outbound(now, own, dst, &mut self.rng) {
                    Some(external) => (external, None),
                    None => {
                        self.counters.nat_ports_exhausted += 1;
                        return;
                    }
                }
            }
            None => (own, None),
        };
        match self.links.between(src.ip(), dst.ip()).fate(&mut self.rng) {
            Fate::Lost => self.counters.lost += 1,
            Fate::Arrives { after, copy_after } => {
                let datagram = |bytes| Datagram {
                    src,
                    dst,
                    network,
                    bytes,
                };
                if let Some(copy_after) = copy_after {
                    self.counters.duplicated += 1;
                    self.put_on_wire(now + after, datagram(bytes.clone()));
                    self.put_on_wire(now + copy_after, datagram(bytes));
                } else {
                    self.put_on_wire(now + after, datagram(bytes));
                }
            }
        }
    }

    pub(super) fn put_on_wire(&mut self, at: Instant, datagram: Datagram) {
        if !self.wire.push(at, datagram) {
            self.counters.wire_full += 1;
        }
    }

    /// Hands an arriving datagram to its host, through the NAT it reached if any.
    pub(super) fn arrive(&mut self, datagram: Datagram) {
        let now = self.now();
        let (dst, network) = match (datagram.network, self.nat_at(datagram.dst.ip())) {
            (None, Some(nat)) => {
                let inside = self.nats[nat.0].inbound(now, datagram.src, datagram.dst.port());
                match inside {
                    Some(internal) => (internal, Some(nat)),
                    None => {
                        self.counters.nat_filtered += 1;
                        return;
                    }
                }
            }
            (network, _) => (datagram.dst, network),
        };
        let Some(id) = self.host_on(dst, network) else {
            self.counters.unroutable += 1;
            return;
        };
        self.counters.delivered += 1;
        self.slot_mut(id)
            .host
            .handle_datagram(now, datagram.src, &datagram.bytes);
        self.drain(id);
    }

    /// The host at `addr` if it is on `network` (a NAT's private side, or the public one).
    fn host_on(&self, addr: SocketAddr, network: Option<NatId>) -> Option<HostId> {
        let id = *self.by_addr.get(&addr)?;
        (self.slot(id).network == network).then_some(id)
    }
}
