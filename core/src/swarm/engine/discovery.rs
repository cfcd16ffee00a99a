//! How peers learn of each other through this engine: gossip introductions when a peer
//! connects, periodic PEX lists, and relay introductions (RELAY_REQ → RELAY_FWD).

use std::net::SocketAddr;
use std::time::Instant;

use serde::Deserialize;

use crate::proto::frame::{encode_pex, Endpoint, Frame, PexEntries, PexEntry, PEX_MAX};
use crate::proto::identity::{decode_hex, encode_hex, Id8};
use crate::proto::session::DATA_OVERHEAD;
use crate::swarm::budget::FRAME_OVERHEAD;
use crate::swarm::effects::{PexListing, ShardMessage, ShardTarget};
use crate::swarm::engine::paced::INDUCED_DIAL_BYTES;
use crate::swarm::engine::Engine;
use crate::swarm::node_view::{PeerLocation, ShardId};
use crate::swarm::peer::Pending;
use crate::swarm::stats::DropReason;

/// Relay requests a peer may have waiting for its credit; a further one replaces the oldest.
const RELAY_REQUESTS_PENDING_MAX: usize = 4;
/// Listings a shard pays for in advance, per other shard, for each of its recent peers in a
/// PEX round.
const CROSS_SHARD_LISTINGS: usize = 8;
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
    /// The LAN address, when the introducer saw both peers behind one public IP.
    #[serde(default)]
    lip: Option<String>,
    #[serde(default)]
    lport: Option<u16>,
}

impl Engine {
    /// Matchmaking: tells a newcomer about the peers that connected most recently (on any
    /// shard) and them about it, both with a gossip introduction (which py-setowire acts on)
    /// and with RELAY_FWD, so that peers which only know this node dial each other directly
    /// and punch through their NATs at the same time (tests/nat.rs measured that introducing
    /// one side a round trip early does not help behind masquerade without a firewall). Two
    /// peers behind one public IP are also given each other's announced LAN addresses
    /// (py-setowire dials both). Introductions are paid from both sides' send credit, with
    /// the HELLOs each side will send the other; the newcomer's wait for it.
    pub(crate) fn introduce(&mut self, newcomer: &Id8) {
        if self.config.gossip_fanout == 0 {
            return;
        }
        if let Some(p) = self.peers.get_mut(newcomer) {
            p.pending_mut().introductions_left = self.config.gossip_fanout;
            self.pending_peers.insert(*newcomer);
        }
    }

