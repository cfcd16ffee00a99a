//! `dht`: load on a JSON DHT (py-setowire's `SimpleDHT` protocol), as the node serves it on
//! its UDP port (datagrams starting with `{`) or on `dht_listen`, or as a `SimpleDHT` process
//! does.
//!
//! Every virtual peer is a DHT client with its own node id and its own 127/8 source address.
//! Operations, chosen per client in turn:
//! - FIND_NODE of a random target: done when FOUND_NODE comes back with the request's `rpcId`
//!   (the default operation, 3 in 4 with the default mix);
//! - STORE of a fresh value under one of the client's keys, then at once FIND_VALUE of that
//!   key: STORE has no reply in `SimpleDHT`, so it only counts as sent; the operation is the
//!   FIND_VALUE, done when FOUND_VAL brings back exactly the value just stored, an error when
//!   it brings another one or FOUND_NODE (the value is not there).
//!
//! `--dht-store-every N` makes every Nth operation of a client a STORE+FIND_VALUE (default 4;
//! 0: FIND_NODE only).
//!
//! Before the load, each client PINGs the target and answers the PING the node sends back to
//! addresses it has not heard from: the node keeps STOREs from an unverified address (and
//! trims its replies to it) until that address has answered one of its requests. Clients
//! answer the target's own requests (PING, FIND_NODE, FIND_VALUE) throughout.
//!
//! Each client uses a bounded set of keys, so that all clients together stay well under the
//! node's DHT store limits (`dht_max_values_per_ip`, `dht_max_values_bytes`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use setowire_core::dht::message::{self, Message, MsgType};
use setowire_core::dht::NodeId;

use crate::cli::is_local;
use crate::net::{batch_was_full, Inbox, PeerNet};
use crate::report::Recorder;
use crate::run::{Ctx, DRAIN, SETUP_LIMIT};

/// Bytes of a stored value (the JSON string's contents) without `--payload`.
const DEFAULT_VALUE_BYTES: usize = 32;
/// Largest value: the node stores values of up to 1200 bytes of JSON text.
const MAX_VALUE_BYTES: usize = 1000;
/// Bytes of stored values all clients together aim to stay under (the node keeps 16 MiB by
/// default, counting 96 bytes of bookkeeping per value).
const STORE_BUDGET: usize = 8 << 20;
const STORE_OVERHEAD: usize = 96;
/// Keys per client at most (a bit each in a u64).
const MAX_KEYS: u32 = 64;
/// Set-up PINGs in flight per worker, and how long each waits before it is sent again.
const SETUP_WINDOW: usize = 256;
const SETUP_RETRY: Duration = Duration::from_millis(500);
const SETUP_ATTEMPTS: u8 = 3;
/// After its PONG, how long a client keeps answering before the load starts (the node's own
/// PING follows its PONG).
const SETUP_SETTLE: Duration = Duration::from_millis(100);
/// Largest reply to the target's requests.
const REPLY_LIMIT: usize = 1400;

/// What a request in flight was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Setup,
    FindNode,
    /// The FIND_VALUE after a STORE of value number `seq` under key number `key`.
    FindValue {
        key: u32,
        seq: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    slot: u32,
    op: Op,
    sent: Instant,
}

struct Client {
    id: NodeId,
    /// Operations started.
    ops: u64,
    /// Keys with a FIND_VALUE in flight, one bit each.
    busy: u64,
    setup_attempts: u8,
}

/// How a worker picks operations.
#[derive(Debug, Clone, Copy)]
struct Mix {
    /// Every this many operations of a client, one is STORE+FIND_VALUE; 0: never.
    store_every: u64,
    /// Keys per client.
    keys: u32,
    value_bytes: usize,
}

