//! One connected peer: its session and the per-peer receive state.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::proto::identity::{Id8, PeerId};
use crate::proto::session::Session;
use crate::ratelimit::TokenBucket;
use crate::swarm::budget::SendBudget;
use crate::swarm::jitter::JitterBuffer;
use crate::swarm::pieces::{PieceAssembler, PieceError, PieceLimits};

/// py-setowire's RTT estimate starts here and moves by this weight per sample.
const RTT_INITIAL_MS: f32 = 100.0;
const RTT_ALPHA: f32 = 0.125;

pub(crate) struct Peer {
    pub id: PeerId,
    /// Where we send. Moves to `alias` when authenticated DATA arrives from there.
    pub addr: SocketAddr,
    /// A second address the same identity said HELLO from (NAT rebinding, a second
    /// interface): frames from it are attributed to this peer.
    pub alias: Option<SocketAddr>,
    pub session: Session,
    /// Next `seq` prefixed to DATA we send.
    pub send_seq: u32,
    pub jitter: JitterBuffer,
    pub fragments: Fragments,
    pub connected_at: Instant,
    pub last_seen: Instant,
    /// When the peer last sent a PING of its own. Peers PING each other every interval: one
    /// that still answers ours but has stopped sending its own has lost our session (it
    /// restarted, keeping its identity).
    pub last_own_ping: Instant,
    pub last_ping_sent: Option<Instant>,
    pub rtt_ms: f32,
    pub in_mesh: bool,
    /// Rises with each DATA received; the mesh keeps the highest scorers.
    pub score: i32,
    /// Cleartext frames (control frames, FRAG) this peer's address may still send before
    /// being rate-limited...
    pub rate: TokenBucket,
    /// ...and DATA, apart: cleartext frames anyone can forge from the address must not use
    /// up what the peer's own encrypted traffic may send.
    pub data_rate: TokenBucket,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// What the node may still send to `addr`, and to `alias`, on its own initiative.
    pub budget: SendBudget,
    pub alias_budget: SendBudget,
    /// When a GOAWAY came from `addr`: nothing is sent until the peer talks again, and the
    /// session ends if it stays silent (a forged GOAWAY must not end a live session).
    pub goaway_at: Option<Instant>,
    /// Work waiting for `budget` to grow; most peers never have any.
    pub pending: Option<Box<Pending>>,
}

/// Work toward a peer that its address's send budget could not pay for yet.
#[derive(Default)]
pub(crate) struct Pending {
    pub have_summary: bool,
    /// Peers still to be introduced to this one (and it to them).
    pub introductions_left: usize,
    /// Peers it was introduced to already, so a later round picks others.
    pub introduced: Vec<Id8>,
    /// Newcomers it is still to be told about (a bounded queue, oldest dropped first).
    pub tell_about: VecDeque<(Id8, SocketAddr)>,
    /// Stored values it asked for, sent piece by piece as credit comes.
    pub values: VecDeque<ValueSend>,
    /// Peers it asked to be introduced to with RELAY_REQ, from the address it asked from.
    pub relay_requests: VecDeque<(Id8, SocketAddr)>,
    /// Credit probes of the last round, those not answered yet, and when it went out.
    pub probes_sent: u16,
    pub probes_out: u16,
    pub probed_at: Option<Instant>,
}

impl Pending {
    /// Takes in work queued while this was taken out to be worked on.
    pub(crate) fn absorb(&mut self, other: Pending) {
        self.have_summary |= other.have_summary;
        self.introductions_left = self.introductions_left.max(other.introductions_left);
        self.introduced.extend(other.introduced);
        self.tell_about.extend(other.tell_about);
        self.values.extend(other.values);
        self.relay_requests.extend(other.relay_requests);
    }

    pub(crate) fn is_empty(&self) -> bool {
        !self.have_summary
            && self.introductions_left == 0
            && self.tell_about.is_empty()
            && self.values.is_empty()
            && self.relay_requests.is_empty()
    }
}

/// A stored value being sent in CHUNK pieces.
pub(crate) struct ValueSend {
    pub key: String,
    pub dst: SocketAddr,
    /// The next piece to send.
    pub next: u16,
}