    /// Makes as many of the newcomer's pending introductions as its credit pays for.
    pub(crate) fn introduce_within_credit(&mut self, newcomer: &Id8, pending: &mut Pending) {
        let Some(new_addr) = self.peers.get(newcomer).map(|p| p.addr) else {
            return;
        };
        let me = PeerLocation {
            id8: *newcomer,
            addr: new_addr,
            shard: self.node.shard_id(),
        };
        let candidates: Vec<PeerLocation> = self
            .node
            .recent(self.config.gossip_fanout + 1 + pending.introduced.len())
            .into_iter()
            .filter(|other| other.id8 != *newcomer && !pending.introduced.contains(&other.id8))
            .take(pending.introductions_left)
            .collect();
        let mut elsewhere: Vec<(ShardId, Vec<Id8>)> = Vec::new();
        let mut ran_out_of_credit = false;
        for other in candidates {
            let lan = self.lan_addr_for(&other.id8, other.addr, new_addr);
            let to_newcomer = introduction_json(&other.id8, other.addr, lan);
            let cost_to_newcomer = introduction_cost(&to_newcomer, other.addr);
            if self.credit(newcomer, new_addr) < cost_to_newcomer {
                ran_out_of_credit = true;
                break;
            }
            pending.introduced.push(other.id8);
            pending.introductions_left -= 1;
            if self.peers.contains_key(&other.id8) {
                self.tell_about(&other.id8, me);
            } else {
                match elsewhere
                    .iter_mut()
                    .find(|(shard, _)| *shard == other.shard)
                {
                    Some((_, ids)) => ids.push(other.id8),
                    None => elsewhere.push((other.shard, vec![other.id8])),
                }
            }
            self.spend(newcomer, new_addr, cost_to_newcomer);
            self.send_unsequenced(newcomer, to_newcomer.as_bytes());
            self.send_relay_fwd(new_addr, &other.id8, other.addr);
        }
        if !ran_out_of_credit {
            // Everyone there is to introduce was: later newcomers introduce themselves.
            pending.introductions_left = 0;
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
        for target in targets {
            self.tell_about(target, newcomer);
        }
    }

    /// Tells `target` (a peer of this shard) about `newcomer`, now or when its credit has
    /// grown enough.
    fn tell_about(&mut self, target: &Id8, newcomer: PeerLocation) {
        let Some(p) = self.peers.get_mut(target) else {
            return;
        };
        let queue = &mut p.pending_mut().tell_about;
        if queue.len() >= self.config.gossip_fanout.max(1) {
            queue.pop_front();
            self.stats.count_drop(DropReason::AddressBudget);
        }
        queue.push_back((newcomer.id8, newcomer.addr));
        self.pending_peers.insert(*target);
        self.resume(target);
    }

    /// Sends `target` the introductions queued for it that its credit pays for.
    pub(crate) fn tell_within_credit(&mut self, target: &Id8, pending: &mut Pending) {
        let Some(addr) = self.peers.get(target).map(|p| p.addr) else {
            return;
        };
        while let Some(&(id8, at)) = pending.tell_about.front() {
            let about = introduction_json(&id8, at, self.lan_addr_for(&id8, at, addr));
            if !self.spend(target, addr, introduction_cost(&about, at)) {
                return;
            }
            pending.tell_about.pop_front();
            self.send_unsequenced(target, about.as_bytes());
            self.send_relay_fwd(addr, &id8, at);
        }
    }

    /// Where the peer at `to` can reach `id8` (at `at`) inside their network, when both are
    /// behind the same public IP and `id8` announced a LAN address from it.
    fn lan_addr_for(&self, id8: &Id8, at: SocketAddr, to: SocketAddr) -> Option<SocketAddr> {
        let public = at.ip().to_canonical();
        (public == to.ip().to_canonical())
            .then(|| self.lan_addrs.behind(id8, public, self.last_now))
            .flatten()
    }

    /// RELAY_FWD to `dst`: "dial `from` at `at`". Paid for by the caller.
    fn send_relay_fwd(&mut self, dst: SocketAddr, from: &Id8, at: SocketAddr) {
        let ip = at.ip().to_string();
        self.send_frame(dst, &relay_fwd(from, &ip, at.port()));
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
        let addrs: Vec<(Id8, SocketAddr)> =
            self.peers.iter().map(|(id, p)| (*id, p.addr)).collect();
        for (peer, addr) in addrs {
            self.send_paid(&peer, addr, &frame);
        }
    }

    /// Acts on an introduction if `json` is one; returns false for ordinary data, which the
    /// caller then delivers.
    pub(crate) fn on_gossip(&mut self, now: Instant, from: Introducer, json: &[u8]) -> bool {
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
            let lan = match (intro.lip.map(|ip| ip.parse()), intro.lport) {
                (Some(Ok(ip)), Some(port)) => Some(SocketAddr::new(ip, port)),
                _ => None,
            };
            if let (Some(id8), Some(addr)) = (id8, addr) {
                let id8: Id8 = id8.try_into().expect("16 hex chars are 8 bytes");
                // Both, the LAN address first: from inside the same NAT, the public address
                // is rarely reached (few NATs hairpin).
                for at in lan.into_iter().chain([addr]) {
                    self.follow_introduction(now, from, &id8, at);
                }
            }
        }
        true
    }

    /// Dials a peer someone introduced, unless it is us, known, or not dialable. The HELLOs
    /// go to an address the introducer chose, so they are paid from the introducer's credit:
    /// introductions cannot aim more at a third party than the introducer sent.
    fn follow_introduction(&mut self, now: Instant, from: Introducer, id8: &Id8, addr: SocketAddr) {
        if *id8 == self.id8
            || self.peers.contains_key(id8)
            || self.node.view().locate(id8).is_some()
            || addr.port() == 0
            || self.dials.contains_key(&addr)
            || self.node.view().is_dialing(&addr, now)
        {
            return;
        }
        if !self.spend(&from.peer, from.addr, INDUCED_DIAL_BYTES) {
            return self.count_drop(DropReason::AddressBudget);
        }
        self.dial(now, addr);
    }