impl Mix {
    fn new(peers: usize, payload: Option<usize>, store_every: u64) -> Mix {
        let value_bytes = payload.unwrap_or(DEFAULT_VALUE_BYTES).min(MAX_VALUE_BYTES);
        let per_value = value_bytes + 2 + STORE_OVERHEAD;
        let keys = (STORE_BUDGET / per_value / peers.max(1)).clamp(1, MAX_KEYS as usize) as u32;
        Mix {
            store_every,
            keys,
            value_bytes,
        }
    }

    /// The operation number `n` of a client: FIND_NODE, or STORE+FIND_VALUE of key `Some(k)`.
    fn store_key(&self, n: u64) -> Option<u32> {
        if self.store_every == 0 || n % self.store_every != self.store_every - 1 {
            return None;
        }
        Some(((n / self.store_every) % u64::from(self.keys)) as u32)
    }
}

/// `{"type": 6, "from": ..., "key": ..., "rpcId": ...}`: the one request `message` has no
/// writer for (the node never sends FIND_VALUE itself).
fn write_find_value(out: &mut String, from: &NodeId, key: &NodeId, rpc: u32) {
    out.clear();
    out.push_str("{\"type\": 6, \"from\": \"");
    from.write_hex(out);
    out.push_str("\", \"key\": \"");
    key.write_hex(out);
    out.push_str("\", \"rpcId\": ");
    out.push_str(&message::rpc_id_text(rpc));
    out.push('}');
}

/// The DHT key of key number `key` of virtual peer `peer`.
fn key_hash(peer: u32, key: u32) -> NodeId {
    NodeId::of_key(&format!("setowire-sim:{peer}:{key}"))
}

/// The value stored the `seq`th time, as JSON text: a string of `bytes` characters that
/// names who stored it and when, so that a stale or foreign value cannot pass for it.
fn value_json(peer: u32, key: u32, seq: u64, bytes: usize) -> String {
    let mut text = format!("sim {peer} {key} {seq} ");
    while text.len() < bytes {
        text.push('.');
    }
    serde_json::Value::String(text).to_string()
}

/// Counts kept while setting up, reported as notes.
#[derive(Default)]
struct SetupCounts {
    pongs: u64,
    failed: u64,
    /// PINGs from the target (the node checking our addresses), answered.
    target_pings: u64,
}

/// One worker's clients and what they have in flight. The socket is kept apart, so that
/// received datagrams can be handled while it is borrowed.
struct State {
    target: SocketAddr,
    first: u32,
    clients: Vec<Client>,
    pending: HashMap<u32, Pending>,
    /// Every request in the order sent, for expiry; answered ones are skipped.
    order: VecDeque<(Instant, u32)>,
    next_rpc: u32,
    rng: StdRng,
    mix: Mix,
    timeout: Duration,
    closed_loop: bool,
    /// Closed loop: one entry per free in-flight place, by client.
    ready: VecDeque<u32>,
    /// Open loop: the next client in turn.
    next_client: usize,
    /// Load operations in flight (set-up PINGs not counted).
    outstanding: usize,
    /// Answers to the target's own requests, sent after the datagrams are handled.
    outbox: Vec<(u32, SocketAddr, String)>,
    buf: String,
    setup: SetupCounts,
}

impl State {
    fn new(ctx: &Ctx, first: u32, count: u32, mix: Mix) -> State {
        let mut rng = StdRng::from_entropy();
        let clients = (0..count)
            .map(|_| Client {
                id: NodeId::random(&mut rng),
                ops: 0,
                busy: 0,
                setup_attempts: 0,
            })
            .collect();
        let in_flight = ctx.opts.options.in_flight;
        // Interleaved, so that every client gets its first operation before any its second.
        let ready = (0..in_flight).flat_map(|_| 0..count).collect();
        State {
            target: ctx.opts.dht_target,
            first,
            clients,
            pending: HashMap::new(),
            order: VecDeque::new(),
            next_rpc: rng.gen(),
            rng,
            mix,
            timeout: ctx.opts.timeout,
            closed_loop: ctx.opts.options.rate.is_none(),
            ready,
            next_client: 0,
            outstanding: 0,
            outbox: Vec::new(),
            buf: String::with_capacity(2048),
            setup: SetupCounts::default(),
        }
    }

