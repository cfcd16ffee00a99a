//! The sans-IO Setowire peer engine.
//!
//! It owns no socket, clock or thread. The caller feeds it datagrams with
//! [`Engine::handle_datagram`] and the passage of time with [`Engine::handle_timeout`]
//! (when [`Engine::poll_timeout`] says), sends what [`Engine::drain_transmits`] hands out and
//! reads [`Engine::poll_event`]. Every table and queue inside is bounded.
//!
//! An engine that is one shard of a node ([`Engine::for_shard`]) reads the rest of the node
//! through a [`NodeView`] and tells it what it did through [`Engine::poll_cluster_effect`];
//! other shards' work for it comes in through [`Engine::handle_shard_message`]. Its
//! discovery (introductions, PEX, relay) and store/fetch parts are the child modules
//! `discovery` and `sync`.
//!
//! Control frames (everything but DATA and the handshake) are attributed to a peer by source
//! address and are unauthenticated: they are hints that may only affect the peer at that
//! address.

mod discovery;
mod handshake;
mod paced;
mod sync;
pub mod tables;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::proto::frame::{kind, Frame, FrameError, FrameKind, PING_LEN, PONG_LEN};
use crate::proto::identity::{Id8, Identity, PeerId};
use crate::proto::session::{CryptoError, DATA_HEADER_LEN, DATA_OVERHEAD, TAG_LEN};
use crate::ratelimit::{Clock, SourceGrouping};
use crate::swarm::config::EngineConfig;
use crate::swarm::dedupe::{content_hash, SeenFilter};
use crate::swarm::effects::{ClusterEffect, ShardMessage, ShardTarget};
use crate::swarm::event::{DisconnectReason, Event};
use crate::swarm::jitter::Arrival;
use crate::swarm::lan_addrs::LanAddrs;
use crate::swarm::node_limits::NodeLimits;
use crate::swarm::node_link::NodeLink;
use crate::swarm::node_view::{NodeView, ShardId};
use crate::swarm::outqueue::OutQueue;
use crate::swarm::peer::{Peer, PeerInfo};
use crate::swarm::pieces::{pieces, FRAG_PIECE_LEN, FRAG_THRESHOLD};
use crate::swarm::single_node::SingleNode;
use crate::swarm::stats::{DropReason, Stats};
use crate::swarm::store::ValueLimits;
use discovery::Introducer;
use paced::PROBE_ROUND_TIMEOUT;
use sync::SyncState;

/// BATCH inside BATCH is legal but no dialect nests deeper than this.
const MAX_BATCH_DEPTH: usize = 2;
/// How often out-of-order DATA and dials are looked at when they are pending.
const FINE_TICK: Duration = Duration::from_millis(10);
/// Mesh degree adapts to the average RTT at most this often.
const MESH_ADAPT_EVERY: Duration = Duration::from_secs(5);
/// Length of the `seq` that prefixes ordinary DATA plaintext.
const SEQ_LEN: usize = 4;
/// Where a PING names its sender: after the type byte and the 8-byte timestamp.
const PING_ID: std::ops::Range<usize> = 9..PING_LEN;
/// An introduction that introduces nobody. py-setowire lets a peer have only 16 DATA frames
/// in flight until DATA or a PONG comes back, and PONGs come once a second; this DATA makes it
/// free a slot and do nothing else, so a py-setowire peer can keep sending to the node.
pub const WINDOW_ACK: &[u8] = br#"{"_gossip":true}"#;

/// Errors the application can get back from the engine's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no such peer")]
    UnknownPeer,
    #[error("payload larger than the configured maximum")]
    TooLarge,
    #[error("outgoing queue full")]
    QueueFull,
    #[error("session cannot send: {0}")]
    Crypto(CryptoError),
    /// The peer's address said GOAWAY: nothing is sent until the peer talks again.
    #[error("the peer said GOAWAY")]
    PeerLeaving,
}