    /// The PEX round: a list of recent peers to each peer. A listed peer will be dialled by
    /// every recipient that does not know it, eight HELLOs each, so each listing is paid from
    /// the listed peer's credit. A shard lists its own recent peers to its own peers, each to
    /// as many as its credit covers, and pays in advance for a few listings on every other
    /// shard, which lists them to its peers ([`ShardMessage::Pex`]).
    pub(crate) fn send_pex_round(&mut self) {
        if self.node.peer_count() < 2 {
            return;
        }
        let local: Vec<PeerLocation> = self
            .node
            .recent(PEX_MAX + 1)
            .into_iter()
            .filter(|p| {
                self.peers
                    .get(&p.id8)
                    .is_some_and(|p| p.goaway_at.is_none())
            })
            .collect();
        let mut here: Vec<PexListing> = local
            .iter()
            .map(|&peer| PexListing {
                peer,
                recipients: u16::MAX,
            })
            .collect();
        self.send_pex_lists(&mut here, true);
        let others = self.node.view().shards().saturating_sub(1);
        if others == 0 {
            return;
        }
        let elsewhere: Vec<PexListing> = local
            .iter()
            .filter_map(|&peer| {
                let credit = self.credit(&peer.id8, peer.addr);
                let affordable = credit.saturating_sub(FRAME_OVERHEAD) / INDUCED_DIAL_BYTES;
                let per_shard = affordable.min(CROSS_SHARD_LISTINGS * others) / others;
                let paid = per_shard * others;
                (per_shard > 0 && self.spend(&peer.id8, peer.addr, paid * INDUCED_DIAL_BYTES))
                    .then_some(PexListing {
                        peer,
                        recipients: per_shard as u16,
                    })
            })
            .collect();
        if !elsewhere.is_empty() {
            self.node
                .send(ShardTarget::Others, ShardMessage::Pex(elsewhere.into()));
        }
    }

    /// Sends this shard's peers (a sample of them on a large shard) PEX lists of `listings`:
    /// `pay_now` charges each listing to the listed peer (one of this shard's), otherwise each
    /// is listed to at most its prepaid number of recipients. Every recipient pays for its
    /// list; peers that said GOAWAY are leaving and get none.
    pub(crate) fn send_pex_lists(&mut self, listings: &mut [PexListing], pay_now: bool) {
        if listings.is_empty() {
            return;
        }
        let ips: Vec<String> = listings
            .iter()
            .map(|l| l.peer.addr.ip().to_string())
            .collect();
        let mut recipients: Vec<(Id8, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.goaway_at.is_none())
            .map(|(id, p)| (*id, p.addr))
            .collect();
        // In a new order each round: listings are limited by the listed peers' credit, and a
        // fixed order would hand them to the same recipients every time.
        rand::seq::SliceRandom::shuffle(&mut recipients[..], &mut self.rng);
        recipients.truncate(PEX_RECIPIENTS_PER_ROUND);
        let mut listed = Vec::with_capacity(PEX_MAX);
        for (recipient, addr) in recipients {
            // Never list a peer to itself: py-setowire would dial itself.
            listed.clear();
            for (index, listing) in listings.iter_mut().enumerate() {
                if listed.len() == PEX_MAX {
                    break;
                }
                let peer = listing.peer;
                if peer.id8 == recipient || listing.recipients == 0 {
                    continue;
                }
                let paid = if pay_now {
                    self.spend(&peer.id8, peer.addr, INDUCED_DIAL_BYTES)
                } else {
                    listing.recipients -= 1;
                    true
                };
                if paid {
                    listed.push(index);
                }
            }
            if listed.is_empty() {
                continue;
            }
            let entries = listed.iter().map(|&index| PexEntry {
                id: &listings[index].peer.id8[..],
                endpoint: Endpoint {
                    ip: &ips[index],
                    port: listings[index].peer.addr.port(),
                },
            });
            let len = 2 + entries
                .clone()
                .map(|e| 4 + e.id.len() + e.endpoint.ip.len())
                .sum::<usize>();
            if !self.spend(&recipient, addr, len) {
                self.count_drop(DropReason::AddressBudget);
                continue;
            }
            match self
                .out
                .push_with(addr, len, |buf| encode_pex(entries, buf))
            {
                Ok(true) => {}
                _ => self.count_drop(DropReason::OutQueueFull),
            }
        }
    }

    pub(crate) fn on_pex(&mut self, now: Instant, src: SocketAddr, entries: PexEntries<'_>) {
        let Some(peer) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        if !self.config.follow_introductions {
            return;
        }
        let from = Introducer { peer, addr: src };
        for entry in entries.entries().take(PEX_MAX) {
            let id8: Id8 = entry.id[..8]
                .try_into()
                .expect("PEX ids are at least 8 bytes");
            if let Some(addr) = entry.endpoint.socket_addr() {
                self.follow_introduction(now, from, &id8, addr);
            }
        }
    }