    fn rpc(&mut self, now: Instant, slot: u32, op: Op) -> u32 {
        // Unique among those in flight: the counter wraps after 2^32 requests.
        let rpc = self.next_rpc;
        self.next_rpc = self.next_rpc.wrapping_add(1);
        self.pending.insert(
            rpc,
            Pending {
                slot,
                op,
                sent: now,
            },
        );
        self.order.push_back((now, rpc));
        rpc
    }

    fn send_setup_ping(&mut self, net: &mut PeerNet, now: Instant, slot: u32) {
        let rpc = self.rpc(now, slot, Op::Setup);
        let id = self.clients[slot as usize].id;
        self.clients[slot as usize].setup_attempts += 1;
        message::write_ping(&mut self.buf, &id, rpc);
        net.send(slot, self.target, self.buf.as_bytes());
    }

    /// Starts the next operation: of the next client with room (closed loop) or in turn
    /// (open loop). False when none can start.
    fn start(&mut self, net: &mut PeerNet, now: Instant, rec: &mut Recorder) -> bool {
        let slot = if self.closed_loop {
            match self.ready.pop_front() {
                Some(slot) => slot,
                None => return false,
            }
        } else {
            if self.clients.is_empty() {
                return false;
            }
            let slot = self.next_client as u32;
            self.next_client = (self.next_client + 1) % self.clients.len();
            slot
        };
        let peer = self.first + slot;
        let client = &mut self.clients[slot as usize];
        let n = client.ops;
        client.ops += 1;
        let id = client.id;
        let store = self
            .mix
            .store_key(n)
            .filter(|&key| client.busy & (1 << key) == 0);
        match store {
            Some(key) => {
                client.busy |= 1 << key;
                let hash = key_hash(peer, key);
                let value = value_json(peer, key, n, self.mix.value_bytes);
                message::write_store(&mut self.buf, &id, &hash, &value);
                net.send(slot, self.target, self.buf.as_bytes());
                let rpc = self.rpc(now, slot, Op::FindValue { key, seq: n });
                write_find_value(&mut self.buf, &id, &hash, rpc);
                net.send(slot, self.target, self.buf.as_bytes());
                // The STORE counts as sent too; only the FIND_VALUE can complete.
                rec.sent(now, 2);
                rec.note("store", 1);
            }
            None => {
                let target = NodeId::random(&mut self.rng);
                let rpc = self.rpc(now, slot, Op::FindNode);
                message::write_find_node(&mut self.buf, &id, &target, rpc);
                net.send(slot, self.target, self.buf.as_bytes());
                rec.sent(now, 1);
            }
        }
        self.outstanding += 1;
        true
    }

    /// An operation of client `slot` ended one way or the other.
    fn finished(&mut self, slot: u32, op: Op) {
        if let Op::FindValue { key, .. } = op {
            self.clients[slot as usize].busy &= !(1 << key);
        }
        if op != Op::Setup {
            self.outstanding -= 1;
            if self.closed_loop {
                self.ready.push_back(slot);
            }
        }
    }