pub struct Engine {
    pub(crate) identity: Identity,
    pub(crate) id8: Id8,
    pub(crate) config: EngineConfig,
    /// Records are boxed: at 100 000 peers a table of 500-byte slots kept up to 1/8 empty
    /// (and doubled as it grows) costs more than the records; 16-byte slots do not.
    pub(crate) peers: HashMap<Id8, Box<Peer>, ahash::RandomState>,
    /// Source address (primary or alias) → peer. Looked up for every datagram: a fast hash,
    /// randomly keyed because the addresses are chosen by the senders.
    pub(crate) by_addr: HashMap<SocketAddr, Id8, ahash::RandomState>,
    /// Number of peers with `in_mesh` set.
    pub(crate) mesh_size: usize,
    pub(crate) mesh_degree: usize,
    /// The rest of the node: read through a view, told through effects.
    pub(crate) node: NodeLink,
    /// Node-wide limits per source (unauthenticated traffic, handshakes) and on memory.
    limits: Arc<NodeLimits>,
    /// Milliseconds since the node-wide limiters' start, cached per `now` like `clock`.
    limits_clock: Clock,
    grouping: SourceGrouping,
    /// Peers with work waiting for their send credit (see `paced`).
    pending_peers: HashSet<Id8>,
    /// The time base of the peers' rate buckets.
    clock: Clock,
    pub(crate) dials: HashMap<SocketAddr, Dial>,
    /// Peers holding out-of-order DATA, looked at on the fine tick.
    gapped: HashSet<Id8>,
    pub(crate) out: OutQueue,
    events: VecDeque<Event>,
    seen: Arc<SeenFilter>,
    /// LAN addresses announced to the node, for introducing peers behind one NAT.
    pub(crate) lan_addrs: Arc<LanAddrs>,
    pub(crate) sync: SyncState,
    pub(crate) stats: Stats,
    pub(crate) rng: StdRng,
    next_ping: Instant,
    pub(crate) next_pex: Instant,
    next_mesh_adapt: Instant,
    next_relay_announce: Instant,
    /// When peers waiting for credit are looked at again (their probe rounds time out).
    next_credit_round: Instant,
    /// When the engine was created: PING timestamps count milliseconds from here.
    started: Instant,
    /// The latest time the engine was driven with.
    last_now: Instant,
    /// Our PONG, the same for every PING: encoded once.
    pong: [u8; PONG_LEN],
    /// Decryption output, reused for every DATA.
    open_buf: Vec<u8>,
    /// Payloads the jitter buffer released, reused.
    released: Vec<Vec<u8>>,
}

/// A HELLO being repeated to open a path through NATs (py-setowire: 8 × 300 ms).
pub(crate) struct Dial {
    pub hellos_left: u8,
    pub next_at: Instant,
}

pub(crate) const DIAL_HELLOS: u8 = 8;
pub(crate) const DIAL_INTERVAL: Duration = Duration::from_millis(300);
/// A dial is forgotten this long after its last HELLO went unanswered.
const DIAL_LINGER: Duration = Duration::from_secs(3);
/// A session whose address said GOAWAY ends when it has been silent this long since; a
/// peer that goes on talking was not the one that said it.
const GOAWAY_GRACE: Duration = Duration::from_secs(3);
/// A HELLO with a new key replaces the session at its address only after that session has
/// been silent this many ping intervals (a restarted peer is silent; a live one is not).
const KEY_CHANGE_SILENT_PINGS: u32 = 2;
/// A peer that answers our PINGs but has sent none of its own for this many ping intervals
/// has lost our session, and is offered a new handshake.
const LOST_SESSION_PINGS: u32 = 3;
/// Sessions looked at when the peer table is full and a newcomer needs room.
const DISPLACEMENT_SAMPLE: usize = 64;
/// A session that never carried application data may be displaced once it is this old.
const DISPLACEABLE_AFTER: Duration = Duration::from_secs(2);

impl Engine {
    /// An engine that is the whole node.
    pub fn new(identity: Identity, config: EngineConfig, now: Instant) -> Self {
        Self::with_rng(identity, config, now, StdRng::from_entropy())
    }

    /// Like [`Engine::new`] with a seeded random source, for reproducible tests.
    pub fn with_rng(identity: Identity, config: EngineConfig, now: Instant, rng: StdRng) -> Self {
        let node = NodeLink::Single(Box::new(SingleNode::new(&config, now)));
        Self::with_node(identity, config, now, rng, node)
    }

    /// Shard `shard` of a node. `view` answers what the engine asks about the node; what
    /// the node must learn comes out of [`Engine::poll_cluster_effect`], which the shard must
    /// drain before it sends the transmits (a dial's answer may reach another shard, which
    /// must know of the dial by then). Draining once per batch of inputs is enough: until
    /// then the engine counts its own new sessions against the node-wide peer limit.
    pub fn for_shard(
        identity: Identity,
        config: EngineConfig,
        now: Instant,
        rng: StdRng,
        shard: ShardId,
        view: Arc<dyn NodeView>,
    ) -> Self {
        let limits = ValueLimits {
            max_entries: config.store_max_entries,
            max_bytes: config.store_max_bytes,
            max_value_len: config.store_max_value,
        };
        let node = NodeLink::shard(shard, view, limits);
        Self::with_node(identity, config, now, rng, node)
    }