impl Peer {
    pub(crate) fn new(
        id: PeerId,
        addr: SocketAddr,
        session: Session,
        rate: TokenBucket,
        budget: SendBudget,
        now: Instant,
    ) -> Self {
        Self {
            id,
            addr,
            alias: None,
            session,
            send_seq: 0,
            jitter: JitterBuffer::new(),
            fragments: Fragments::default(),
            connected_at: now,
            last_seen: now,
            last_own_ping: now,
            last_ping_sent: None,
            rtt_ms: RTT_INITIAL_MS,
            in_mesh: false,
            score: 0,
            rate,
            data_rate: rate,
            bytes_in: 0,
            bytes_out: 0,
            budget,
            alias_budget: SendBudget::default(),
            goaway_at: None,
            pending: None,
        }
    }

    /// The rate bucket a datagram (or BATCH frame) starting with `frame` is charged to.
    pub(crate) fn bucket_for(&mut self, frame: &[u8]) -> &mut TokenBucket {
        if frame.first() == Some(&crate::proto::frame::kind::DATA) {
            &mut self.data_rate
        } else {
            &mut self.rate
        }
    }

    /// The budget of `dst` if it is one of this peer's addresses.
    pub(crate) fn budget_of(&mut self, dst: SocketAddr) -> Option<&mut SendBudget> {
        if dst == self.addr {
            Some(&mut self.budget)
        } else if self.alias == Some(dst) {
            Some(&mut self.alias_budget)
        } else {
            None
        }
    }

    pub(crate) fn pending_mut(&mut self) -> &mut Pending {
        self.pending.get_or_insert_with(Box::default)
    }

    pub(crate) fn record_rtt(&mut self, now: Instant) {
        if let Some(sent) = self.last_ping_sent.take() {
            let sample = now.saturating_duration_since(sent).as_secs_f32() * 1000.0;
            self.rtt_ms += RTT_ALPHA * (sample - self.rtt_ms);
        }
    }
}

/// A peer's FRAG reassembly, allocated when its first fragment arrives: most peers never send
/// one, and at 100 000 peers the empty assembler alone would be 9 MB.
#[derive(Default)]
pub(crate) struct Fragments(Option<Box<PieceAssembler<[u8; 8]>>>);

impl Fragments {
    pub(crate) fn add(
        &mut self,
        now: Instant,
        frag_id: [u8; 8],
        index: u16,
        total: u16,
        piece: &[u8],
    ) -> Result<Option<Vec<u8>>, PieceError> {
        let assembler = self
            .0
            .get_or_insert_with(|| Box::new(PieceAssembler::new(PieceLimits::FRAG)));
        let added = assembler.add(now, frag_id, index, total, piece);
        self.release_if_empty();
        added
    }

    /// Drops the reassembly of `frag_id` (its memory could not be paid for).
    pub(crate) fn abandon(&mut self, frag_id: &[u8; 8]) {
        if let Some(assembler) = &mut self.0 {
            assembler.remove(frag_id);
        }
        self.release_if_empty();
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        if let Some(assembler) = &mut self.0 {
            assembler.expire(now);
        }
        self.release_if_empty();
    }

    /// Reassemblies in progress.
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |a| a.len())
    }

    /// Heap bytes this peer's reassembly takes, the assembler itself included.
    pub(crate) fn memory(&self) -> usize {
        self.0.as_ref().map_or(0, |a| {
            std::mem::size_of::<PieceAssembler<[u8; 8]>>() + a.memory()
        })
    }

    fn release_if_empty(&mut self) {
        if self.0.as_ref().is_some_and(|a| a.is_empty()) {
            self.0 = None;
        }
    }
}

/// A snapshot of a peer for listings (admin API, control interface).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub rtt_ms: f32,
    pub in_mesh: bool,
    pub connected_at: Instant,
    pub last_seen: Instant,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl From<&Peer> for PeerInfo {
    fn from(p: &Peer) -> Self {
        Self {
            id: p.id,
            addr: p.addr,
            rtt_ms: p.rtt_ms,
            in_mesh: p.in_mesh,
            connected_at: p.connected_at,
            last_seen: p.last_seen,
            bytes_in: p.bytes_in,
            bytes_out: p.bytes_out,
        }
    }
}