    /// A datagram for client `slot`. `rec` is None while setting up.
    fn on_datagram(
        &mut self,
        now: Instant,
        slot: u32,
        from: SocketAddr,
        data: &[u8],
        mut rec: Option<&mut Recorder>,
    ) {
        let mut note = |name: &'static str| {
            if let Some(rec) = rec.as_deref_mut() {
                rec.note(name, 1);
            }
        };
        let msg = match Message::parse(data) {
            Ok(msg) => msg,
            Err(_) => {
                note("malformed_reply");
                return;
            }
        };
        let id = self.clients[slot as usize].id;
        match msg.kind {
            MsgType::Ping => {
                note("target_pings");
                if rec.is_none() {
                    self.setup.target_pings += 1;
                }
                message::write_pong(&mut self.buf, &id, msg.rpc_id.as_deref());
                self.outbox.push((slot, from, self.buf.clone()));
                return;
            }
            MsgType::FindNode | MsgType::FindValue => {
                note("target_requests");
                message::write_found_node(
                    &mut self.buf,
                    &id,
                    &[],
                    msg.rpc_id.as_deref(),
                    REPLY_LIMIT,
                );
                self.outbox.push((slot, from, self.buf.clone()));
                return;
            }
            MsgType::Store => {
                note("target_stores");
                return;
            }
            MsgType::Pong | MsgType::FoundNode | MsgType::FoundVal => {}
        }
        let Some(rpc) = msg.rpc_id.as_deref().and_then(message::parse_rpc_id) else {
            note("unknown_reply");
            return;
        };
        // Late (after its timeout) or not ours: nothing waits for it.
        let Some(p) = self.pending.get(&rpc).copied().filter(|p| p.slot == slot) else {
            note("late_reply");
            return;
        };
        self.pending.remove(&rpc);
        self.finished(slot, p.op);
        let latency = now.saturating_duration_since(p.sent);
        match p.op {
            Op::Setup => self.setup.pongs += 1,
            Op::FindNode => {
                let Some(rec) = rec else { return };
                if msg.kind == MsgType::FoundNode {
                    rec.note("find_node", 1);
                    rec.done(now, latency);
                } else {
                    rec.note("find_node_wrong_reply", 1);
                    rec.error(now, 1);
                }
            }
            Op::FindValue { key, seq } => {
                let Some(rec) = rec else { return };
                let expected = value_json(self.first + slot, key, seq, self.mix.value_bytes);
                match (msg.kind, msg.value.as_deref()) {
                    (MsgType::FoundVal, Some(value)) if same_json(value, &expected) => {
                        rec.note("find_value", 1);
                        rec.done(now, latency);
                    }
                    (MsgType::FoundVal, _) => {
                        rec.note("find_value_mismatch", 1);
                        rec.error(now, 1);
                    }
                    _ => {
                        rec.note("find_value_missing", 1);
                        rec.error(now, 1);
                    }
                }
            }
        }
    }

    /// Gives up on requests sent before `cutoff`; each goes to `gone`.
    fn expire(&mut self, cutoff: Instant, mut gone: impl FnMut(Pending)) {
        while let Some(&(at, rpc)) = self.order.front() {
            if at >= cutoff {
                break;
            }
            self.order.pop_front();
            if let Some(p) = self.pending.remove(&rpc) {
                self.finished(p.slot, p.op);
                gone(p);
            }
        }
    }

    fn flush_outbox(&mut self, net: &mut PeerNet) {
        for (slot, dst, bytes) in self.outbox.drain(..) {
            net.send(slot, dst, bytes.as_bytes());
        }
    }
}

/// Whether two JSON texts are the same value (the target may space or escape it its own way).
fn same_json(got: &str, expected: &str) -> bool {
    got == expected
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(got),
                serde_json::from_str::<serde_json::Value>(expected),
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    let opts = &ctx.opts;
    let target = opts.dht_target;
    if is_local(target.ip()) && !target.is_ipv4() {
        anyhow::bail!("DHT clients use 127.0.0.0/8 source addresses: give an IPv4 --dht-target");
    }
    let mix = Mix::new(
        opts.options.peers,
        opts.options.payload,
        opts.options.dht_store_every,
    );
    let threads = opts.options.threads.min(opts.options.peers);
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let barrier = &barrier;
                scope.spawn(move || worker(ctx, index, threads, mix, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect()
    })
}

