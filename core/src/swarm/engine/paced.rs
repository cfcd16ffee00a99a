//! Sending within each address's budget (see `crate::swarm::budget`): frames paid for from
//! the credit of the address they go to, work that waits until that credit has grown, and the
//! probe that grows it.
//!
//! A peer earns credit with every datagram its address sends. An honest peer that is owed
//! more than it has earned (a stored value it asked for, its introductions) is sent HELLOs:
//! every Setowire implementation answers a HELLO from a known peer with a HELLO_ACK, which
//! earns three times its size, so an address that receives pays for what it is sent within a
//! few round trips. An address that does not receive (a forged source) answers nothing, and
//! the probes themselves are paid from its credit: the bytes it gets stay within three times
//! what was sent from it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::frame::{Chunk, Frame, HANDSHAKE_LEN, PONG_LEN};
use crate::proto::identity::Id8;
use crate::swarm::budget::FRAME_OVERHEAD;
use crate::swarm::engine::{Engine, DIAL_HELLOS};
use crate::swarm::peer::ValueSend;
use crate::swarm::pieces::{pieces, CHUNK_PIECE_LEN};
use crate::swarm::stats::DropReason;

/// What introducing a peer makes it send toward the peer it is introduced to: a dial of
/// eight HELLOs (py-setowire dials each introduced peer once, however many times it is told).
pub(crate) const INDUCED_DIAL_BYTES: usize = DIAL_HELLOS as usize * HANDSHAKE_LEN;
/// Probes sent at once, at most, to a peer whose pending work its credit does not cover.
/// Each round answered earns three times what it cost, so credit grows round trip after
/// round trip (values use a third of it) until this cap.
const PROBES_PER_ROUND: usize = 256;
/// A round of probes not half answered by then is written off (they were lost, or dropped
/// by the peer's rate limit), so that lost answers do not stall the peer's work.
pub(crate) const PROBE_ROUND_TIMEOUT: Duration = Duration::from_millis(250);
/// Credit probes leave untouched, so that a PING that came with what started them (in one
/// BATCH) still gets its PONG.
const REPLY_RESERVE: usize = PONG_LEN + FRAME_OVERHEAD;
/// Values a peer may be waiting for at once; a further WANT replaces the oldest.
const VALUES_PENDING_MAX: usize = 4;

impl Engine {
    /// Takes `bytes` from the credit of `dst`, which must be an address of `peer`; false
    /// when the credit is short.
    pub(crate) fn spend(&mut self, peer: &Id8, dst: SocketAddr, bytes: usize) -> bool {
        self.peers
            .get_mut(peer)
            .and_then(|p| p.budget_of(dst))
            .is_some_and(|budget| budget.try_spend(bytes))
    }

    /// Credit left at `dst`, an address of `peer`.
    pub(crate) fn credit(&mut self, peer: &Id8, dst: SocketAddr) -> usize {
        self.peers
            .get_mut(peer)
            .and_then(|p| p.budget_of(dst))
            .map_or(0, |budget| budget.available())
    }

    /// Queues a control frame for `dst`, an address of `peer`, if its credit pays for it.
    /// Otherwise the frame is dropped and counted.
    pub(crate) fn send_paid(&mut self, peer: &Id8, dst: SocketAddr, frame: &Frame<'_>) -> bool {
        if !self.spend(peer, dst, frame.encoded_len()) {
            self.count_drop(DropReason::AddressBudget);
            return false;
        }
        self.send_frame(dst, frame);
        true
    }

