//! The DHT node itself (sans-IO): answers PING, STORE, FIND_NODE and FIND_VALUE as
//! py-setowire's `SimpleDHT` does, joins other nodes, and announces its own values to the
//! nodes closest to their keys.
//!
//! Driven like the peer engine: [`Dht::handle_datagram`] with each received datagram,
//! [`Dht::handle_timeout`] when [`Dht::poll_timeout`] is due, and
//! [`Dht::drain_transmits`] for what to send.
//!
//! Hardening beyond `SimpleDHT`:
//! - An address is *verified* once it answered one of our requests (it echoed a random
//!   `rpcId` we sent there). Until then, everything sent in answer to one of its datagrams
//!   totals at most three times that datagram's size: node lists are cut short, replies that
//!   cannot be cut are withheld, and we send it a PING so that it can prove itself.
//!   Verification is per address (IP and port): that one port of a host answers does not
//!   make the host want our replies on every port.
//! - The routing table admits only nodes that answered us at the address recorded; nodes
//!   that stop answering are evicted.
//! - Our own requests (lookup queries, table checks) to addresses that have not proven
//!   themselves are probes, a few per IP per minute ([`super::probe`]), so that a node
//!   listing a victim's address in its answers cannot aim our lookups at it.
//! - Requests are rate-limited per source (IPv4 address, IPv6 prefix; [`super::prefix`])
//!   for the whole node: STOREs on one budget, PING, FIND_NODE and FIND_VALUE on another.
//!   One datagram carries one request, so each STORE pays for itself.
//! - STOREs from an unverified address wait (bounded) for its answer to our PING; stored
//!   values expire, belong to the source that stored them first, and are bounded by the
//!   memory they take, shared fairly between sources when full ([`super::storage`]).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use super::id::{HexId, NodeId};
use super::message::{self, append, Contact, MessageRef, MsgType, ParseError};
use super::probe::Probes;
use super::routing::{Admission, RoutingTable, K};
use super::storage::{Accepted, Rejected, Storage, StorageLimits};
use crate::ratelimit::{IpLimiter, Rate};
use crate::ratelimit::{SourceGroup, SourceGrouping, DEFAULT_IPV6_PREFIX};

/// Requests in flight in one lookup.
const ALPHA: usize = 3;
/// Candidates one lookup keeps, closest first.
const LOOKUP_WIDTH: usize = 3 * K;
/// Requests one lookup sends at most.
const LOOKUP_MAX_QUERIES: usize = 48;
/// Lookups running at once.
const MAX_LOOKUPS: usize = 8;
/// Bootstrap addresses kept.
const MAX_BOOTSTRAP: usize = 16;
/// STOREs waiting for their sender's address to be verified: per address and in all.
const HELD_PER_ADDR: usize = 4;
const HELD_MAX_BYTES: usize = 256 << 10;
/// Reply sizes for unverified sources are at most this multiple of the request.
pub const AMPLIFICATION_FACTOR: usize = 3;
/// Nodes that miss this many answers in a row leave the table.
const MAX_FAILURES: u8 = 2;
/// Stale table entries pinged per maintenance round.
const REFRESH_PINGS: usize = 64;
/// The timer granularity of the DHT.
const TICK: Duration = Duration::from_millis(250);
const MAINTENANCE: Duration = Duration::from_secs(5);
/// Bytes of the outgoing buffer kept between drains (more after a burst is given back).
const OUT_BYTES_KEPT: usize = 64 << 10;

/// The maps of the DHT, keyed by ids, addresses and `rpcId`s: ahash with random keys.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// How long a stored value lives without a new STORE.
    pub value_ttl: Duration,
    /// Memory the values stored for others may take: keys, values and bookkeeping.
    pub max_values_bytes: usize,
    /// Values one source (IPv4 address, IPv6 prefix) may hold.
    pub max_values_per_ip: usize,
    /// IPv6 sources are one source per prefix of this length.
    pub ipv6_prefix_len: u8,
    /// STOREs accepted per source, for the whole node.
    pub store_rate: Rate,
    /// PING, FIND_NODE and FIND_VALUE requests accepted per source, for the whole node.
    pub request_rate: Rate,
    /// Sources the rate limiters track at once (more share one overflow budget).
    pub rate_limit_sources: usize,
    /// Largest value stored, as JSON text.
    pub max_value_bytes: usize,
    /// Largest reply to a verified address (node lists are cut to fit). The default fits
    /// K = 20 IPv4 nodes and stays under the 2048 bytes another node receives on its port.
    pub max_reply_bytes: usize,
    /// How long an answer to our requests may take.
    pub rpc_timeout: Duration,
    /// A table node not heard from for this long may be replaced, and is pinged before.
    pub stale_after: Duration,
    /// Interval of the lookup of our own id that keeps the table fresh.
    pub refresh_interval: Duration,
    /// Interval at which our own values are stored again at the closest nodes.
    pub announce_interval: Duration,
    /// Interval of retries while no bootstrap node answered.
    pub bootstrap_retry: Duration,
    /// How long an answer keeps an address verified.
    pub verified_ttl: Duration,
    pub max_verified: usize,
    /// Our requests in flight at once.
    pub max_pending: usize,
    /// Datagrams waiting to be sent.
    pub max_out_queue: usize,
}

