//! Counters kept by one engine. Plain integers: an engine belongs to one thread, and whoever
//! exports metrics copies them out.

use crate::proto::frame::FrameKind;

/// Why a datagram, or a frame inside one, was dropped. A closed set, so it can label metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Malformed,
    UnknownType,
    UnknownPeer,
    BadHandshakeId,
    SelfConnection,
    WeakKey,
    UnsolicitedAck,
    PeerTableFull,
    Replay,
    AuthFailed,
    Duplicate,
    BatchTooDeep,
    Fragment,
    Chunk,
    Unwanted,
    RelayDisabled,
    RelayUnknownTarget,
    DialTableFull,
    OutQueueFull,
    EventQueueFull,
    TooLarge,
    RateLimited,
    /// DHT JSON that is not a valid DHT message.
    Dht,
    /// STUN that is not a valid Binding request or indication.
    Stun,
    /// Something the node would have sent to an address that has not sent enough to pay for
    /// it (three times its bytes); it waits or is not sent.
    AddressBudget,
    /// A new session over the per-source handshake rate.
    HandshakeRate,
    /// A HELLO with another key from the address of a session that is still talking.
    KeyChangeRefused,
    /// FRAG or CHUNK reassembly would pass the node-wide memory cap.
    ReassemblyMemory,
}

impl DropReason {
    pub const ALL: [DropReason; 28] = [
        DropReason::Malformed,
        DropReason::UnknownType,
        DropReason::UnknownPeer,
        DropReason::BadHandshakeId,
        DropReason::SelfConnection,
        DropReason::WeakKey,
        DropReason::UnsolicitedAck,
        DropReason::PeerTableFull,
        DropReason::Replay,
        DropReason::AuthFailed,
        DropReason::Duplicate,
        DropReason::BatchTooDeep,
        DropReason::Fragment,
        DropReason::Chunk,
        DropReason::Unwanted,
        DropReason::RelayDisabled,
        DropReason::RelayUnknownTarget,
        DropReason::DialTableFull,
        DropReason::OutQueueFull,
        DropReason::EventQueueFull,
        DropReason::TooLarge,
        DropReason::RateLimited,
        DropReason::Dht,
        DropReason::Stun,
        DropReason::AddressBudget,
        DropReason::HandshakeRate,
        DropReason::KeyChangeRefused,
        DropReason::ReassemblyMemory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownType => "unknown_type",
            DropReason::UnknownPeer => "unknown_peer",
            DropReason::BadHandshakeId => "bad_handshake_id",
            DropReason::SelfConnection => "self_connection",
            DropReason::WeakKey => "weak_key",
            DropReason::UnsolicitedAck => "unsolicited_ack",
            DropReason::PeerTableFull => "peer_table_full",
            DropReason::Replay => "replay",
            DropReason::AuthFailed => "auth_failed",
            DropReason::Duplicate => "duplicate",
            DropReason::BatchTooDeep => "batch_too_deep",
            DropReason::Fragment => "fragment",
            DropReason::Chunk => "chunk",
            DropReason::Unwanted => "unwanted",
            DropReason::RelayDisabled => "relay_disabled",
            DropReason::RelayUnknownTarget => "relay_unknown_target",
            DropReason::DialTableFull => "dial_table_full",
            DropReason::OutQueueFull => "out_queue_full",
            DropReason::EventQueueFull => "event_queue_full",
            DropReason::TooLarge => "too_large",
            DropReason::RateLimited => "rate_limited",
            DropReason::Dht => "dht",
            DropReason::Stun => "stun",
            DropReason::AddressBudget => "address_budget",
            DropReason::HandshakeRate => "handshake_rate",
            DropReason::KeyChangeRefused => "key_change_refused",
            DropReason::ReassemblyMemory => "reassembly_memory",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub datagrams_received: u64,
    pub bytes_received: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    pub handshakes: u64,
    pub data_delivered: u64,
    pub relay_forwards: u64,
    /// STUN Binding responses sent.
    pub stun_responses: u64,
    /// Sessions ended to make room for a newcomer when the peer table was full.
    pub peers_displaced: u64,
    /// HELLOs sent to a peer to earn send credit (each answered HELLO_ACK pays for three).
    pub credit_probes: u64,
    /// DATA that arrived after delivery had skipped its gap, delivered out of order.
    pub data_late: u64,
    /// WANTs sent again for values whose pieces stopped coming.
    pub wants_repeated: u64,
    frames: [u64; FrameKind::ALL.len()],
    drops: [u64; DropReason::ALL.len()],
}

impl Stats {
    pub fn count_frame(&mut self, kind: FrameKind) {
        self.frames[kind as usize] += 1;
    }

    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.drops[reason as usize] += n;
    }

    pub fn frames(&self, kind: FrameKind) -> u64 {
        self.frames[kind as usize]
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
}
