//! One connected peer: its session and the per-peer receive state.

use std::net::SocketAddr;
use std::time::Instant;

use crate::proto::identity::PeerId;
use crate::proto::session::Session;
use crate::ratelimit::TokenBucket;
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
    pub last_ping_sent: Option<Instant>,
    pub rtt_ms: f32,
    pub in_mesh: bool,
    /// Rises with each DATA received; the mesh keeps the highest scorers.
    pub score: i32,
    /// Datagrams this peer may still send before being rate-limited.
    pub rate: TokenBucket,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Peer {
    pub(crate) fn new(
        id: PeerId,
        addr: SocketAddr,
        session: Session,
        rate: TokenBucket,
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
            last_ping_sent: None,
            rtt_ms: RTT_INITIAL_MS,
            in_mesh: false,
            score: 0,
            rate,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    pub(crate) fn record_rtt(&mut self, now: Instant) {
        if let Some(sent) = self.last_ping_sent.take() {
            let sample = now.saturating_duration_since(sent).as_secs_f32() * 1000.0;
            self.rtt_ms += RTT_ALPHA * (sample - self.rtt_ms);
        }
    }
}

/// A snapshot of a peer for listings (admin API, control interface).
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
        self.0
            .get_or_insert_with(|| Box::new(PieceAssembler::new(PieceLimits::FRAG)))
            .add(now, frag_id, index, total, piece)
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        if let Some(assembler) = &mut self.0 {
            assembler.expire(now);
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |a| a.bytes())
    }
}

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
