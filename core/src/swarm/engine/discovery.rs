//! How peers learn of each other through this engine: gossip introductions when a peer
//! connects, periodic PEX lists, and relay introductions (RELAY_REQ → RELAY_FWD).

use std::net::SocketAddr;
use std::time::Instant;

use serde::Deserialize;

use crate::proto::frame::{encode_pex, Endpoint, Frame, PexEntries, PexEntry, PEX_MAX};
use crate::proto::identity::{decode_hex, encode_hex, Id8};
use crate::swarm::effects::{ShardMessage, ShardTarget};
use crate::swarm::engine::Engine;
use crate::swarm::node_view::{PeerLocation, ShardId};
use crate::swarm::stats::DropReason;

/// Peers sent a PEX list in one round; a larger table gets a random sample each round.
const PEX_RECIPIENTS_PER_ROUND: usize = 1024;

/// The JSON py-setowire sends as DATA to introduce a newly connected peer.
#[derive(Deserialize)]
struct Introduction {
    #[serde(rename = "_gossip")]
    gossip: bool,
    id: String,
    ip: String,
    port: u16,
}

impl Engine {
    /// Matchmaking: tells a newcomer about the peers that connected most recently (on any
    /// shard) and them about it, both with a gossip introduction (which py-setowire acts on)
    /// and with RELAY_FWD, so that peers which only know this node dial each other directly
    /// and punch through their NATs at the same time.
    pub(crate) fn introduce(&mut self, newcomer: &Id8) {
        let Some(new_addr) = self.peers.get(newcomer).map(|p| p.addr) else {
            return;
        };
        let me = PeerLocation {
            id8: *newcomer,
            addr: new_addr,
            shard: self.node.shard_id(),
        };
        let others: Vec<PeerLocation> = self
            .node
            .view()
            .recent(self.config.gossip_fanout + 1)
            .into_iter()
            .filter(|other| other.id8 != *newcomer)
            .take(self.config.gossip_fanout)
            .collect();
        let about_newcomer = introduction_json(newcomer, new_addr);
        let mut elsewhere: Vec<(ShardId, Vec<Id8>)> = Vec::new();
        for other in others {
            self.send_unsequenced(
                newcomer,
                introduction_json(&other.id8, other.addr).as_bytes(),
            );
            self.send_relay_fwd(new_addr, &other.id8, other.addr);
            self.send_relay_fwd(other.addr, newcomer, new_addr);
            if self.peers.contains_key(&other.id8) {
                self.send_unsequenced(&other.id8, about_newcomer.as_bytes());
            } else {
                match elsewhere
                    .iter_mut()
                    .find(|(shard, _)| *shard == other.shard)
                {
                    Some((_, ids)) => ids.push(other.id8),
                    None => elsewhere.push((other.shard, vec![other.id8])),
                }
            }
        }
        for (shard, targets) in elsewhere {
            let message = ShardMessage::Introduce {
                targets,
                newcomer: me,
            };
            self.node.send(ShardTarget::One(shard), message);
        }
    }

    /// Introduces a peer connected on another shard to some of this shard's peers.
    pub(crate) fn introduce_from_elsewhere(&mut self, targets: &[Id8], newcomer: PeerLocation) {
        let about = introduction_json(&newcomer.id8, newcomer.addr);
        for target in targets {
            self.send_unsequenced(target, about.as_bytes());
        }
    }

    /// RELAY_FWD to `dst`: "dial `from` at `at`". A control frame, so any shard may send it.
    fn send_relay_fwd(&mut self, dst: SocketAddr, from: &Id8, at: SocketAddr) {
        let ip = at.ip().to_string();
        self.send_frame(
            dst,
            &Frame::RelayFwd {
                from: *from,
                endpoint: Endpoint {
                    ip: &ip,
                    port: at.port(),
                },
            },
        );
    }

    /// RELAY_ANN to every peer of this shard, when this node relays and knows its address.
    pub(crate) fn announce_relay(&mut self) {
        let (true, Some(public)) = (self.config.relay, self.config.public_addr) else {
            return;
        };
        let ip = public.ip().to_string();
        let frame = Frame::RelayAnn {
            relay: self.id8,
            endpoint: Endpoint {
                ip: &ip,
                port: public.port(),
            },
        };
        let addrs: Vec<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
        for addr in addrs {
            self.send_frame(addr, &frame);
        }
    }

