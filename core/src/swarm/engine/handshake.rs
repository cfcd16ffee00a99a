//! Sessions begin and end: HELLO / HELLO_ACK, dialling, GOAWAY, and room in a full table.
//!
//! HELLO, HELLO_ACK and GOAWAY are cleartext and carry nothing a forger could not write, so a
//! forged one may not cost a live session anything lasting: a HELLO with another key from a
//! session's address is refused while that session is talking, a GOAWAY stops sending but
//! ends the session only if the peer then stays silent, and a HELLO naming a known key from
//! the address of another session is refused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::proto::frame::{Frame, Handshake, HANDSHAKE_LEN};
use crate::proto::identity::{peer_id_of, Id8};
use crate::proto::session::CryptoError;
use crate::ratelimit::{SourceGroup, TokenBucket};
use crate::swarm::budget::SendBudget;
use crate::swarm::engine::paced::INDUCED_DIAL_BYTES;
use crate::swarm::engine::{
    Dial, Engine, DIAL_HELLOS, DIAL_INTERVAL, DIAL_LINGER, DISPLACEABLE_AFTER, DISPLACEMENT_SAMPLE,
    KEY_CHANGE_SILENT_PINGS, LOST_SESSION_PINGS,
};
use crate::swarm::event::{DisconnectReason, Event};
use crate::swarm::peer::Peer;
use crate::swarm::stats::DropReason;

impl Engine {
    pub(crate) fn on_handshake(
        &mut self,
        now: Instant,
        src: SocketAddr,
        h: &Handshake,
        is_hello: bool,
    ) {
        if h.id8 == self.id8 {
            return self.count_drop(DropReason::SelfConnection);
        }
        let id = peer_id_of(&h.public_key);
        if id[..8] != h.id8 {
            return self.count_drop(DropReason::BadHandshakeId);
        }
        if self.peers.contains_key(&h.id8) {
            return self.on_known_handshake(now, src, &h.id8, is_hello);
        }
        if !is_hello && !self.dials.contains_key(&src) && !self.node.view().is_dialing(&src, now) {
            return self.count_drop(DropReason::UnsolicitedAck);
        }
        let previous = self.by_addr.get(&src).copied();
        if previous.is_some_and(|previous| !self.may_replace(now, &previous)) {
            return self.count_drop(DropReason::KeyChangeRefused);
        }
        // Refuse before the Diffie-Hellman, the one expensive step a stranger can trigger.
        if previous.is_none()
            && self.node.peer_count() >= self.config.max_peers
            && !self.make_room(now, src)
        {
            return self.count_drop(DropReason::PeerTableFull);
        }
        let millis = self.limit_millis(now);
        if !self.limits.handshakes.allow_at(src.ip(), millis, 1.0) {
            return self.count_drop(DropReason::HandshakeRate);
        }
        let session = match self.identity.derive_session(
            &h.public_key,
            &h.id8,
            self.config.first_send_counter,
        ) {
            Ok(session) => session,
            Err(CryptoError::SelfConnection) => return self.count_drop(DropReason::SelfConnection),
            Err(_) => return self.count_drop(DropReason::WeakKey),
        };
        if let Some(previous) = previous {
            self.remove_peer(&previous, DisconnectReason::Replaced);
        }
        self.dials.remove(&src);
        let rate = TokenBucket::full(self.config.session_rate, self.clock.nanos(now));
        let budget = SendBudget::after_receiving(HANDSHAKE_LEN);
        self.peers.insert(
            h.id8,
            Box::new(Peer::new(id, src, session, rate, budget, now)),
        );
        self.by_addr.insert(src, h.id8);
        if is_hello {
            self.send_paid(&h.id8, src, &self.handshake(false));
        }
        self.node.connected(h.id8, src);
        self.stats.handshakes += 1;
        if self.mesh_size < self.mesh_degree {
            self.set_mesh(&h.id8, true);
        }
        self.emit(Event::Connected {
            peer: h.id8,
            addr: src,
        });
        self.introduce(&h.id8);
        self.queue_have_summary(&h.id8);
        self.resume(&h.id8);
    }