impl Default for DhtConfig {
    fn default() -> Self {
        Self {
            value_ttl: Duration::from_secs(3900),
            max_values_bytes: 16 << 20,
            max_values_per_ip: 256,
            ipv6_prefix_len: DEFAULT_IPV6_PREFIX,
            store_rate: Rate {
                per_second: 20.0,
                burst: 200.0,
            },
            request_rate: Rate {
                per_second: 100.0,
                burst: 500.0,
            },
            rate_limit_sources: 65_536,
            max_value_bytes: 1200,
            max_reply_bytes: 2000,
            rpc_timeout: Duration::from_secs(3),
            stale_after: Duration::from_secs(15 * 60),
            refresh_interval: Duration::from_secs(15 * 60),
            announce_interval: Duration::from_secs(10 * 60),
            bootstrap_retry: Duration::from_secs(30),
            verified_ttl: Duration::from_secs(3600),
            max_verified: 65_536,
            max_pending: 1024,
            max_out_queue: 4096,
        }
    }
}

/// Counters of one DHT node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhtStats {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    pub bytes_sent: u64,
    /// Not a DHT message (bad JSON, type or field); dropped.
    pub malformed: u64,
    /// Longer than [`message::MAX_DATAGRAM`]; dropped unparsed.
    pub too_large: u64,
    /// Dropped by the per-source rate limit (counted by whoever applies it).
    pub rate_limited: u64,
    /// STOREs over their source's STORE rate; dropped before any work.
    pub store_rate_limited: u64,
    /// PING, FIND_NODE and FIND_VALUE requests over their source's rate; dropped.
    pub request_rate_limited: u64,
    /// Claiming our own node id.
    pub own_id: u64,
    /// Replies nobody asked for, or arriving too late.
    pub unsolicited: u64,
    pub pings: u64,
    pub stores: u64,
    pub find_nodes: u64,
    pub find_values: u64,
    pub replies: u64,
    /// Replies to unverified addresses whose node list was cut to stay within the bound.
    pub replies_truncated: u64,
    /// Replies not sent because even the smallest form exceeded the bound.
    pub replies_withheld: u64,
    pub values_stored: u64,
    pub values_found: u64,
    pub store_too_large: u64,
    pub store_per_ip_full: u64,
    /// STOREs refused because the store was full and their source held its fair share.
    pub store_full: u64,
    /// STOREs refused because another source stored the key first and it has not expired.
    pub store_owned_by_other: u64,
    /// Values evicted to make room for a source below its fair share of a full store.
    pub values_evicted: u64,
    /// STOREs dropped while waiting for the sender's address to be verified.
    pub store_unverified_dropped: u64,
    /// STOREs for keys this node announces itself.
    pub store_own_key: u64,
    pub requests_sent: u64,
    /// Our requests not sent to an unverified address that had its probes for the minute.
    pub probes_withheld: u64,
    pub responses: u64,
    pub timeouts: u64,
    /// Requests not sent because too many were in flight.
    pub pending_full: u64,
    pub out_queue_full: u64,
    pub nodes_added: u64,
    pub nodes_evicted: u64,
    /// Verified nodes not kept because their bucket was full of live ones.
    pub table_full: u64,
    pub announces: u64,
}

/// What became of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Handled,
    Malformed(ParseError),
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// `id`: the table node being checked, if any.
    Ping { id: Option<NodeId> },
    FindNode {
        lookup: Option<u64>,
        id: Option<NodeId>,
        bootstrap: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    addr: SocketAddr,
    deadline: Instant,
    purpose: Purpose,
}