    /// Acts on an introduction if `json` is one; returns false for ordinary data, which the
    /// caller then delivers.
    pub(crate) fn on_gossip(&mut self, now: Instant, json: &[u8]) -> bool {
        const MARK: &[u8] = b"\"_gossip\"";
        if !json.windows(MARK.len()).any(|w| w == MARK) {
            return false;
        }
        let Ok(intro) = serde_json::from_slice::<Introduction>(json) else {
            return false;
        };
        if !intro.gossip {
            return false;
        }
        if self.config.follow_introductions {
            let id8 = intro.id.get(..16).and_then(decode_hex);
            let addr = intro
                .ip
                .parse()
                .ok()
                .map(|ip| SocketAddr::new(ip, intro.port));
            if let (Some(id8), Some(addr)) = (id8, addr) {
                let id8: Id8 = id8.try_into().expect("16 hex chars are 8 bytes");
                self.follow_introduction(now, &id8, addr);
            }
        }
        true
    }

    /// Dials a peer someone introduced, unless it is us, known, or not dialable.
    fn follow_introduction(&mut self, now: Instant, id8: &Id8, addr: SocketAddr) {
        if *id8 == self.id8
            || self.peers.contains_key(id8)
            || self.node.view().locate(id8).is_some()
            || addr.port() == 0
        {
            return;
        }
        self.dial(now, addr);
    }

    pub(crate) fn send_pex_round(&mut self) {
        if self.peers.is_empty() || self.node.peer_count() < 2 {
            return;
        }
        let known: Vec<(Id8, String, u16)> = self
            .node
            .view()
            .recent(PEX_MAX + 1)
            .into_iter()
            .map(|p| (p.id8, p.addr.ip().to_string(), p.addr.port()))
            .collect();
        let mut recipients: Vec<(Id8, SocketAddr)> =
            self.peers.iter().map(|(id, p)| (*id, p.addr)).collect();
        if recipients.len() > PEX_RECIPIENTS_PER_ROUND {
            let (sample, _) = rand::seq::SliceRandom::partial_shuffle(
                &mut recipients[..],
                &mut self.rng,
                PEX_RECIPIENTS_PER_ROUND,
            );
            recipients = sample.to_vec();
        }
        for (recipient, addr) in recipients {
            // Never list a peer to itself: py-setowire would dial itself.
            let entries = known
                .iter()
                .filter(|(id, _, _)| *id != recipient)
                .take(PEX_MAX)
                .map(|(id, ip, port)| PexEntry {
                    id: &id[..],
                    endpoint: Endpoint { ip, port: *port },
                });
            match self
                .out
                .push_with(addr, 2 + PEX_MAX * 60, |buf| encode_pex(entries, buf))
            {
                Ok(true) => {}
                _ => self.count_drop(DropReason::OutQueueFull),
            }
        }
    }

    pub(crate) fn on_pex(&mut self, now: Instant, src: SocketAddr, entries: PexEntries<'_>) {
        if !self.by_addr.contains_key(&src) {
            return self.count_drop(DropReason::UnknownPeer);
        }
        if !self.config.follow_introductions {
            return;
        }
        for entry in entries.entries().take(PEX_MAX) {
            let id8: Id8 = entry.id[..8]
                .try_into()
                .expect("PEX ids are at least 8 bytes");
            if let Some(addr) = entry.endpoint.socket_addr() {
                self.follow_introduction(now, &id8, addr);
            }
        }
    }

    /// A peer asks to be introduced to `to`: tell `to` to dial the requester at the address
    /// its request came from, and the requester where `to` is, so both punch at once.
    /// The observed source address is used rather than the one claimed in the request, so a
    /// request cannot aim a peer's HELLOs at a third party.
    pub(crate) fn on_relay_req(&mut self, src: SocketAddr, from: &Id8, to: &Id8) {
        if !self.config.relay {
            return self.count_drop(DropReason::RelayDisabled);
        }
        let target = self.peers.get(to).map(|p| p.addr);
        let Some(target_addr) = target.or_else(|| self.node.view().locate(to).map(|p| p.addr))
        else {
            return self.count_drop(DropReason::RelayUnknownTarget);
        };
        self.send_relay_fwd(target_addr, from, src);
        self.send_relay_fwd(src, to, target_addr);
        self.stats.relay_forwards += 1;
    }

    pub(crate) fn on_relay_fwd(
        &mut self,
        now: Instant,
        src: SocketAddr,
        from: &Id8,
        endpoint: Endpoint<'_>,
    ) {
        if !self.by_addr.contains_key(&src) {
            return self.count_drop(DropReason::UnknownPeer);
        }
        if !self.config.follow_introductions {
            return;
        }
        if let Some(addr) = endpoint.socket_addr() {
            self.follow_introduction(now, from, addr);
        }
    }
}

/// The introduction py-setowire understands: sent as the whole plaintext, without a seq,
/// because py-setowire looks for `{` before it strips one.
fn introduction_json(id8: &Id8, addr: SocketAddr) -> String {
    format!(
        "{{\"_gossip\":true,\"id\":\"{}\",\"ip\":\"{}\",\"port\":{}}}",
        encode_hex(id8),
        addr.ip(),
        addr.port()
    )
}