    /// A handshake from a peer with a session: a dialer repeats HELLO to punch through NATs
    /// (answer each, connect once), a HELLO_ACK may answer a credit probe, and a new address
    /// becomes the peer's alias.
    fn on_known_handshake(&mut self, now: Instant, src: SocketAddr, id8: &Id8, is_hello: bool) {
        let owner = self.by_addr.get(&src).copied();
        if owner.is_some_and(|owner| owner != *id8) {
            // Another session's address: a forger's, since no NAT hands one address out twice.
            return self.count_drop(DropReason::KeyChangeRefused);
        }
        let Some(peer) = self.peers.get_mut(id8) else {
            return;
        };
        peer.last_seen = now;
        if owner.is_none() {
            if let Some(old) = peer.alias.replace(src) {
                self.by_addr.remove(&old);
            }
            peer.alias_budget = SendBudget::after_receiving(HANDSHAKE_LEN);
            self.by_addr.insert(src, *id8);
        }
        if is_hello {
            self.send_paid(id8, src, &self.handshake(false));
        } else {
            self.probe_answered(id8);
        }
    }

    /// A GOAWAY from `src`: if it is a session's address, stop sending there; the heartbeat
    /// ends the session unless the peer talks again within [`super::GOAWAY_GRACE`].
    pub(crate) fn on_goaway(&mut self, now: Instant, src: SocketAddr) {
        let Some(id8) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peers.get_mut(&id8) else {
            return;
        };
        if peer.addr == src {
            peer.goaway_at = Some(now);
            // Its mesh place goes to a peer that stays; the heartbeat tops the mesh up.
            self.set_mesh(&id8, false);
        }
    }

    /// Whether a HELLO with another key may replace the session `previous` at its address:
    /// only once it has gone silent, for two ping intervals, or for a little over one since it
    /// said GOAWAY (a peer that is still there would have sent its PING by then, which also
    /// takes the GOAWAY back).
    fn may_replace(&self, now: Instant, previous: &Id8) -> bool {
        let Some(p) = self.peers.get(previous) else {
            return true;
        };
        let interval = self.config.ping_interval;
        match p.goaway_at {
            Some(at) => now.saturating_duration_since(at.max(p.last_seen)) >= interval * 6 / 5,
            None => {
                now.saturating_duration_since(p.last_seen) >= interval * KEY_CHANGE_SILENT_PINGS
            }
        }
    }