fn worker(
    ctx: &Ctx,
    index: usize,
    threads: usize,
    mix: Mix,
    barrier: &Barrier,
) -> anyhow::Result<Recorder> {
    let set_up = || -> anyhow::Result<(PeerNet, State)> {
        let (first, count) = Ctx::share(ctx.opts.options.peers, threads, index);
        let (first, count) = (first as u32, count as u32);
        let target = ctx.opts.dht_target;
        let mut net = if is_local(target.ip()) {
            PeerNet::loopback(first, count)?
        } else {
            PeerNet::per_peer(first, count, ctx.opts.options.allow_remote)?
        };
        let mut state = State::new(ctx, first, count, mix);
        set_up(ctx, &mut net, &mut state);
        if state.setup.pongs == 0 && count > 0 && !ctx.stopped() {
            anyhow::bail!("no DHT client got an answer to its PING from {target}");
        }
        Ok((net, state))
    };
    let (mut net, mut state) = match set_up() {
        Ok(ready) => ready,
        Err(e) => {
            ctx.stop.store(true, Ordering::Relaxed);
            barrier.wait();
            return Err(e);
        }
    };
    barrier.wait();
    let start = Instant::now();
    let mut rec = ctx.recorder(start);
    rec.note("dht_clients", state.clients.len() as u64);
    rec.note("setup_pongs", state.setup.pongs);
    if state.setup.target_pings > 0 {
        rec.note("target_pings", state.setup.target_pings);
    }
    if state.setup.failed > 0 {
        rec.note("setup_unanswered", state.setup.failed);
    }
    rec.note("keys_per_client", u64::from(state.mix.keys));
    drive(ctx, &mut net, &mut state, &mut rec);
    let stats = net.stats();
    rec.note("datagrams_sent", stats.sent);
    rec.note("datagrams_received", stats.received);
    if stats.send_dropped > 0 {
        rec.note("send_dropped", stats.send_dropped);
    }
    if stats.refused > 0 {
        rec.note("refused_non_loopback", stats.refused);
    }
    Ok(rec)
}

/// PINGs the target from every client (at most [`SETUP_WINDOW`] at once, each up to
/// [`SETUP_ATTEMPTS`] times), answering whatever the target asks back.
fn set_up(ctx: &Ctx, net: &mut PeerNet, state: &mut State) {
    let count = state.clients.len() as u32;
    let deadline = Instant::now() + SETUP_LIMIT;
    let mut next = 0u32;
    let mut retry: VecDeque<u32> = VecDeque::new();
    let mut last_answer = Instant::now();
    let mut inbox = Inbox::default();
    loop {
        let now = Instant::now();
        if ctx.stopped() || now >= deadline {
            break;
        }
        // Set-up PINGs that timed out: again, or given up.
        let mut unanswered = Vec::new();
        state.expire(now.checked_sub(SETUP_RETRY).unwrap_or(now), |p| {
            unanswered.push(p.slot)
        });
        for slot in unanswered {
            if state.clients[slot as usize].setup_attempts < SETUP_ATTEMPTS {
                retry.push_back(slot);
            } else {
                state.setup.failed += 1;
            }
        }
        while state.pending.len() < SETUP_WINDOW {
            let slot = match retry.pop_front() {
                Some(slot) => slot,
                None if next < count => {
                    next += 1;
                    next - 1
                }
                None => break,
            };
            state.send_setup_ping(net, now, slot);
        }
        net.flush();
        if state.pending.is_empty() && retry.is_empty() && next >= count {
            // Everyone answered or gave up: a moment more for the target's own PINGs.
            if now.saturating_duration_since(last_answer) >= SETUP_SETTLE {
                break;
            }
        }
        net.wait(Duration::from_millis(10));
        if receive(net, &mut inbox, state, None) > 0 {
            last_answer = Instant::now();
        }
        state.flush_outbox(net);
    }
    state.expire(Instant::now() + SETUP_LIMIT, |_| {});
}