    /// `peer` asked for the stored value `key` from `dst`: sent as its credit allows.
    pub(crate) fn queue_value(&mut self, peer: &Id8, dst: SocketAddr, key: &str) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let values = &mut p.pending_mut().values;
        if values.iter().any(|v| v.key == key && v.dst == dst) {
            return;
        }
        if values.len() >= VALUES_PENDING_MAX {
            values.pop_front();
        }
        values.push_back(ValueSend {
            key: key.to_owned(),
            dst,
            next: 0,
        });
        self.pending_peers.insert(*peer);
        self.resume(peer);
    }

    /// The HAVE summary a newcomer gets, once its credit covers it.
    pub(crate) fn queue_have_summary(&mut self, peer: &Id8) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.pending_mut().have_summary = true;
            self.pending_peers.insert(*peer);
        }
    }

    /// Does what `peer`'s credit now pays for of its pending work; probes for more credit
    /// when work is left.
    pub(crate) fn resume(&mut self, peer: &Id8) {
        let Some(pending) = self.peers.get_mut(peer).and_then(|p| p.pending.take()) else {
            self.pending_peers.remove(peer);
            return;
        };
        // What the peer asked for first (values, relay requests), then matchmaking, then the
        // summary of stored keys nobody asked for yet.
        let mut pending = pending;
        while let Some(mut value) = pending.values.pop_front() {
            if !self.send_value_pieces(peer, &mut value) {
                pending.values.push_front(value);
                break;
            }
        }
        self.relay_within_credit(peer, &mut pending);
        self.tell_within_credit(peer, &mut pending);
        if pending.introductions_left > 0 {
            self.introduce_within_credit(peer, &mut pending);
        }
        if pending.have_summary {
            pending.have_summary = !self.send_have_summary(peer);
        }
        let Some(p) = self.peers.get_mut(peer) else {
            self.pending_peers.remove(peer);
            return;
        };
        // Introducing this peer may have queued work for it meanwhile (another peer's
        // introductions name it): keep that too.
        if let Some(queued) = p.pending.take() {
            pending.absorb(*queued);
            let fanout = self.config.gossip_fanout.max(1);
            trim_front(&mut pending.tell_about, fanout);
            trim_front(&mut pending.values, VALUES_PENDING_MAX);
            trim_front(&mut pending.relay_requests, VALUES_PENDING_MAX);
        }
        if pending.is_empty() {
            p.pending = None;
            self.pending_peers.remove(peer);
        } else {
            p.pending = Some(pending);
            self.probe(peer);
        }
    }

    /// Resumes every peer with pending work (on the heartbeat, when credit from PINGs and
    /// PONGs has come in).
    pub(crate) fn resume_all(&mut self) {
        let waiting: Vec<Id8> = self.pending_peers.iter().copied().collect();
        for peer in waiting {
            self.resume(&peer);
        }
    }

    /// Sends pieces of `value` from `value.next` while credit lasts; true when all are sent
    /// (or the value is gone from the store).
    fn send_value_pieces(&mut self, peer: &Id8, value: &mut ValueSend) -> bool {
        let Some(stored) = self.node.view().stored(&value.key) else {
            return true;
        };
        // When the credit cannot cover the rest, two thirds of it are kept for probes:
        // spending it all on pieces would leave nothing to earn more with. A probe answered
        // earns three times its cost, so with a fraction `a` of probes answered a round turns
        // the credit C into C/3 of pieces and 2aC of new credit: still growing at 20 % loss
        // each way (a = 0.64), where keeping half (1.5aC) would shrink it.
        let left = stored
            .len()
            .saturating_sub(usize::from(value.next) * CHUNK_PIECE_LEN);
        let credit = self.credit(peer, value.dst);
        let reserve = if left > credit { credit * 2 / 3 } else { 0 };
        let key = value.key.as_str();
        if stored.len() <= CHUNK_PIECE_LEN {
            let frame = Frame::Chunk(Chunk::Whole {
                key,
                value: &stored,
            });
            return self.send_waiting(peer, value.dst, &frame);
        }
        for (index, total, piece) in pieces(&stored, CHUNK_PIECE_LEN).skip(usize::from(value.next))
        {
            let frame = Frame::Chunk(Chunk::Piece {
                key,
                index,
                total,
                piece,
            });
            if self.credit(peer, value.dst) < reserve + frame.encoded_len()
                || !self.send_waiting(peer, value.dst, &frame)
            {
                return false;
            }
            value.next = index + 1;
        }
        true
    }

    /// Like [`Engine::send_paid`] for work that waits for credit: a refusal is not a drop.
    fn send_waiting(&mut self, peer: &Id8, dst: SocketAddr, frame: &Frame<'_>) -> bool {
        if !self.spend(peer, dst, frame.encoded_len()) {
            return false;
        }
        self.send_frame(dst, frame);
        true
    }

    /// A HELLO_ACK from `peer`, maybe the answer to a probe: its credit grew. Once half the
    /// round is answered it has earned more than the round cost (each answer earns three
    /// times its probe), so the work goes on without waiting for answers a lossy link lost.
    pub(crate) fn probe_answered(&mut self, peer: &Id8) {
        let Some(pending) = self.peers.get_mut(peer).and_then(|p| p.pending.as_mut()) else {
            return;
        };
        let answered_before = pending.probes_sent - pending.probes_out;
        pending.probes_out = pending.probes_out.saturating_sub(1);
        let answered = pending.probes_sent - pending.probes_out;
        if answered * 2 >= pending.probes_sent && answered_before * 2 < pending.probes_sent {
            pending.probes_out = 0;
            self.resume(peer);
        }
    }

    /// HELLOs to `peer`'s address, paid from its credit: each HELLO_ACK that comes back earns
    /// three times its size (see the module's comment). A new round starts only when the last
    /// one has been answered, so that answers add up to more than one round spent, or when it
    /// is older than [`PROBE_ROUND_TIMEOUT`].
    fn probe(&mut self, peer: &Id8) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let addr = p.addr;
        let Some(pending) = p.pending.as_mut() else {
            return;
        };
        let now = self.last_now;
        let round_open = pending
            .probed_at
            .is_some_and(|at| now.saturating_duration_since(at) < PROBE_ROUND_TIMEOUT);
        if pending.probes_out > 0 && round_open {
            return;
        }
        let mut count = 0;
        while count < PROBES_PER_ROUND
            && p.budget.available() >= REPLY_RESERVE + HANDSHAKE_LEN + FRAME_OVERHEAD
            && p.budget.try_spend(HANDSHAKE_LEN)
        {
            count += 1;
        }
        pending.probes_sent = count as u16;
        pending.probes_out = count as u16;
        pending.probed_at = Some(now);
        for _ in 0..count {
            self.send_handshake(addr, true);
        }
        self.stats.credit_probes += count as u64;
    }
}

/// Drops the oldest entries of `queue` beyond `max`.
fn trim_front<T>(queue: &mut std::collections::VecDeque<T>, max: usize) {
    while queue.len() > max {
        queue.pop_front();
    }
}