    fn with_node(
        identity: Identity,
        config: EngineConfig,
        now: Instant,
        rng: StdRng,
        node: NodeLink,
    ) -> Self {
        let mut pong = [0u8; PONG_LEN];
        let pong_len = Frame::Pong { id: *identity.id() }
            .encode(&mut pong)
            .expect("PONG fits its buffer");
        debug_assert_eq!(pong_len, PONG_LEN);
        let limits = node.view().limits();
        let seen = node.view().seen();
        let lan_addrs = node.view().lan_addrs();
        Self {
            id8: identity.id8(),
            identity,
            peers: HashMap::default(),
            by_addr: HashMap::default(),
            mesh_size: 0,
            mesh_degree: config.mesh_degree,
            node,
            limits_clock: Clock::new(limits.start()),
            limits,
            grouping: SourceGrouping::new(config.ipv6_prefix),
            pending_peers: HashSet::new(),
            clock: Clock::new(now),
            dials: HashMap::new(),
            gapped: HashSet::new(),
            out: OutQueue::new(config.out_queue_bytes),
            events: VecDeque::new(),
            seen,
            lan_addrs,
            sync: SyncState::new(),
            stats: Stats::default(),
            rng,
            next_ping: now + config.ping_interval,
            next_pex: now + config.pex_interval,
            next_mesh_adapt: now + MESH_ADAPT_EVERY,
            next_relay_announce: now,
            next_credit_round: now,
            started: now,
            last_now: now,
            pong,
            open_buf: Vec::new(),
            released: Vec::new(),
            config,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The node-wide limits this engine charges (shared with the node's other shards).
    pub fn limits(&self) -> &NodeLimits {
        &self.limits
    }

    /// Peers with a session on this engine.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The shard this engine is within its node.
    pub fn shard(&self) -> ShardId {
        self.node.shard_id()
    }

    /// What the rest of the node must learn or do next, when this engine is a shard.
    #[must_use]
    pub fn poll_cluster_effect(&mut self) -> Option<ClusterEffect> {
        self.node.poll_effect()
    }

    /// Work another shard of the node asks for (see [`ShardMessage`]).
    pub fn handle_shard_message(&mut self, now: Instant, message: ShardMessage) {
        self.last_now = now;
        match message {
            ShardMessage::Flood(payload) => self.flood_from_elsewhere(&payload),
            ShardMessage::Introduce { targets, newcomer } => {
                self.introduce_from_elsewhere(&targets, newcomer)
            }
            ShardMessage::Want(key) => self.want_from_elsewhere(now, &key),
            ShardMessage::ValueArrived(key) => self.value_arrived_elsewhere(&key),
            ShardMessage::Pex(listings) => self.send_pex_lists(&mut listings.to_vec(), false),
        }
    }

    pub fn peers(&self) -> impl Iterator<Item = PeerInfo> + '_ {
        self.peers.values().map(|p| PeerInfo::from(&**p))
    }

    pub fn peer(&self, id8: &Id8) -> Option<PeerInfo> {
        self.peers.get(id8).map(|p| PeerInfo::from(&**p))
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn has_transmits(&self) -> bool {
        !self.out.is_empty()
    }

    /// Hands every queued datagram to `sink`, in order.
    pub fn drain_transmits(&mut self, mut sink: impl FnMut(SocketAddr, &[u8])) {
        let stats = &mut self.stats;
        self.out.drain(|dst, bytes| {
            stats.datagrams_sent += 1;
            stats.bytes_sent += bytes.len() as u64;
            sink(dst, bytes);
        });
    }

    /// When [`Engine::handle_timeout`] wants to run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self
            .next_ping
            .min(self.next_pex)
            .min(self.next_relay_announce);
        if !self.pending_peers.is_empty() {
            at = at.min(self.next_credit_round);
        }
        if !self.gapped.is_empty() || !self.dials.is_empty() {
            // Both are rare and short-lived; a fine tick is cheaper than tracking deadlines.
            at = at.min(self.last_now + FINE_TICK);
        }
        at
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_now = now;
        self.expire_gaps(now);
        self.run_dials(now);
        if now >= self.next_ping {
            self.next_ping = now + self.config.ping_interval;
            self.heartbeat(now);
        }
        if now >= self.next_pex {
            self.next_pex = now + self.config.pex_interval;
            self.send_pex_round();
        }
        if now >= self.next_relay_announce {
            self.next_relay_announce = now + self.config.relay_announce_interval;
            self.announce_relay();
        }
        if !self.pending_peers.is_empty() && now >= self.next_credit_round {
            self.next_credit_round = now + PROBE_ROUND_TIMEOUT;
            self.resume_all();
        }
    }

    /// Handles one received datagram. `src` should be canonical (IPv4-mapped IPv6 addresses
    /// turned back into IPv4) so a peer has one address however the socket reports it.
    // Inlined into the shard's receive loop (which calls it in one place): a call frame less
    // per datagram (measured).
    #[inline(always)]
    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        self.last_now = now;
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        // PING is most of what a busy node receives and needs nothing parsed, so it is
        // answered here, with the peer looked up once. These are exactly the datagrams
        // `Frame::parse` takes for a PING (it ignores bytes after the id).
        let ping = datagram.len() >= PING_LEN && datagram[0] == kind::PING;
        // Charge the datagram to its peer's bucket, or to its source IP's without a session.
        let allowed = match self.by_addr.get(&src).and_then(|id| self.peers.get_mut(id)) {
            Some(peer) => {
                let allowed = peer
                    .bucket_for(datagram)
                    .allow(self.config.session_rate, self.clock.nanos(now));
                if allowed {
                    // A PING naming another identity is not this peer's: whoever sent it
                    // (a new process on the peer's old port) must not keep the session alive.
                    let foreign_ping = ping && datagram[PING_ID] != peer.id;
                    let budget = if src == peer.addr {
                        // Whoever said GOAWAY from here, the peer is still talking; answers
                        // to what we sent before it (PONG, HELLO_ACK) do not count: a peer
                        // that leaves may send them after its GOAWAY.
                        if !foreign_ping
                            && !matches!(datagram.first(), Some(&(kind::PONG | kind::HELLO_ACK)))
                        {
                            peer.goaway_at = None;
                        }
                        &mut peer.budget
                    } else {
                        &mut peer.alias_budget
                    };
                    budget.earn(datagram.len());
                    if ping {
                        if !foreign_ping {
                            peer.last_seen = now;
                            peer.last_own_ping = now;
                        }
                        // A PONG to a session's address is paid like anything else sent
                        // there (a PING earns three of them).
                        if !budget.try_spend(PONG_LEN) {
                            return self.count_drop(DropReason::AddressBudget);
                        }
                    }
                }
                allowed
            }
            None => self.allow_source(now, src),
        };
        if !allowed {
            return self.count_drop(DropReason::RateLimited);
        }
        if ping {
            self.stats.count_frame(FrameKind::Ping);
            return self.send_pong(src);
        }
        self.dispatch(now, src, datagram, 0);
    }

    /// Charges work done for an address without a session (also DHT and STUN, which the
    /// node answers outside the engine) to that source IP.
    pub fn allow_unauthenticated(&mut self, now: Instant, src: SocketAddr) -> bool {
        self.allow_source(now, src)
    }

    /// Takes a token from the node-wide bucket of `src`'s IP (or IPv6 prefix) for traffic
    /// without a session.
    #[inline(always)]
    fn allow_source(&mut self, now: Instant, src: SocketAddr) -> bool {
        let millis = self.limit_millis(now);
        self.limits.unauthenticated.allow_at(src.ip(), millis, 1.0)
    }

    /// Milliseconds on the node-wide limiters' clock.
    #[inline(always)]
    pub(crate) fn limit_millis(&mut self, now: Instant) -> u64 {
        self.limits_clock.nanos(now) / 1_000_000
    }

    /// Charges one more frame of a BATCH to its sender: a BATCH costs what its frames would
    /// cost as datagrams of their own.
    fn allow_inner_frame(&mut self, now: Instant, src: SocketAddr, frame: &[u8]) -> bool {
        match self.by_addr.get(&src).and_then(|id| self.peers.get_mut(id)) {
            Some(peer) => peer
                .bucket_for(frame)
                .allow(self.config.session_rate, self.clock.nanos(now)),
            None => self.allow_source(now, src),
        }
    }

    fn dispatch(&mut self, now: Instant, src: SocketAddr, datagram: &[u8], depth: usize) {
        let frame = match Frame::parse(datagram) {
            Ok(frame) => frame,
            Err(FrameError::UnknownType(_)) => return self.count_drop(DropReason::UnknownType),
            Err(_) => return self.count_drop(DropReason::Malformed),
        };
        self.stats.count_frame(frame.kind());
        match frame {
            Frame::Hello(h) => self.on_handshake(now, src, &h, true),
            Frame::HelloAck(h) => self.on_handshake(now, src, &h, false),
            Frame::Data(sealed) => self.on_data(now, src, sealed),
            Frame::Ping { id, .. } => self.on_ping(now, src, &id),
            Frame::Pong { id } => self.on_pong(now, src, &id),
            // Nobody acts on IHAVE; LAN announcements arrive on the multicast socket, which
            // the node handles itself.
            Frame::Ihave(_) | Frame::Lan(_) => {}
            Frame::Goaway => self.on_goaway(now, src),
            Frame::Frag(f) => self.on_fragment(now, src, f),
            Frame::Have(keys) => self.on_have(now, src, keys),
            Frame::Want { key } => self.on_want(src, key),
            Frame::Chunk(chunk) => self.on_chunk(now, src, chunk),
            // Our CHUNK pieces are sent at once, so acknowledgements need no action.
            Frame::ChunkAck { .. } => {}
            Frame::Batch(entries) => {
                if depth >= MAX_BATCH_DEPTH {
                    return self.count_drop(DropReason::BatchTooDeep);
                }
                for (n, inner) in entries.datagrams().enumerate() {
                    // The first frame was paid for with the datagram.
                    if n > 0 && !self.allow_inner_frame(now, src, inner) {
                        return self.count_drop(DropReason::RateLimited);
                    }
                    self.dispatch(now, src, inner, depth + 1);
                }
            }
            // The node is itself a relay; other relays' announcements are not used yet.
            Frame::RelayAnn { .. } => {}
            // `from` is the requester's claim; the session at `src` is who asks.
            Frame::RelayReq { to, .. } => self.on_relay_req(src, &to),
            Frame::RelayFwd { from, endpoint } => self.on_relay_fwd(now, src, &from, endpoint),
            Frame::Pex(entries) => self.on_pex(now, src, entries),
        }
    }

    /// Counts a datagram dropped for `reason`; also used by the node for the DHT and STUN
    /// datagrams it takes off the same port.
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.count_drop(reason);
    }