/// The load: starts operations as the pacer allows until the measured window is over, then
/// waits up to [`DRAIN`] for the last answers.
fn drive(ctx: &Ctx, net: &mut PeerNet, state: &mut State, rec: &mut Recorder) {
    let window = rec.window();
    let mut pacer = ctx.pacer(window.started);
    let limit = state.clients.len() * ctx.opts.options.in_flight;
    let mut last_expire = window.started;
    let mut inbox = Inbox::default();
    loop {
        let now = Instant::now();
        let over = window.is_over(now);
        if ctx.stopped() || now >= window.measure_until + DRAIN || (over && state.outstanding == 0)
        {
            break;
        }
        if !over {
            let due = pacer.due(now, state.outstanding, limit);
            for _ in 0..due {
                if !state.start(net, now, rec) {
                    break;
                }
            }
        }
        net.flush();
        let wait = pacer.next_in(now).min(Duration::from_millis(10));
        if !wait.is_zero() {
            net.wait(wait);
        }
        // Answers first, then expiry: after a stall of this thread, answers waiting in the
        // socket are not counted lost.
        receive(net, &mut inbox, state, Some(&mut *rec));
        state.flush_outbox(net);
        let now = Instant::now();
        if now.saturating_duration_since(last_expire) >= Duration::from_millis(10) {
            if let Some(cutoff) = now.checked_sub(state.timeout) {
                state.expire(cutoff, |p| rec.lost(p.sent, 1));
            }
            last_expire = now;
        }
    }
    // Whatever is still unanswered is lost.
    receive(net, &mut inbox, state, Some(&mut *rec));
    state.expire(Instant::now() + SETUP_LIMIT, |p| rec.lost(p.sent, 1));
    net.flush();
}