#[derive(Debug, Default)]
struct Held {
    since: Option<Instant>,
    values: Vec<(NodeId, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Join { announce_after: bool },
    Announce(NodeId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandidateState {
    Waiting,
    Asked,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Lookup {
    target: NodeId,
    goal: Goal,
    candidates: Vec<(Contact, CandidateState)>,
    in_flight: usize,
    queries: usize,
}

impl Lookup {
    fn merge(&mut self, me: &NodeId, contacts: impl IntoIterator<Item = Contact>) {
        for c in contacts {
            if c.id == *me || self.candidates.iter().any(|(k, _)| k.id == c.id) {
                continue;
            }
            let d = c.id.distance(&self.target);
            let pos = self
                .candidates
                .partition_point(|(k, _)| k.id.distance(&self.target) < d);
            if pos < LOOKUP_WIDTH {
                self.candidates.insert(pos, (c, CandidateState::Waiting));
                self.candidates.truncate(LOOKUP_WIDTH);
            }
        }
    }

    fn mark(&mut self, id: Option<NodeId>, addr: SocketAddr, state: CandidateState) {
        if let Some((_, s)) = self
            .candidates
            .iter_mut()
            .find(|(c, s)| *s == CandidateState::Asked && (Some(c.id) == id || c.addr == addr))
        {
            *s = state;
        }
    }

    /// The next candidate to ask: a waiting one among the K closest that have not failed.
    fn next(&mut self) -> Option<Contact> {
        self.candidates
            .iter_mut()
            .filter(|(_, s)| *s != CandidateState::Failed)
            .take(K)
            .find(|(_, s)| *s == CandidateState::Waiting)
            .map(|(c, s)| {
                *s = CandidateState::Asked;
                *c
            })
    }

    fn answered(&self) -> impl Iterator<Item = Contact> + '_ {
        self.candidates
            .iter()
            .filter(|(_, s)| *s == CandidateState::Answered)
            .map(|(c, _)| *c)
            .take(K)
    }
}

pub struct Dht {
    config: DhtConfig,
    id: NodeId,
    /// `id` spelled as the messages carry it.
    id_hex: HexId,
    rng: StdRng,
    table: RoutingTable,
    storage: Storage,
    /// Our own values (JSON text), served and announced, never expiring.
    local: HashMap<NodeId, String>,
    /// When each address last answered one of our requests.
    verified: HashMap<SocketAddr, Instant>,
    /// Our requests to addresses not verified, per IP.
    probes: Probes,
    store_limiter: IpLimiter,
    request_limiter: IpLimiter,
    pending: HashMap<u32, Pending>,
    /// Addresses with a PING of ours in flight.
    pinging: HashMap<SocketAddr, u32>,
    /// STOREs from unverified addresses, waiting for an answer to our PING.
    held: HashMap<SocketAddr, Held>,
    held_bytes: usize,
    lookups: HashMap<u64, Lookup>,
    next_lookup: u64,
    announce_queue: VecDeque<NodeId>,
    bootstrap: Vec<SocketAddr>,
    joined: bool,
    next_tick: Instant,
    next_maintenance: Instant,
    next_bootstrap: Option<Instant>,
    next_refresh: Instant,
    next_announce: Instant,
    /// Datagrams to send: where to, and where their bytes are in `out_bytes`.
    out: Vec<(SocketAddr, usize, usize)>,
    /// The bytes of the datagrams in `out`, one after the other; messages are written here.
    out_bytes: Vec<u8>,
    stats: DhtStats,
}

impl Dht {
    pub fn new(config: DhtConfig, id: NodeId, now: Instant, rng: StdRng) -> Self {
        let limits = StorageLimits {
            ttl: config.value_ttl,
            max_bytes: config.max_values_bytes,
            max_per_ip: config.max_values_per_ip,
            max_value: config.max_value_bytes,
        };
        Self {
            table: RoutingTable::new(id),
            storage: Storage::new(limits),
            local: HashMap::default(),
            verified: HashMap::default(),
            probes: Probes::new(config.max_verified),
            store_limiter: IpLimiter::new(config.store_rate, config.rate_limit_sources, now),
            request_limiter: IpLimiter::new(config.request_rate, config.rate_limit_sources, now),
            pending: HashMap::default(),
            pinging: HashMap::default(),
            held: HashMap::default(),
            held_bytes: 0,
            lookups: HashMap::default(),
            next_lookup: 0,
            announce_queue: VecDeque::new(),
            bootstrap: Vec::new(),
            joined: false,
            next_tick: now + TICK,
            next_maintenance: now + MAINTENANCE,
            next_bootstrap: None,
            next_refresh: now + config.refresh_interval,
            next_announce: now + config.announce_interval,
            out: Vec::new(),
            out_bytes: Vec::with_capacity(4096),
            stats: DhtStats::default(),
            config,
            id,
            id_hex: id.hex(),
            rng,
        }
    }

    pub fn id(&self) -> &NodeId {
        &self.id
    }

    pub fn config(&self) -> &DhtConfig {
        &self.config
    }

    pub fn stats(&self) -> &DhtStats {
        &self.stats
    }

    /// For callers that rate-limit before handing datagrams over.
    pub fn count_rate_limited(&mut self) {
        self.stats.rate_limited += 1;
    }

    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Puts back a value an earlier run stored for the source `owner` (its address, grouped
    /// by the configured IPv6 prefix), for `remaining` more (at most the TTL). Restore values
    /// soonest to expire first and before serving (see [`Storage::restore`]).
    pub fn restore_value(
        &mut self,
        now: Instant,
        key: NodeId,
        value: &str,
        owner: IpAddr,
        remaining: Duration,
    ) -> Result<(), Rejected> {
        let source = self.source(owner);
        self.storage
            .restore(key, value, source, now, remaining)
            .map(drop)
    }

    /// The value this node serves for the key hash `key`, if any (JSON text).
    pub fn value(&self, key: &NodeId, now: Instant) -> Option<&str> {
        self.local
            .get(key)
            .map(String::as_str)
            .or_else(|| self.storage.get(key, now))
    }

    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Whether `addr` answered one of our requests within [`DhtConfig::verified_ttl`].
    pub fn is_verified(&self, addr: SocketAddr, now: Instant) -> bool {
        self.verified
            .get(&addr)
            .is_some_and(|t| now.saturating_duration_since(*t) < self.config.verified_ttl)
    }

    /// Joins the DHT through these addresses (node ids unknown): asks each for the nodes
    /// closest to us, and keeps asking every [`DhtConfig::bootstrap_retry`] while the table
    /// is empty.
    pub fn bootstrap(&mut self, now: Instant, addrs: &[SocketAddr]) {
        self.bootstrap = addrs.iter().copied().take(MAX_BOOTSTRAP).collect();
        if !self.bootstrap.is_empty() {
            self.send_bootstrap(now);
        }
    }

    fn send_bootstrap(&mut self, now: Instant) {
        let target = self.id;
        for addr in self.bootstrap.clone() {
            self.request_find_node(
                now,
                addr,
                target,
                Purpose::FindNode {
                    lookup: None,
                    id: None,
                    bootstrap: true,
                },
            );
        }
        self.next_bootstrap = Some(now + self.config.bootstrap_retry);
    }

    /// Serves `value` (JSON text) under `key` (hashed with SHA-1 as `SimpleDHT` does) and
    /// stores it at the nodes closest to the key now and every announce interval.
    pub fn announce(&mut self, key: &str, value_json: String) -> NodeId {
        let hash = NodeId::of_key(key);
        self.local.insert(hash, value_json);
        if !self.announce_queue.contains(&hash) {
            self.announce_queue.push_back(hash);
        }
        hash
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        self.next_tick = now + TICK;
        self.expire_pending(now);
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.maintain(now);
        }
        if self.next_bootstrap.is_some_and(|t| now >= t) {
            if self.table.is_empty() {
                self.send_bootstrap(now);
            } else {
                self.next_bootstrap = None;
            }
        }
        if now >= self.next_refresh {
            self.next_refresh = now + self.config.refresh_interval;
            self.start_lookup(
                now,
                self.id,
                Goal::Join {
                    announce_after: false,
                },
                &[],
            );
        }
        if now >= self.next_announce {
            self.next_announce = now + self.config.announce_interval;
            self.queue_all_announces();
        }
        self.run_announce_queue(now);
    }

    /// Sends what is queued, oldest first.
    pub fn drain_transmits(&mut self, mut sink: impl FnMut(SocketAddr, &[u8])) {
        let bytes = &self.out_bytes;
        for (dst, start, end) in self.out.drain(..) {
            self.stats.datagrams_sent += 1;
            self.stats.bytes_sent += (end - start) as u64;
            sink(dst, &bytes[start..end]);
        }
        if self.out_bytes.capacity() > OUT_BYTES_KEPT {
            self.out_bytes = Vec::with_capacity(OUT_BYTES_KEPT);
        } else {
            self.out_bytes.clear();
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Outcome {
        self.stats.datagrams_received += 1;
        let msg = match MessageRef::parse(datagram) {
            Ok(msg) => msg,
            Err(e) => {
                match e {
                    ParseError::TooLarge => self.stats.too_large += 1,
                    _ => self.stats.malformed += 1,
                }
                return Outcome::Malformed(e);
            }
        };
        if msg.from == Some(self.id) {
            self.stats.own_id += 1;
            return Outcome::Handled;
        }
        if let Some(rpc) = msg.rpc_id.as_deref().and_then(message::parse_rpc_id) {
            if self.pending.get(&rpc).is_some_and(|p| p.addr == src) {
                let pending = self.pending.remove(&rpc).expect("checked above");
                self.on_response(now, src, &msg, pending.purpose, rpc);
                return Outcome::Handled;
            }
        }
        match msg.kind {
            MsgType::Ping => self.stats.pings += 1,
            MsgType::Store => self.stats.stores += 1,
            MsgType::FindNode => self.stats.find_nodes += 1,
            MsgType::FindValue => self.stats.find_values += 1,
            MsgType::Pong | MsgType::FoundNode | MsgType::FoundVal => {
                self.stats.unsolicited += 1;
                return Outcome::Handled;
            }
        }
        if !self.within_rate(now, src.ip(), msg.kind) {
            return Outcome::Handled;
        }
        let verified = self.is_verified(src, now);
        // Bytes we may still send in answer to this datagram.
        let mut budget = if verified {
            usize::MAX
        } else {
            AMPLIFICATION_FACTOR * datagram.len()
        };
        let ping_wanted = self.wants_ping(now, src, &msg, verified);
        // What a PING to an unverified sender costs, reserved where the reply can shrink.
        let ping_cost = if ping_wanted && !verified {
            PING_LEN
        } else {
            0
        };
        match msg.kind {
            MsgType::Ping => {
                let start = self.out_bytes.len();
                append::pong(
                    &mut self.out_bytes,
                    self.id_hex.as_bytes(),
                    msg.rpc_id.as_deref(),
                );
                self.reply(src, start, &mut budget);
            }
            MsgType::FindNode => {
                let Some(target) = msg.target else {
                    self.stats.malformed += 1;
                    return Outcome::Malformed(ParseError::BadField("target"));
                };
                self.reply_nodes(src, &msg, &target, &mut budget, ping_cost, verified);
            }
            MsgType::FindValue => {
                let Some(key) = msg.key else {
                    self.stats.malformed += 1;
                    return Outcome::Malformed(ParseError::BadField("key"));
                };
                let start = self.out_bytes.len();
                let value = match self.local.get(&key) {
                    Some(value) => Some(value.as_str()),
                    None => self.storage.get(&key, now),
                };
                let found = match value {
                    Some(value) => {
                        append::found_val(
                            &mut self.out_bytes,
                            self.id_hex.as_bytes(),
                            value,
                            msg.rpc_id.as_deref(),
                        );
                        // Too big for an unverified address: it gets nodes (and our PING)
                        // instead, and the value once it has answered.
                        self.out_bytes.len() - start <= budget
                    }
                    None => false,
                };
                if found {
                    self.stats.values_found += 1;
                    self.reply(src, start, &mut budget);
                } else {
                    self.out_bytes.truncate(start);
                    self.reply_nodes(src, &msg, &key, &mut budget, ping_cost, verified);
                }
            }
            MsgType::Store => {
                let (Some(key), Some(value)) = (msg.key, msg.value.as_deref()) else {
                    self.stats.malformed += 1;
                    return Outcome::Malformed(ParseError::BadField("key/value"));
                };
                self.on_store(now, src, key, value, verified);
            }
            // Counted as unsolicited above.
            MsgType::Pong | MsgType::FoundNode | MsgType::FoundVal => {}
        }
        let hold_waiting = self.held.contains_key(&src);
        if (ping_wanted || hold_waiting) && !self.pinging.contains_key(&src) && PING_LEN <= budget {
            self.send_ping(now, src, None);
        }
        Outcome::Handled
    }

    /// The source `ip` is charged to.
    fn source(&self, ip: IpAddr) -> SourceGroup {
        SourceGrouping::new(self.config.ipv6_prefix_len).group_of(ip)
    }

    /// Takes a request of `kind` from `ip` out of its source's budget (STOREs and the other
    /// requests each have theirs); false, counted, when that budget is spent.
    fn within_rate(&mut self, now: Instant, ip: IpAddr, kind: MsgType) -> bool {
        let source = self.source(ip).addr();
        if kind == MsgType::Store {
            let allowed = self.store_limiter.allow(source, now);
            self.stats.store_rate_limited += u64::from(!allowed);
            allowed
        } else {
            let allowed = self.request_limiter.allow(source, now);
            self.stats.request_rate_limited += u64::from(!allowed);
            allowed
        }
    }

    /// Whether `msg`'s sender should get a PING: an unverified address (so that it can
    /// prove itself), or a node we do not know and could keep.
    fn wants_ping(
        &self,
        now: Instant,
        src: SocketAddr,
        msg: &MessageRef<'_>,
        verified: bool,
    ) -> bool {
        if self.pinging.contains_key(&src) {
            return false;
        }
        if !verified {
            return true;
        }
        let Some(from) = msg.from else {
            return false;
        };
        match self.table.get(&from) {
            Some(entry) => entry.contact.addr != src && entry.failures > 0,
            None => self.table.could_admit(&from, now, self.config.stale_after),
        }
    }

    fn reply_nodes(
        &mut self,
        src: SocketAddr,
        msg: &MessageRef<'_>,
        target: &NodeId,
        budget: &mut usize,
        ping_cost: usize,
        verified: bool,
    ) {
        let limit = self
            .config
            .max_reply_bytes
            .min(budget.saturating_sub(ping_cost));
        let start = self.out_bytes.len();
        // The K + 1 closest, less the asker itself, at most K.
        let mut offered = 0;
        let nodes = self
            .table
            .closest_iter(target, K + 1)
            .filter(|e| Some(e.contact.id) != msg.from && e.contact.addr != src)
            .take(K)
            .inspect(|_| offered += 1)
            .map(|e| e.json_bytes());
        let written = append::found_node(
            &mut self.out_bytes,
            self.id_hex.as_bytes(),
            nodes,
            msg.rpc_id.as_deref(),
            limit,
        );
        // The list stops at the first node that does not fit, which was offered.
        if written < offered && !verified {
            self.stats.replies_truncated += 1;
        }
        self.reply(src, start, budget);
    }

    /// Sends the message written to `out_bytes` from `start` to `dst` if it fits the budget.
    fn reply(&mut self, dst: SocketAddr, start: usize, budget: &mut usize) {
        let len = self.out_bytes.len() - start;
        if len > *budget {
            self.out_bytes.truncate(start);
            self.stats.replies_withheld += 1;
            return;
        }
        *budget -= len;
        self.stats.replies += 1;
        self.push_out(dst, start);
    }

    /// Queues the message written to `out_bytes` from `start` for `dst`.
    fn push_out(&mut self, dst: SocketAddr, start: usize) -> bool {
        if self.out.len() >= self.config.max_out_queue {
            self.stats.out_queue_full += 1;
            self.out_bytes.truncate(start);
            return false;
        }
        self.out.push((dst, start, self.out_bytes.len()));
        true
    }

    fn on_store(
        &mut self,
        now: Instant,
        src: SocketAddr,
        key: NodeId,
        value: &str,
        verified: bool,
    ) {
        if value.len() > self.config.max_value_bytes {
            self.stats.store_too_large += 1;
            return;
        }
        if self.local.contains_key(&key) {
            self.stats.store_own_key += 1;
            return;
        }
        if verified {
            self.put(now, src.ip(), key, value);
            return;
        }
        // Hold it until the sender answers our PING (sent by the caller).
        let held = self.held.entry(src).or_default();
        held.since.get_or_insert(now);
        let replaced = held
            .values
            .iter()
            .position(|(k, _)| *k == key)
            .map(|i| held.values.remove(i).1.len())
            .unwrap_or(0);
        self.held_bytes -= replaced;
        if held.values.len() >= HELD_PER_ADDR || self.held_bytes + value.len() > HELD_MAX_BYTES {
            self.stats.store_unverified_dropped += 1;
            if held.values.is_empty() {
                self.held.remove(&src);
            }
            return;
        }
        self.held_bytes += value.len();
        held.values.push((key, value.to_owned()));
    }

    fn put(&mut self, now: Instant, ip: IpAddr, key: NodeId, value: &str) {
        let source = self.source(ip);
        match self.storage.put(key, value, source, now) {
            Ok(Accepted { evicted }) => {
                self.stats.values_stored += 1;
                self.stats.values_evicted += evicted as u64;
            }
            Err(Rejected::TooLarge) => self.stats.store_too_large += 1,
            Err(Rejected::PerIpFull) => self.stats.store_per_ip_full += 1,
            Err(Rejected::Full) => self.stats.store_full += 1,
            Err(Rejected::OwnedByOther) => self.stats.store_owned_by_other += 1,
        }
    }

    fn drop_held(&mut self, addr: &SocketAddr) -> Vec<(NodeId, String)> {
        let list = self.held.remove(addr).unwrap_or_default().values;
        self.held_bytes -= list.iter().map(|(_, v)| v.len()).sum::<usize>();
        list
    }

    fn on_response(
        &mut self,
        now: Instant,
        src: SocketAddr,
        msg: &MessageRef<'_>,
        purpose: Purpose,
        rpc: u32,
    ) {
        self.stats.responses += 1;
        if self.pinging.get(&src) == Some(&rpc) {
            self.pinging.remove(&src);
        }
        self.mark_verified(now, src);
        for (key, value) in self.drop_held(&src) {
            self.put(now, src.ip(), key, &value);
        }
        if let Some(from) = msg.from {
            self.admit(
                now,
                Contact {
                    id: from,
                    addr: src,
                },
            );
        }
        match purpose {
            Purpose::Ping { .. } => {}
            Purpose::FindNode {
                lookup, bootstrap, ..
            } => {
                let nodes: Vec<Contact> = if msg.kind == MsgType::FoundNode {
                    msg.nodes.clone()
                } else {
                    Vec::new()
                };
                if let Some(lid) = lookup {
                    if let Some(l) = self.lookups.get_mut(&lid) {
                        l.in_flight = l.in_flight.saturating_sub(1);
                        l.mark(msg.from, src, CandidateState::Answered);
                        l.merge(&self.id, nodes);
                    }
                    self.step_lookup(now, lid);
                } else if bootstrap {
                    let mut seeds = nodes;
                    if let Some(from) = msg.from {
                        seeds.push(Contact {
                            id: from,
                            addr: src,
                        });
                    }
                    if !self.joined {
                        self.joined = true;
                        let target = self.id;
                        self.start_lookup(
                            now,
                            target,
                            Goal::Join {
                                announce_after: true,
                            },
                            &seeds,
                        );
                    }
                }
            }
        }
    }

    fn admit(&mut self, now: Instant, contact: Contact) {
        let was_empty = self.table.is_empty();
        match self.table.admit(contact, now, self.config.stale_after) {
            Admission::Added => {
                self.stats.nodes_added += 1;
                // The first node we know: our values can go somewhere now.
                if was_empty {
                    self.queue_all_announces();
                }
            }
            Admission::Replaced(_) => {
                self.stats.nodes_added += 1;
                self.stats.nodes_evicted += 1;
            }
            Admission::Full => self.stats.table_full += 1,
            Admission::Updated | Admission::IsSelf | Admission::AddressConflict => {}
        }
    }

    fn mark_verified(&mut self, now: Instant, addr: SocketAddr) {
        if self.verified.len() >= self.config.max_verified && !self.verified.contains_key(&addr) {
            let ttl = self.config.verified_ttl;
            self.verified
                .retain(|_, t| now.saturating_duration_since(*t) < ttl);
            if self.verified.len() >= self.config.max_verified {
                return;
            }
        }
        self.verified.insert(addr, now);
    }

    fn new_rpc(&mut self, now: Instant, addr: SocketAddr, purpose: Purpose) -> Option<u32> {
        if self.pending.len() >= self.config.max_pending {
            self.stats.pending_full += 1;
            return None;
        }
        let rpc = loop {
            let rpc: u32 = self.rng.gen();
            if !self.pending.contains_key(&rpc) {
                break rpc;
            }
        };
        self.pending.insert(
            rpc,
            Pending {
                addr,
                deadline: now + self.config.rpc_timeout,
                purpose,
            },
        );
        self.stats.requests_sent += 1;
        Some(rpc)
    }

    fn send_ping(&mut self, now: Instant, dst: SocketAddr, id: Option<NodeId>) {
        let Some(rpc) = self.new_rpc(now, dst, Purpose::Ping { id }) else {
            return;
        };
        self.pinging.insert(dst, rpc);
        let start = self.out_bytes.len();
        append::ping(&mut self.out_bytes, self.id_hex.as_bytes(), rpc);
        self.push_out(dst, start);
    }

    fn request_find_node(
        &mut self,
        now: Instant,
        dst: SocketAddr,
        target: NodeId,
        purpose: Purpose,
    ) -> bool {
        // The operator named bootstrap nodes; any other may be a victim's address.
        let bootstrap = matches!(
            purpose,
            Purpose::FindNode {
                bootstrap: true,
                ..
            }
        );
        if !bootstrap && !self.may_probe(now, dst) {
            return false;
        }
        let Some(rpc) = self.new_rpc(now, dst, purpose) else {
            return false;
        };
        let start = self.out_bytes.len();
        append::find_node(&mut self.out_bytes, self.id_hex.as_bytes(), &target, rpc);
        self.push_out(dst, start)
    }

    /// Whether a request of ours may go to `dst`: always once it is verified, else as one
    /// of the few probes its IP gets per minute (counted when withheld).
    fn may_probe(&mut self, now: Instant, dst: SocketAddr) -> bool {
        if self.is_verified(dst, now) || self.probes.allow(dst.ip(), now) {
            return true;
        }
        self.stats.probes_withheld += 1;
        false
    }

    fn expire_pending(&mut self, now: Instant) {
        let expired: Vec<(u32, Pending)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(rpc, p)| (*rpc, *p))
            .collect();
        for (rpc, p) in expired {
            self.pending.remove(&rpc);
            self.stats.timeouts += 1;
            if self.pinging.get(&p.addr) == Some(&rpc) {
                self.pinging.remove(&p.addr);
                let dropped = self.drop_held(&p.addr).len();
                self.stats.store_unverified_dropped += dropped as u64;
            }
            match p.purpose {
                Purpose::Ping { id } => {
                    if let Some(id) = id {
                        self.node_failed(&id, p.addr);
                    }
                }
                Purpose::FindNode { lookup, id, .. } => {
                    if let Some(id) = id {
                        self.node_failed(&id, p.addr);
                    }
                    if let Some(lid) = lookup {
                        if let Some(l) = self.lookups.get_mut(&lid) {
                            l.in_flight = l.in_flight.saturating_sub(1);
                            l.mark(id, p.addr, CandidateState::Failed);
                        }
                        self.step_lookup(now, lid);
                    }
                }
            }
        }
    }

    fn node_failed(&mut self, id: &NodeId, addr: SocketAddr) {
        if self.table.get(id).is_some_and(|e| e.contact.addr == addr)
            && self.table.failed(id, MAX_FAILURES)
        {
            self.stats.nodes_evicted += 1;
        }
    }

    fn maintain(&mut self, now: Instant) {
        self.storage.expire(now);
        // Held STOREs whose PING could not be sent or went unanswered.
        let stale_held: Vec<SocketAddr> = self
            .held
            .iter()
            .filter(|(addr, h)| {
                !self.pinging.contains_key(addr)
                    && h.since.is_some_and(|t| {
                        now.saturating_duration_since(t) >= self.config.rpc_timeout
                    })
            })
            .map(|(addr, _)| *addr)
            .collect();
        for addr in stale_held {
            let dropped = self.drop_held(&addr).len();
            self.stats.store_unverified_dropped += dropped as u64;
        }
        let ttl = self.config.verified_ttl;
        self.verified
            .retain(|_, t| now.saturating_duration_since(*t) < ttl);
        self.probes.sweep(now);
        self.store_limiter.sweep(now);
        self.request_limiter.sweep(now);
        // Nodes quiet for a third of the stale time are asked whether they are still there.
        let quiet = self.config.stale_after / 3;
        for contact in self.table.stale(now, quiet, REFRESH_PINGS) {
            if !self.pinging.contains_key(&contact.addr) && self.may_probe(now, contact.addr) {
                self.send_ping(now, contact.addr, Some(contact.id));
            }
        }
    }

    fn queue_all_announces(&mut self) {
        let keys: Vec<NodeId> = self.local.keys().copied().collect();
        for key in keys {
            if !self.announce_queue.contains(&key) {
                self.announce_queue.push_back(key);
            }
        }
    }

    fn run_announce_queue(&mut self, now: Instant) {
        if self.table.is_empty() {
            return;
        }
        while self.lookups.len() < MAX_LOOKUPS {
            let Some(key) = self.announce_queue.pop_front() else {
                break;
            };
            if self.local.contains_key(&key) {
                self.start_lookup(now, key, Goal::Announce(key), &[]);
            }
        }
    }

    fn start_lookup(&mut self, now: Instant, target: NodeId, goal: Goal, seeds: &[Contact]) {
        if self.lookups.len() >= MAX_LOOKUPS {
            if let Goal::Announce(key) = goal {
                self.announce_queue.push_back(key);
            }
            return;
        }
        let lid = self.next_lookup;
        self.next_lookup += 1;
        let mut lookup = Lookup {
            target,
            goal,
            candidates: Vec::new(),
            in_flight: 0,
            queries: 0,
        };
        lookup.merge(&self.id, self.table.closest(&target, K));
        lookup.merge(&self.id, seeds.iter().copied());
        self.lookups.insert(lid, lookup);
        self.step_lookup(now, lid);
    }

    fn step_lookup(&mut self, now: Instant, lid: u64) {
        loop {
            let Some(l) = self.lookups.get_mut(&lid) else {
                return;
            };
            if l.in_flight >= ALPHA || l.queries >= LOOKUP_MAX_QUERIES {
                break;
            }
            let Some(next) = l.next() else { break };
            l.in_flight += 1;
            l.queries += 1;
            let target = l.target;
            let purpose = Purpose::FindNode {
                lookup: Some(lid),
                id: Some(next.id),
                bootstrap: false,
            };
            if !self.request_find_node(now, next.addr, target, purpose) {
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.in_flight -= 1;
                    l.mark(Some(next.id), next.addr, CandidateState::Failed);
                }
            }
        }
        if self.lookups.get(&lid).is_some_and(|l| l.in_flight == 0) {
            if let Some(l) = self.lookups.remove(&lid) {
                self.finish_lookup(now, l);
            }
        }
    }

    fn finish_lookup(&mut self, now: Instant, lookup: Lookup) {
        match lookup.goal {
            Goal::Join { announce_after } => {
                if announce_after {
                    self.queue_all_announces();
                    self.run_announce_queue(now);
                }
            }
            Goal::Announce(key) => {
                if !self.local.contains_key(&key) {
                    return;
                }
                for c in lookup.answered() {
                    let start = self.out_bytes.len();
                    append::store(
                        &mut self.out_bytes,
                        self.id_hex.as_bytes(),
                        &key,
                        &self.local[&key],
                    );
                    self.push_out(c.addr, start);
                }
                self.stats.announces += 1;
            }
        }
    }
}

/// The length of our PING: `{"type": 1, "from": "<40 hex>", "rpcId": "<8 hex>"}`.
pub const PING_LEN: usize = 84;

#[cfg(test)]
mod tests;