    /// Counts a STUN answer the node sent from this engine's socket.
    pub fn count_stun_response(&mut self) {
        self.stats.stun_responses += 1;
    }

    pub(crate) fn emit(&mut self, event: Event) {
        if self.events.len() >= self.config.max_events {
            return self.count_drop(DropReason::EventQueueFull);
        }
        self.events.push_back(event);
    }

    /// Queues a frame for `dst`, counting a drop when the queue is full.
    pub(crate) fn send_frame(&mut self, dst: SocketAddr, frame: &Frame<'_>) {
        match self
            .out
            .push_with(dst, frame.encoded_len(), |buf| frame.encode(buf))
        {
            Ok(true) => {}
            Ok(false) => self.count_drop(DropReason::OutQueueFull),
            // Frames built by the engine are always encodable.
            Err(_) => self.count_drop(DropReason::Malformed),
        }
    }

    // ---- DATA ------------------------------------------------------------------------

    fn on_data(&mut self, now: Instant, src: SocketAddr, sealed: &[u8]) {
        let Some(id8) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peers.get_mut(&id8) else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let mut plain = std::mem::take(&mut self.open_buf);
        plain.resize(sealed.len(), 0);
        let opened = peer.session.open_data(sealed, &mut plain);
        let len = match opened {
            Ok(len) => len,
            Err(e) => {
                self.open_buf = plain;
                return self.count_drop(match e {
                    CryptoError::Replay => DropReason::Replay,
                    _ => DropReason::AuthFailed,
                });
            }
        };
        peer.last_seen = now;
        peer.score = peer.score.saturating_add(1).min(1000);
        peer.bytes_in += sealed.len() as u64 + 1;
        if src != peer.addr {
            // Authenticated traffic from the alias: the peer moved there.
            peer.alias = Some(peer.addr);
            peer.addr = src;
        }
        let plain_bytes = &plain[..len];
        let introducer = Introducer {
            peer: id8,
            addr: src,
        };
        if plain_bytes == WINDOW_ACK {
            // Only there to open our own window in py-setowire's terms; nothing to do.
        } else if plain_bytes.first() == Some(&b'{') && self.on_gossip(now, introducer, plain_bytes)
        {
            // A whole-plaintext introduction (no seq), as this engine sends them.
        } else if len < SEQ_LEN {
            // py-setowire delivers plaintext too short for a seq as it is.
            self.deliver(now, &id8, plain_bytes);
        } else {
            let seq = u32::from_be_bytes(plain_bytes[..SEQ_LEN].try_into().expect("4 bytes"));
            let mut released = std::mem::take(&mut self.released);
            if let Some(peer) = self.peers.get_mut(&id8) {
                let arrival = peer
                    .jitter
                    .push(now, seq, &plain_bytes[SEQ_LEN..], &mut released);
                if arrival == Arrival::Late {
                    self.stats.data_late += 1;
                }
                if peer.jitter.is_idle() {
                    self.gapped.remove(&id8);
                } else {
                    self.gapped.insert(id8);
                }
            }
            for payload in released.drain(..) {
                self.deliver(now, &id8, &payload);
            }
            self.released = released;
            if self.config.ack_data && self.spend(&id8, src, DATA_OVERHEAD + WINDOW_ACK.len()) {
                self.send_unsequenced(&id8, WINDOW_ACK);
            }
        }
        self.open_buf = plain;
    }

