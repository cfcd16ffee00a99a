//! Tunables of the peer engine. Defaults follow py-setowire where its behaviour is part of
//! the protocol (timeouts, intervals, mesh degree) and are larger where a node serves far more
//! peers than an application does (table and store sizes).

use std::net::SocketAddr;
use std::time::Duration;

use crate::proto::frame::PEX_MAX;
use crate::ratelimit::Rate;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Peers with a session; new handshakes beyond this are refused and counted.
    pub max_peers: usize,
    /// Target number of mesh peers that application data is flooded to.
    pub mesh_degree: usize,
    /// The mesh is topped up below this many members...
    pub mesh_low: usize,
    /// ...and pruned above this many.
    pub mesh_high: usize,
    /// Re-flood received application data to the mesh. Off for a seed-only node.
    pub flood: bool,
    /// Answer each sequenced DATA with [`crate::swarm::engine::WINDOW_ACK`], so that
    /// py-setowire senders are not held to ~2 messages/s after their first 16.
    pub ack_data: bool,
    /// How often each peer is sent a PING (py-setowire: 1 s).
    pub ping_interval: Duration,
    /// A peer silent for this long is dropped (py-setowire: 60 s).
    pub peer_timeout: Duration,
    /// How often each peer is sent a PEX list (py-setowire: 60 s).
    pub pex_interval: Duration,
    /// How many recently connected peers a newcomer is introduced to, and they to it.
    pub gossip_fanout: usize,
    /// Dial the peers that gossip, PEX and RELAY_FWD introduce.
    pub follow_introductions: bool,
    /// Answer RELAY_REQ with RELAY_FWD to both sides.
    pub relay: bool,
    /// Fetch and keep every value a peer announces with HAVE (store-and-forward).
    pub store_forward: bool,
    pub store_max_entries: usize,
    pub store_max_bytes: usize,
    pub store_max_value: usize,
    /// A fetch that got no CHUNK within this time fails (py-setowire: 30 s).
    pub fetch_timeout: Duration,
    /// Keys being fetched at once.
    pub max_wanted: usize,
    /// Addresses being dialled at once.
    pub max_dials: usize,
    /// Largest application payload sent or reassembled.
    pub max_message: usize,
    /// Memory all peers' FRAG and CHUNK reassembly may take together, across all shards
    /// (counted as allocated: a one-byte piece of a 256-piece value costs its slot table).
    pub max_fragment_bytes: usize,
    /// Bits in each of the two Bloom generations that de-duplicate flooded data.
    pub seen_filter_bits: usize,
    /// Bytes of outgoing datagrams held between two drains.
    pub out_queue_bytes: usize,
    /// Events held until the application polls them.
    pub max_events: usize,
    /// Datagrams per second (and burst) from one source IP without a session.
    pub unauth_rate: Rate,
    /// Datagrams per second (and burst) from one peer with a session; its DATA and its
    /// cleartext frames (which anyone can forge from its address) have a bucket each.
    pub session_rate: Rate,
    /// New sessions per second (and burst) from one source IP, or one IPv6 prefix; each
    /// costs a Diffie-Hellman and a peer record. Counted across all shards.
    pub handshake_rate: Rate,
    /// Slots in each node-wide per-source table (8 bytes each, fixed at start): sources
    /// beyond it share slots, which only makes their limits stricter.
    pub rate_limit_ips: usize,
    /// IPv6 sources in one prefix of this length count as one source for every per-source
    /// limit (a subscriber holds a whole /64 or more).
    pub ipv6_prefix: u8,
    /// Where peers can reach this node; announced in RELAY_ANN when `relay` is on.
    pub public_addr: Option<SocketAddr>,
    /// How often RELAY_ANN goes to every peer (py-setowire: 30 s).
    pub relay_announce_interval: Duration,
    /// First DATA counter of every session; a node restarting with a persisted identity
    /// sets it above every counter it used before so no (key, nonce) pair repeats.
    pub first_send_counter: u64,
}

impl EngineConfig {
    /// How many recently connected peers the engine asks its node for at most: a
    /// newcomer's introductions, or a PEX list and one more (the recipient is left out).
    pub fn recent_peers_wanted(&self) -> usize {
        self.gossip_fanout.max(PEX_MAX + 1)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_peers: 100_000,
            mesh_degree: 6,
            mesh_low: 4,
            mesh_high: 16,
            flood: true,
            ack_data: true,
            ping_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(60),
            pex_interval: Duration::from_secs(60),
            gossip_fanout: 16,
            follow_introductions: true,
            relay: true,
            store_forward: false,
            store_max_entries: 10_000,
            store_max_bytes: 64 << 20,
            store_max_value: 1 << 20,
            fetch_timeout: Duration::from_secs(30),
            max_wanted: 1024,
            max_dials: 1024,
            max_message: 256 << 10,
            max_fragment_bytes: 32 << 20,
            seen_filter_bits: 1 << 23,
            out_queue_bytes: 8 << 20,
            max_events: 65_536,
            unauth_rate: Rate {
                per_second: 1000.0,
                burst: 2000.0,
            },
            session_rate: Rate {
                per_second: 4000.0,
                burst: 8000.0,
            },
            handshake_rate: Rate {
                per_second: 100.0,
                burst: 200.0,
            },
            rate_limit_ips: 65_536,
            ipv6_prefix: crate::ratelimit::DEFAULT_IPV6_PREFIX,
            public_addr: None,
            relay_announce_interval: Duration::from_secs(30),
            first_send_counter: 0,
        }
    }
}