    /// A peer asks to be introduced to `to`: tell `to` to dial the requester at the address
    /// its request came from, and the requester where `to` is, so both punch at once.
    /// Only a peer with a session may ask, and it pays, from its credit, for both RELAY_FWDs
    /// and for the HELLOs the target will send it; a request its credit does not cover yet
    /// waits for it.
    pub(crate) fn on_relay_req(&mut self, src: SocketAddr, to: &Id8) {
        if !self.config.relay {
            return self.count_drop(DropReason::RelayDisabled);
        }
        let Some(requester) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let Some(p) = self.peers.get_mut(&requester) else {
            return;
        };
        let requests = &mut p.pending_mut().relay_requests;
        if !requests.contains(&(*to, src)) {
            if requests.len() >= RELAY_REQUESTS_PENDING_MAX {
                requests.pop_front();
                self.stats.count_drop(DropReason::AddressBudget);
            }
            requests.push_back((*to, src));
        }
        self.pending_peers.insert(requester);
        self.resume(&requester);
    }

    /// Answers the relay requests of `requester` that its credit pays for.
    pub(crate) fn relay_within_credit(&mut self, requester: &Id8, pending: &mut Pending) {
        while let Some(&(to, src)) = pending.relay_requests.front() {
            let target = self.peers.get(&to).map(|p| p.addr);
            let Some(target_addr) = target.or_else(|| self.node.view().locate(&to).map(|p| p.addr))
            else {
                pending.relay_requests.pop_front();
                self.count_drop(DropReason::RelayUnknownTarget);
                continue;
            };
            let cost = relay_fwd_len(src)
                + relay_fwd_len(target_addr)
                + FRAME_OVERHEAD
                + INDUCED_DIAL_BYTES;
            if !self.spend(requester, src, cost) {
                return;
            }
            pending.relay_requests.pop_front();
            // The observed source address, not the one claimed in the request, so that a
            // request cannot aim the target's HELLOs at a third party.
            self.send_relay_fwd(target_addr, requester, src);
            self.send_relay_fwd(src, &to, target_addr);
            self.stats.relay_forwards += 1;
        }
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
        let Some(peer) = self.by_addr.get(&src).copied() else {
            return;
        };
        if let Some(addr) = endpoint.socket_addr() {
            self.follow_introduction(now, Introducer { peer, addr: src }, from, addr);
        }
    }
}

/// The peer, and the address, an introduction came from: its credit pays for the dial.
#[derive(Clone, Copy)]
pub(crate) struct Introducer {
    pub peer: Id8,
    pub addr: SocketAddr,
}

fn relay_fwd<'a>(from: &Id8, ip: &'a str, port: u16) -> Frame<'a> {
    Frame::RelayFwd {
        from: *from,
        endpoint: Endpoint { ip, port },
    }
}

fn relay_fwd_len(at: SocketAddr) -> usize {
    relay_fwd(&[0; 8], &at.ip().to_string(), at.port()).encoded_len()
}

/// What one side of an introduction is sent, and made to receive: the gossip DATA, the
/// RELAY_FWD, and the HELLOs of the peer it is introduced to (at one address: py-setowire
/// sends those at a LAN address inside the NAT both peers are behind).
fn introduction_cost(json: &str, about: SocketAddr) -> usize {
    // Two frames: the spend charges one frame's overhead, this the other's.
    DATA_OVERHEAD + json.len() + relay_fwd_len(about) + FRAME_OVERHEAD + INDUCED_DIAL_BYTES
}

/// The introduction py-setowire understands: sent as the whole plaintext, without a seq,
/// because py-setowire looks for `{` before it strips one. `lan`, if given, goes in
/// `lip`/`lport`, which py-setowire dials together with `ip`/`port`.
fn introduction_json(id8: &Id8, addr: SocketAddr, lan: Option<SocketAddr>) -> String {
    let lan = lan.map_or_else(String::new, |lan| {
        format!(",\"lip\":\"{}\",\"lport\":{}", lan.ip(), lan.port())
    });
    format!(
        "{{\"_gossip\":true,\"id\":\"{}\",\"ip\":\"{}\",\"port\":{}{lan}}}",
        encode_hex(id8),
        addr.ip(),
        addr.port()
    )
}