    fn expire_gaps(&mut self, now: Instant) {
        if self.gapped.is_empty() {
            return;
        }
        let mut released = std::mem::take(&mut self.released);
        let gapped: Vec<Id8> = self.gapped.iter().copied().collect();
        for id8 in gapped {
            let Some(peer) = self.peers.get_mut(&id8) else {
                self.gapped.remove(&id8);
                continue;
            };
            peer.jitter.expire(now, &mut released);
            if peer.jitter.is_idle() {
                self.gapped.remove(&id8);
            }
            for payload in released.drain(..) {
                self.deliver(now, &id8, &payload);
            }
        }
        self.released = released;
    }

    fn on_fragment(&mut self, now: Instant, src: SocketAddr, f: crate::proto::frame::Fragment<'_>) {
        let Some(id8) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peers.get_mut(&id8) else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        peer.last_seen = now;
        // Fragments are cleartext and unauthenticated: besides the per-peer limits, all
        // shards' peers together may hold only so much memory, counted as allocated (a
        // one-byte piece of a 256-piece value costs its slot table).
        let before = peer.fragments.memory();
        let added = peer
            .fragments
            .add(now, f.frag_id, f.index, f.total, f.piece);
        let after = peer.fragments.memory();
        if after > before && !self.limits.reserve_reassembly_memory(after - before) {
            peer.fragments.abandon(&f.frag_id);
            let left = peer.fragments.memory();
            self.limits
                .release_reassembly_memory(before.saturating_sub(left));
            return self.count_drop(DropReason::ReassemblyMemory);
        }
        self.limits
            .release_reassembly_memory(before.saturating_sub(after));
        match added {
            Ok(Some(payload)) => self.deliver(now, &id8, &payload),
            Ok(None) => {}
            Err(_) => self.count_drop(DropReason::Fragment),
        }
    }