/// Hands every datagram waiting now to `state`; returns how many there were.
fn receive(
    net: &mut PeerNet,
    inbox: &mut Inbox,
    state: &mut State,
    mut rec: Option<&mut Recorder>,
) -> usize {
    let mut total = 0;
    loop {
        let got = net.receive(inbox);
        total += got;
        let now = Instant::now();
        for (slot, from, data) in inbox.iter() {
            state.on_datagram(now, slot, from, data, rec.as_deref_mut());
        }
        if !batch_was_full(got) {
            return total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId([b; 20])
    }

    #[test]
    fn find_value_is_what_the_node_parses() {
        let mut out = String::new();
        write_find_value(&mut out, &id(1), &id(2), 0xdead_beef);
        let m = Message::parse(out.as_bytes()).unwrap();
        assert_eq!(m.kind, MsgType::FindValue);
        assert_eq!((m.from, m.key), (Some(id(1)), Some(id(2))));
        assert_eq!(
            m.rpc_id.as_deref().and_then(message::parse_rpc_id),
            Some(0xdead_beef)
        );
        // The spelling of Python's json.dumps, as SimpleDHT writes it.
        assert_eq!(
            out,
            format!(
                r#"{{"type": 6, "from": "{}", "key": "{}", "rpcId": "deadbeef"}}"#,
                id(1),
                id(2)
            )
        );
    }

    #[test]
    fn values_are_json_strings_that_name_their_store() {
        let v = value_json(7, 3, 41, 32);
        let parsed: serde_json::Value = serde_json::from_str(&v).unwrap();
        let text = parsed.as_str().unwrap();
        assert_eq!(text.len(), 32);
        assert!(text.starts_with("sim 7 3 41 "));
        assert_ne!(v, value_json(7, 3, 45, 32));
        assert_ne!(v, value_json(8, 3, 41, 32));
        // A long prefix is not cut short.
        assert!(value_json(123_456, 63, u64::MAX, 4).len() > 4);
        assert!(same_json(&v, &v));
        assert!(same_json("\"a\\u0062\"", "\"ab\""));
        assert!(!same_json("\"ab\"", "\"abc\""));
        // Keys differ by peer and by key number.
        assert_ne!(key_hash(1, 0), key_hash(2, 0));
        assert_ne!(key_hash(1, 0), key_hash(1, 1));
    }

    #[test]
    fn the_mix_stores_one_op_in_n_over_a_bounded_key_set() {
        let mix = Mix::new(10, None, 4);
        assert_eq!(mix.keys, MAX_KEYS);
        let stores: Vec<u64> = (0..16).filter(|&n| mix.store_key(n).is_some()).collect();
        assert_eq!(stores, vec![3, 7, 11, 15]);
        assert_eq!(mix.store_key(3), Some(0));
        assert_eq!(mix.store_key(7), Some(1));
        assert_eq!(mix.store_key(4 * u64::from(MAX_KEYS) + 3), Some(0));
        let only_find_node = Mix::new(10, None, 0);
        assert!((0..100).all(|n| only_find_node.store_key(n).is_none()));
        // Many peers: fewer keys each, the total within the budget; never none.
        let many = Mix::new(100_000, Some(500), 4);
        assert_eq!(many.keys, 1);
        let some = Mix::new(2_000, None, 4);
        assert!(some.keys < MAX_KEYS);
        assert!(some.keys as usize * 2_000 * (32 + 2 + STORE_OVERHEAD) <= STORE_BUDGET);
        assert_eq!(Mix::new(1, Some(1 << 20), 4).value_bytes, MAX_VALUE_BYTES);
    }

    /// A fake SimpleDHT on a loopback socket: the scenario's clients against it, end to end.
    #[test]
    fn clients_complete_operations_against_a_simple_dht() {
        use std::net::UdpSocket;
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = server.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let serving = {
            let stop = stop.clone();
            std::thread::spawn(move || simple_dht(server, &stop))
        };
        let ctx = test_ctx(addr);
        let recorders = run(&ctx).unwrap();
        stop.store(true, Ordering::Relaxed);
        serving.join().unwrap();
        let report = crate::report::Report::merge(
            crate::report::RunInfo {
                scenario: "dht".into(),
                target: addr.to_string(),
                peers: 4,
                offered_rate: None,
                warmup: ctx.opts.warmup,
                duration: ctx.opts.duration,
            },
            recorders,
        );
        assert!(report.completed > 10, "{}", report.table());
        assert_eq!(report.errors, 0, "{}", report.table());
        assert!(report.notes["find_node"] > 0, "{}", report.table());
        assert!(report.notes["find_value"] > 0, "{}", report.table());
        assert_eq!(report.notes["setup_pongs"], 4);
    }

    fn test_ctx(target: SocketAddr) -> Ctx {
        use clap::Parser;
        let options = crate::cli::Options::try_parse_from([
            "setowire-sim",
            "dht",
            "--dht-target",
            &target.to_string(),
            "--peers",
            "4",
            "--threads",
            "2",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--in-flight",
            "2",
        ])
        .unwrap();
        Ctx {
            opts: std::sync::Arc::new(options.check().unwrap()),
            live: Default::default(),
            stop: Default::default(),
        }
    }

    /// SimpleDHT's behaviour, minimally: PONG, STORE, FOUND_NODE and FOUND_VAL.
    fn simple_dht(socket: std::net::UdpSocket, stop: &std::sync::atomic::AtomicBool) {
        let me = id(0xee);
        let mut store: HashMap<NodeId, String> = HashMap::new();
        let mut buf = [0u8; 4096];
        let mut out = String::new();
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let m = Message::parse(&buf[..n]).unwrap();
            let rpc = m.rpc_id.as_deref();
            match m.kind {
                MsgType::Ping => message::write_pong(&mut out, &me, rpc),
                MsgType::Store => {
                    store.insert(m.key.unwrap(), m.value.unwrap());
                    continue;
                }
                MsgType::FindNode => {
                    message::write_found_node(&mut out, &me, &[], rpc, 1400);
                }
                MsgType::FindValue => match store.get(&m.key.unwrap()) {
                    Some(v) => message::write_found_val(&mut out, &me, v, rpc),
                    None => {
                        message::write_found_node(&mut out, &me, &[], rpc, 1400);
                    }
                },
                _ => continue,
            }
            socket.send_to(out.as_bytes(), from).unwrap();
        }
    }
}