    /// Our HELLO (when dialling or probing) or HELLO_ACK (when answering a HELLO).
    fn handshake(&self, is_hello: bool) -> Frame<'static> {
        let h = Handshake {
            id8: self.id8,
            public_key: *self.identity.public_key(),
        };
        if is_hello {
            Frame::Hello(h)
        } else {
            Frame::HelloAck(h)
        }
    }

    pub(crate) fn send_handshake(&mut self, dst: SocketAddr, is_hello: bool) {
        let frame = self.handshake(is_hello);
        self.send_frame(dst, &frame);
    }

    /// Ends one session of this shard so that a newcomer from `src` fits in a full table.
    /// Candidates, from a sample of the table: sessions of a source group that holds more
    /// sessions in the sample than the newcomer's does (more than their share), then sessions
    /// that never carried application data and are old enough to have. Among them the group
    /// with most sessions goes first, then the one silent longest.
    pub(crate) fn make_room(&mut self, now: Instant, src: SocketAddr) -> bool {
        let grouping = self.grouping;
        let sample: Vec<(Id8, SourceGroup, bool, Instant)> = self
            .peers
            .iter()
            .take(DISPLACEMENT_SAMPLE)
            .map(|(id, p)| {
                let idle = p.score == 0
                    && now.saturating_duration_since(p.connected_at) >= DISPLACEABLE_AFTER;
                (*id, grouping.group_of(p.addr.ip()), idle, p.last_seen)
            })
            .collect();
        let mut per_group: HashMap<SourceGroup, usize> = HashMap::new();
        for (_, group, _, _) in &sample {
            *per_group.entry(*group).or_default() += 1;
        }
        let newcomer_share = per_group
            .get(&grouping.group_of(src.ip()))
            .copied()
            .unwrap_or(0);
        let victim = sample
            .iter()
            .filter(|(_, group, idle, _)| {
                let held = per_group[group];
                (held > 1 && held > newcomer_share + 1) || *idle
            })
            .max_by_key(|(_, group, idle, last_seen)| {
                (per_group[group], *idle, std::cmp::Reverse(*last_seen))
            })
            .map(|(id, ..)| *id);
        let Some(victim) = victim else {
            return false;
        };
        self.remove_peer(&victim, DisconnectReason::Displaced);
        self.stats.peers_displaced += 1;
        true
    }

    /// Starts dialling `addr`: HELLO now and up to seven more times until answered.
    /// Returns false when already connected there, already sending HELLOs there, or the dial
    /// table is full. A dial whose HELLOs all went unanswered starts again: the node there
    /// may have been down, and a bootstrap node is dialled until it answers.
    pub fn dial(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if self.by_addr.contains_key(&addr) || self.node.view().is_connected_addr(&addr) {
            return false;
        }
        self.start_dial(now, addr)
    }

    /// A PONG naming another identity came from `src`, the address of `owner`'s session:
    /// once that session has been silent long enough to be replaced by a new key (see
    /// [`Self::may_replace`]), dial `src` so that whoever answers there now (the peer,
    /// restarted with a new identity) gets a session. A live peer keeps its session: it is
    /// not silent, and a HELLO to it only gets its own HELLO_ACK back. The HELLOs are paid
    /// from the session's credit at `src`, like anything else the node sends there.
    pub(crate) fn redial_if_replaced(&mut self, now: Instant, src: SocketAddr, owner: &Id8) {
        let dialling = self
            .dials
            .get(&src)
            .is_some_and(|dial| dial.hellos_left > 0);
        if dialling || !self.may_replace(now, owner) {
            return;
        }
        if !self.spend(owner, src, INDUCED_DIAL_BYTES) {
            return self.count_drop(DropReason::AddressBudget);
        }
        self.start_dial(now, src);
    }

    /// Dials again the peers that answer our PINGs but have stopped sending their own (see
    /// [`LOST_SESSION_PINGS`]): they restarted with the same identity and have no session
    /// with us. The HELLO re-creates theirs; ours stays, as its keys are the same. A dial
    /// at a time per peer, paid from its credit; a peer that kept its session only answers
    /// HELLO_ACK.
    pub(crate) fn redial_lost_sessions(&mut self, now: Instant) {
        let silent = self.config.ping_interval * LOST_SESSION_PINGS;
        let answering = self.config.ping_interval * KEY_CHANGE_SILENT_PINGS;
        let lost: Vec<(Id8, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.goaway_at.is_none()
                    && now.saturating_duration_since(p.last_own_ping) >= silent
                    && now.saturating_duration_since(p.last_seen) < answering
                    && !self.dials.contains_key(&p.addr)
            })
            .map(|(id, p)| (*id, p.addr))
            .collect();
        for (id, addr) in lost {
            if self.spend(&id, addr, INDUCED_DIAL_BYTES) {
                self.start_dial(now, addr);
            } else {
                self.count_drop(DropReason::AddressBudget);
            }
        }
    }

    fn start_dial(&mut self, now: Instant, addr: SocketAddr) -> bool {
        if self
            .dials
            .get(&addr)
            .is_some_and(|dial| dial.hellos_left > 0)
        {
            return false;
        }
        if !self.dials.contains_key(&addr) && self.dials.len() >= self.config.max_dials {
            self.count_drop(DropReason::DialTableFull);
            return false;
        }
        self.node.dialing(addr, now);
        self.dials.insert(
            addr,
            Dial {
                hellos_left: DIAL_HELLOS - 1,
                next_at: now + DIAL_INTERVAL,
            },
        );
        self.send_handshake(addr, true);
        true
    }

    pub(crate) fn run_dials(&mut self, now: Instant) {
        if self.dials.is_empty() {
            return;
        }
        let mut due = Vec::new();
        self.dials.retain(|addr, dial| {
            if dial.next_at > now {
                return true;
            }
            if dial.hellos_left == 0 {
                return false;
            }
            dial.hellos_left -= 1;
            dial.next_at = now
                + if dial.hellos_left == 0 {
                    DIAL_LINGER
                } else {
                    DIAL_INTERVAL
                };
            due.push(*addr);
            true
        });
        for addr in due {
            self.send_handshake(addr, true);
        }
    }
}