    /// Hands an in-order payload to the application (once per content) and floods it on.
    fn deliver(&mut self, now: Instant, from: &Id8, payload: &[u8]) {
        // py-setowire prefixes its introductions with a seq like any DATA.
        if payload.first() == Some(&b'{') {
            let Some(addr) = self.peers.get(from).map(|p| p.addr) else {
                return;
            };
            let introducer = Introducer { peer: *from, addr };
            if self.on_gossip(now, introducer, payload) {
                return;
            }
        }
        if self.seen.check_and_insert(now, content_hash(payload)) {
            return self.count_drop(DropReason::Duplicate);
        }
        self.stats.data_delivered += 1;
        if self.config.flood {
            self.flood_mesh(payload, Some(from));
            if self.node.has_other_shards() {
                let payload = ShardMessage::Flood(Arc::from(payload));
                self.node.send(ShardTarget::Others, payload);
            }
        }
        self.emit(Event::Data {
            peer: *from,
            payload: payload.to_vec(),
        });
    }

    /// Re-sends application data to this shard's mesh, except to the peer it came from.
    fn flood_mesh(&mut self, payload: &[u8], except: Option<&Id8>) {
        let mesh: Vec<Id8> = self
            .peers
            .iter()
            .filter(|(id, p)| p.in_mesh && Some(*id) != except)
            .map(|(id, _)| *id)
            .collect();
        for id in mesh {
            // A full queue is counted inside, a peer that said GOAWAY is skipped; flooding
            // goes on to the others.
            let _ = self.send(&id, payload);
        }
    }

    /// Floods data that another shard of this node delivered. That shard recorded it in the
    /// node-wide filter already, so this one floods without asking again.
    fn flood_from_elsewhere(&mut self, payload: &[u8]) {
        self.flood_mesh(payload, None);
    }

    /// Sends application data to one peer: sealed with a seq, or as cleartext FRAG pieces
    /// when longer than one datagram allows (py-setowire sends fragments unencrypted).
    pub fn send(&mut self, peer: &Id8, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > self.config.max_message {
            self.count_drop(DropReason::TooLarge);
            return Err(SendError::TooLarge);
        }
        let Some(p) = self.peers.get_mut(peer) else {
            return Err(SendError::UnknownPeer);
        };
        if p.goaway_at.is_some() {
            return Err(SendError::PeerLeaving);
        }
        let dst = p.addr;
        if payload.len() > FRAG_THRESHOLD {
            let mut frag_id = [0u8; 8];
            self.rng.fill_bytes(&mut frag_id);
            for (index, total, piece) in pieces(payload, FRAG_PIECE_LEN) {
                let frame = Frame::Frag(crate::proto::frame::Fragment {
                    frag_id,
                    index,
                    total,
                    piece,
                });
                p.bytes_out += frame.encoded_len() as u64;
                match self
                    .out
                    .push_with(dst, frame.encoded_len(), |buf| frame.encode(buf))
                {
                    Ok(true) => {}
                    _ => {
                        self.stats.count_drop(DropReason::OutQueueFull);
                        return Err(SendError::QueueFull);
                    }
                }
            }
            return Ok(());
        }
        let seq = p.send_seq;
        let result = seal_into(&mut self.out, dst, p, Some(seq), payload);
        if result.is_ok() {
            p.send_seq = seq.wrapping_add(1);
        } else if result == Err(SendError::QueueFull) {
            self.stats.count_drop(DropReason::OutQueueFull);
        }
        result
    }

    /// Sends to every peer with a session; returns how many it was queued for.
    pub fn broadcast(&mut self, payload: &[u8]) -> usize {
        // Recorded as seen, so that copies the mesh floods back are not taken for new data.
        self.seen
            .check_and_insert(self.last_now, content_hash(payload));
        let ids: Vec<Id8> = self.peers.keys().copied().collect();
        ids.iter()
            .filter(|id| self.send(id, payload).is_ok())
            .count()
    }

    /// Seals `plaintext` as-is, without a seq (how introductions are sent).
    pub(crate) fn send_unsequenced(&mut self, peer: &Id8, plaintext: &[u8]) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let dst = p.addr;
        if seal_into(&mut self.out, dst, p, None, plaintext) == Err(SendError::QueueFull) {
            self.stats.count_drop(DropReason::OutQueueFull);
        }
    }

    // ---- liveness --------------------------------------------------------------------

    fn on_ping(&mut self, now: Instant, src: SocketAddr, id: &PeerId) {
        // Every PING is answered, as py-setowire does; a PONG is smaller than a PING, and a
        // session's address pays for it from its credit.
        if let Some(peer) = self.by_addr.get(&src).and_then(|id| self.peers.get_mut(id)) {
            if peer.id == *id {
                peer.last_seen = now;
                peer.last_own_ping = now;
            }
            let paid = peer
                .budget_of(src)
                .is_some_and(|budget| budget.try_spend(PONG_LEN));
            if !paid {
                return self.count_drop(DropReason::AddressBudget);
            }
        }
        self.send_pong(src);
    }

    fn send_pong(&mut self, dst: SocketAddr) {
        if !self.out.push(dst, &self.pong) {
            self.count_drop(DropReason::OutQueueFull);
        }
    }

    fn on_pong(&mut self, now: Instant, src: SocketAddr, id: &PeerId) {
        let Some(owner) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let Some(peer) = self.peers.get_mut(&owner) else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        if peer.id != *id {
            // Another identity answers at the peer's address: the peer restarted there (or
            // someone forged this). The answer keeps nothing alive; see whether the session
            // may be replaced by a handshake with whoever is there now.
            return self.redial_if_replaced(now, src, &owner);
        }
        peer.last_seen = now;
        peer.record_rtt(now);
    }

    fn heartbeat(&mut self, now: Instant) {
        let timeout = self.config.peer_timeout;
        let dead: Vec<(Id8, DisconnectReason)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| {
                if now.saturating_duration_since(p.last_seen) > timeout {
                    Some((*id, DisconnectReason::Timeout))
                } else if p.goaway_at.is_some_and(|at| {
                    now.saturating_duration_since(at.max(p.last_seen)) >= GOAWAY_GRACE
                }) {
                    Some((*id, DisconnectReason::Goaway))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in dead {
            self.remove_peer(&id, reason);
        }
        self.redial_lost_sessions(now);
        let ping = Frame::Ping {
            // Monotonic milliseconds, like py-setowire's: only the sender reads them.
            timestamp_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            id: *self.identity.id(),
        };
        let mut buf = [0u8; crate::proto::frame::PING_LEN];
        let len = ping.encode(&mut buf).expect("PING fits its buffer");
        let mut full = false;
        let mut unpaid = 0;
        let mut fragments_freed = 0;
        for peer in self.peers.values_mut() {
            let before = peer.fragments.memory();
            peer.fragments.expire(now);
            fragments_freed += before - peer.fragments.memory();
            // Not to a peer that said GOAWAY, nor beyond what its address paid for.
            if peer.goaway_at.is_some() {
                continue;
            }
            if !peer.budget.try_spend(len) {
                unpaid += 1;
                continue;
            }
            peer.last_ping_sent = Some(now);
            full |= !self.out.push(peer.addr, &buf[..len]);
        }
        self.limits.release_reassembly_memory(fragments_freed);
        if full {
            self.count_drop(DropReason::OutQueueFull);
        }
        self.stats.count_drops(DropReason::AddressBudget, unpaid);
        self.resume_all();
        self.maintain_mesh(now);
        self.expire_sync(now);
    }

    /// Sends GOAWAY to `peer` and forgets it.
    pub fn disconnect(&mut self, peer: &Id8) -> bool {
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else {
            return false;
        };
        self.send_frame(addr, &Frame::Goaway);
        self.remove_peer(peer, DisconnectReason::Local);
        true
    }

    /// Says GOAWAY to every peer and forgets them all (shutdown).
    pub fn disconnect_all(&mut self) {
        let ids: Vec<Id8> = self.peers.keys().copied().collect();
        for id in ids {
            self.disconnect(&id);
        }
    }

    pub(crate) fn remove_peer(&mut self, id8: &Id8, reason: DisconnectReason) {
        let Some(peer) = self.peers.remove(id8) else {
            return;
        };
        for addr in std::iter::once(peer.addr).chain(peer.alias) {
            if self.by_addr.get(&addr) == Some(id8) {
                self.by_addr.remove(&addr);
            }
        }
        if peer.in_mesh {
            self.mesh_size -= 1;
        }
        self.limits
            .release_reassembly_memory(peer.fragments.memory());
        self.gapped.remove(id8);
        self.pending_peers.remove(id8);
        self.node.disconnected(*id8, peer.addr);
        self.emit(Event::Disconnected { peer: *id8, reason });
    }

    // ---- mesh ------------------------------------------------------------------------

    pub(crate) fn set_mesh(&mut self, id8: &Id8, in_mesh: bool) {
        if let Some(peer) = self.peers.get_mut(id8) {
            if peer.in_mesh != in_mesh {
                peer.in_mesh = in_mesh;
                if in_mesh {
                    self.mesh_size += 1;
                } else {
                    self.mesh_size -= 1;
                }
            }
        }
    }

    pub(crate) fn mesh_peers(&self) -> Vec<Id8> {
        self.peers
            .iter()
            .filter(|(_, p)| p.in_mesh)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Keeps the mesh between its low and high marks, preferring peers that send data, and
    /// adapts its target degree to the average RTT as py-setowire does.
    fn maintain_mesh(&mut self, now: Instant) {
        if now >= self.next_mesh_adapt && !self.peers.is_empty() {
            self.next_mesh_adapt = now + MESH_ADAPT_EVERY;
            let avg_rtt =
                self.peers.values().map(|p| p.rtt_ms).sum::<f32>() / self.peers.len() as f32;
            if avg_rtt > 200.0 && self.mesh_degree > self.config.mesh_low {
                self.mesh_degree -= 1;
            } else if avg_rtt < 50.0
                && self.mesh_degree < self.config.mesh_high
                && self.peers.len() > self.mesh_degree + 2
            {
                self.mesh_degree += 1;
            }
        }
        if self.mesh_size < self.config.mesh_low && self.mesh_size < self.peers.len() {
            let mut candidates: Vec<(i32, Id8)> = self
                .peers
                .iter()
                .filter(|(_, p)| !p.in_mesh && p.goaway_at.is_none())
                .map(|(id, p)| (p.score, *id))
                .collect();
            candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
            let want = self.mesh_degree.saturating_sub(self.mesh_size);
            for (_, id) in candidates.into_iter().take(want) {
                self.set_mesh(&id, true);
            }
        } else if self.mesh_size > self.config.mesh_high {
            let mut members: Vec<(i32, Id8)> = self
                .peers
                .iter()
                .filter(|(_, p)| p.in_mesh)
                .map(|(id, p)| (p.score, *id))
                .collect();
            members.sort_unstable_by_key(|m| m.0);
            let excess = self.mesh_size - self.mesh_degree;
            for (_, id) in members.into_iter().take(excess) {
                self.set_mesh(&id, false);
            }
        }
    }
}

/// Seals `plaintext` (behind `seq` when given) for `peer` straight into the out queue.
fn seal_into(
    out: &mut OutQueue,
    dst: SocketAddr,
    peer: &mut Peer,
    seq: Option<u32>,
    plaintext: &[u8],
) -> Result<(), SendError> {
    let prefix = if seq.is_some() { SEQ_LEN } else { 0 };
    let len = DATA_OVERHEAD + prefix + plaintext.len();
    let session = &mut peer.session;
    let queued = out.push_with(dst, len, |buf| {
        let frame = &mut buf[..len];
        let body = &mut frame[DATA_HEADER_LEN..len - TAG_LEN];
        if let Some(seq) = seq {
            body[..SEQ_LEN].copy_from_slice(&seq.to_be_bytes());
        }
        body[prefix..].copy_from_slice(plaintext);
        session.seal_data(frame).map(|()| len)
    });
    match queued {
        Ok(true) => {
            peer.bytes_out += len as u64;
            Ok(())
        }
        Ok(false) => Err(SendError::QueueFull),
        Err(e) => Err(SendError::Crypto(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PING fast path of `handle_datagram` answers exactly the datagrams the parser
    /// takes for a PING; the others still go through the parser and are counted there.
    #[test]
    fn ping_fast_path_agrees_with_the_parser() {
        let now = Instant::now();
        let identity = Identity::from_seed(&[1; 4]);
        let config = EngineConfig::default();
        let mut engine = Engine::with_rng(identity, config, now, StdRng::seed_from_u64(1));
        let src: SocketAddr = "192.0.2.1:9".parse().unwrap();
        for len in 1..=PING_LEN + 3 {
            let mut datagram = vec![7u8; len];
            datagram[0] = kind::PING;
            let is_ping = matches!(Frame::parse(&datagram), Ok(Frame::Ping { .. }));
            let pings = engine.stats().frames(FrameKind::Ping);
            let malformed = engine.stats().drops(DropReason::Malformed);
            engine.handle_datagram(now, src, &datagram);
            let mut sent = Vec::new();
            engine.drain_transmits(|dst, bytes| sent.push((dst, bytes.to_vec())));
            let pong = Frame::Pong {
                id: *engine.identity().id(),
            };
            let expected = if is_ping {
                vec![(src, pong.to_vec().unwrap())]
            } else {
                Vec::new()
            };
            assert_eq!(sent, expected, "{len} bytes");
            assert_eq!(
                engine.stats().frames(FrameKind::Ping) - pings,
                u64::from(is_ping)
            );
            assert_eq!(
                engine.stats().drops(DropReason::Malformed) - malformed,
                u64::from(!is_ping)
            );
        }
    }
}
