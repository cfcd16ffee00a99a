//! One worker's virtual peers and the loop that drives them.
//!
//! A [`Swarm`] is either *raw*, peers that are just an identity and an address, whose frames
//! the scenario writes itself (HELLO, PING, RELAY_REQ: what the node does per packet, measured
//! without the generator's own crypto in the way), or *full*, a sans-IO [`Engine`] per peer
//! (encrypted DATA, FRAG, HAVE/WANT/CHUNK), the same engine the node runs. Either way all
//! peers of a worker share one batched socket ([`PeerNet`]), and one [`Swarm::turn`] moves
//! every datagram that arrived, every timer that fell due and everything queued to send.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use setowire_core::proto::frame::{Frame, Handshake};
use setowire_core::proto::identity::{Id8, Identity};
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;

use crate::deadlines::Deadlines;
use crate::net::{batch_was_full, Inbox, PeerNet};
use crate::report::Recorder;

/// Handshakes a worker keeps open at once while setting up, so the target's socket buffer is
/// not flooded with HELLOs it cannot answer in time.
const SETUP_WINDOW: usize = 512;
/// An unanswered set-up HELLO is sent again after this long.
const SETUP_RETRY: Duration = Duration::from_millis(500);

/// A scenario's side of the loop.
pub trait Workload {
    /// Starts one operation; false when none can start now.
    fn start(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder) -> bool;
    /// Sees every datagram before the peer's engine does; true when it was the scenario's.
    fn intercept(
        &mut self,
        _now: Instant,
        _slot: u32,
        _frame: &Frame<'_>,
        _swarm: &mut Swarm,
        _rec: &mut Recorder,
    ) -> bool {
        false
    }
    /// An engine event of peer `slot` (full swarms only).
    fn event(
        &mut self,
        _now: Instant,
        _slot: u32,
        _event: &Event,
        _swarm: &mut Swarm,
        _rec: &mut Recorder,
    ) {
    }
    /// Called on every round of the loop, for work that waits for the previous round's
    /// datagrams to have gone out.
    fn tick(&mut self, _now: Instant, _swarm: &mut Swarm, _rec: &mut Recorder) {}
    /// Gives up on operations older than the timeout.
    fn expire(&mut self, now: Instant, swarm: &mut Swarm, rec: &mut Recorder);
    /// Operations started and not finished.
    fn outstanding(&self) -> usize;
}

/// The engine settings of a virtual peer: the node's protocol behaviour with small tables,
/// since thousands share one process, and no traffic of their own beyond what a scenario asks.
pub fn peer_engine_config() -> EngineConfig {
    EngineConfig {
        max_peers: 64,
        flood: false,
        ack_data: false,
        // The node pings every peer each second, which keeps both sides alive; the peers'
        // own PINGs would only add load and muddle the `ping` scenario's counts.
        ping_interval: Duration::from_secs(3600),
        peer_timeout: Duration::from_secs(3600),
        pex_interval: Duration::from_secs(3600),
        follow_introductions: false,
        relay: false,
        store_forward: false,
        store_max_entries: 256,
        store_max_bytes: 8 << 20,
        max_wanted: 256,
        max_dials: 4,
        max_fragment_bytes: 1 << 20,
        seen_filter_bits: 1 << 14,
        out_queue_bytes: 256 << 10,
        max_events: 4096,
        rate_limit_ips: 64,
        relay_announce_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    }
}

enum Peers {
    Raw(Vec<Identity>),
    Full(Vec<Engine>),
}

pub struct Swarm {
    pub net: PeerNet,
    pub target: SocketAddr,
    peers: Peers,
    /// Which peers have a session with the target, and how many do.
    connected: Vec<bool>,
    connected_total: usize,
    /// Engine deadlines, earliest first; an entry is stale when it differs from `scheduled`.
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    scheduled: Vec<Option<Instant>>,
    /// Engines touched since the last flush.
    dirty: Vec<u32>,
    is_dirty: Vec<bool>,
    scratch: Vec<u8>,
    /// Taken out while its datagrams are handed on, which needs the swarm; kept between
    /// turns since its batch buffers are costly to make.
    inbox: Option<Inbox>,
}

impl Swarm {
    /// `count` raw peers, each with a fresh X25519 identity.
    pub fn raw(net: PeerNet, count: u32, target: SocketAddr) -> Swarm {
        let ids = (0..count).map(|_| Identity::generate()).collect();
        Self::with(net, count, target, Peers::Raw(ids))
    }

    /// `count` peers each running an engine with `config`.
    pub fn full(
        net: PeerNet,
        count: u32,
        target: SocketAddr,
        config: &EngineConfig,
        now: Instant,
    ) -> Swarm {
        let engines = (0..count)
            .map(|_| Engine::new(Identity::generate(), config.clone(), now))
            .collect();
        Self::with(net, count, target, Peers::Full(engines))
    }

    fn with(net: PeerNet, count: u32, target: SocketAddr, peers: Peers) -> Swarm {
        let n = count as usize;
        Swarm {
            net,
            target,
            peers,
            connected: vec![false; n],
            connected_total: 0,
            timers: BinaryHeap::new(),
            scheduled: vec![None; n],
            dirty: Vec::new(),
            is_dirty: vec![false; n],
            scratch: vec![0; crate::net::MAX_DATAGRAM],
            inbox: Some(Inbox::default()),
        }
    }

    pub fn len(&self) -> u32 {
        self.connected.len() as u32
    }

    pub fn is_connected(&self, slot: u32) -> bool {
        self.connected[slot as usize]
    }

    pub fn connected_count(&self) -> usize {
        self.connected_total
    }

    fn set_connected(&mut self, slot: u32, on: bool) {
        let was = std::mem::replace(&mut self.connected[slot as usize], on);
        match (was, on) {
            (false, true) => self.connected_total += 1,
            (true, false) => self.connected_total -= 1,
            _ => {}
        }
    }

    pub fn id8(&self, slot: u32) -> Id8 {
        match &self.peers {
            Peers::Raw(ids) => ids[slot as usize].id8(),
            Peers::Full(engines) => engines[slot as usize].identity().id8(),
        }
    }

    pub fn identity(&self, slot: u32) -> &Identity {
        match &self.peers {
            Peers::Raw(ids) => &ids[slot as usize],
            Peers::Full(engines) => engines[slot as usize].identity(),
        }
    }

    /// Peer `slot`'s engine (full swarms); marks it for the next flush.
    pub fn engine(&mut self, slot: u32) -> &mut Engine {
        let Peers::Full(engines) = &mut self.peers else {
            panic!("a raw swarm has no engines")
        };
        if !self.is_dirty[slot as usize] {
            self.is_dirty[slot as usize] = true;
            self.dirty.push(slot);
        }
        &mut engines[slot as usize]
    }

    /// Sends a frame the scenario built from peer `slot` to the target.
    pub fn send_frame(&mut self, slot: u32, frame: &Frame<'_>) {
        if let Ok(n) = frame.encode(&mut self.scratch) {
            self.net.send(slot, self.target, &self.scratch[..n]);
        }
    }

    /// Gives raw peer `slot` a new X25519 identity: to the target, a peer never seen before.
    pub fn renew_identity(&mut self, slot: u32) {
        if let Peers::Raw(ids) = &mut self.peers {
            ids[slot as usize] = Identity::generate();
        }
    }

    /// Sends peer `slot`'s HELLO to the target (raw swarms).
    pub fn send_hello(&mut self, slot: u32) {
        let id = self.identity(slot);
        let hello = Frame::Hello(Handshake {
            id8: id.id8(),
            public_key: *id.public_key(),
        });
        self.send_frame(slot, &hello);
    }

    /// Tells the target peer `slot` is leaving, so its next HELLO is a new handshake.
    pub fn send_goaway(&mut self, slot: u32) {
        self.set_connected(slot, false);
        self.send_frame(slot, &Frame::Goaway);
    }

    /// Every peer with a session says GOAWAY, as a peer that shuts down does, so the target
    /// does not hold them (and their mesh places) until they time out.
    pub fn leave(&mut self) {
        for slot in 0..self.len() {
            if self.connected[slot as usize] {
                match &mut self.peers {
                    Peers::Raw(_) => self.send_goaway(slot),
                    Peers::Full(_) => self.engine(slot).disconnect_all(),
                }
            }
        }
        self.flush();
    }

    /// Gives every peer a session with the target, a window of handshakes at a time; returns
    /// how many have one when all did or `deadline` passed.
    pub fn connect_all(&mut self, deadline: Instant, stop: &dyn Fn() -> bool) -> usize {
        let n = self.len();
        let mut unanswered: Deadlines<u32> = Deadlines::default();
        let mut next = 0u32;
        let mut idle = Idle;
        let mut rec = None;
        loop {
            let now = Instant::now();
            let connected = self.connected_count();
            if connected == n as usize || now >= deadline || stop() {
                return connected;
            }
            // Open new handshakes up to the window, and retry the unanswered ones.
            let pending = (next as usize).saturating_sub(connected);
            let mut budget = SETUP_WINDOW.saturating_sub(pending);
            while budget > 0 && next < n {
                self.begin_handshake(now, next);
                unanswered.push(now, next);
                next += 1;
                budget -= 1;
            }
            let mut due = Vec::new();
            unanswered.expire(now, SETUP_RETRY, |_, slot| due.push(slot));
            for slot in due {
                if !self.connected[slot as usize] {
                    self.begin_handshake(now, slot);
                    unanswered.push(now, slot);
                }
            }
            self.turn_inner(now, Duration::from_millis(20), &mut idle, &mut rec);
        }
    }

    fn begin_handshake(&mut self, now: Instant, slot: u32) {
        if matches!(self.peers, Peers::Raw(_)) {
            self.send_hello(slot);
        } else {
            let target = self.target;
            self.engine(slot).dial(now, target);
        }
    }

    /// One round: waits up to `wait` for datagrams, hands them to the workload or the
    /// engines, runs due timers, and sends what that produced.
    pub fn turn(
        &mut self,
        now: Instant,
        wait: Duration,
        work: &mut dyn Workload,
        rec: &mut Recorder,
    ) {
        let mut rec = Some(rec);
        self.turn_inner(now, wait, work, &mut rec);
    }

    fn turn_inner(
        &mut self,
        now: Instant,
        wait: Duration,
        work: &mut dyn Workload,
        rec: &mut Option<&mut Recorder>,
    ) {
        self.flush();
        let wait = match self.timers.peek() {
            Some(Reverse((at, _))) => wait.min(at.saturating_duration_since(now)),
            None => wait,
        };
        if !wait.is_zero() {
            self.net.wait(wait);
        }
        let now = Instant::now();
        let mut inbox = self.inbox.take().unwrap_or_default();
        loop {
            let got = self.net.receive(&mut inbox);
            for (slot, from, data) in inbox.iter() {
                self.deliver(now, slot, from, data, work, rec);
            }
            if !batch_was_full(got) {
                break;
            }
        }
        self.inbox = Some(inbox);
        while let Some(&Reverse((at, slot))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.scheduled[slot as usize] == Some(at) {
                self.scheduled[slot as usize] = None;
                self.engine(slot).handle_timeout(now);
            }
        }
        self.collect_events(now, work, rec);
        self.flush();
    }

    /// A datagram for peer `slot`: the workload's, a set-up answer, a keep-alive, or the
    /// engine's.
    fn deliver(
        &mut self,
        now: Instant,
        slot: u32,
        from: SocketAddr,
        data: &[u8],
        work: &mut dyn Workload,
        rec: &mut Option<&mut Recorder>,
    ) {
        let Ok(frame) = Frame::parse(data) else {
            return;
        };
        // A BATCH is opened here so scenarios see the frames inside one by one.
        if let Frame::Batch(entries) = frame {
            let mut rest = Vec::new();
            for inner in entries.datagrams() {
                match Frame::parse(inner) {
                    Ok(f) if self.take(now, slot, from, &f, work, rec) => {}
                    _ => rest.push(inner.to_vec()),
                }
            }
            if let Peers::Full(_) = self.peers {
                for inner in rest {
                    self.engine(slot).handle_datagram(now, from, &inner);
                }
            }
            return;
        }
        if !self.take(now, slot, from, &frame, work, rec) {
            if let Peers::Full(_) = self.peers {
                self.engine(slot).handle_datagram(now, from, data);
            }
        }
    }

    /// True when the frame was dealt with outside the engine.
    fn take(
        &mut self,
        now: Instant,
        slot: u32,
        from: SocketAddr,
        frame: &Frame<'_>,
        work: &mut dyn Workload,
        rec: &mut Option<&mut Recorder>,
    ) -> bool {
        if let Some(rec) = rec.as_deref_mut() {
            if work.intercept(now, slot, frame, self, rec) {
                return true;
            }
        }
        if let Peers::Raw(_) = self.peers {
            match frame {
                Frame::HelloAck(_) if from == self.target => self.set_connected(slot, true),
                // Keep-alive: the target drops peers it has not heard from in a minute.
                Frame::Ping { .. } if from == self.target => {
                    let id = *self.identity(slot).id();
                    self.send_frame(slot, &Frame::Pong { id });
                }
                // The target's credit probe: every Setowire peer answers a HELLO from a
                // peer it knows with a HELLO_ACK, which pays for what the target sends.
                Frame::Hello(_) if from == self.target => {
                    let id = self.identity(slot);
                    let ack = Frame::HelloAck(Handshake {
                        id8: id.id8(),
                        public_key: *id.public_key(),
                    });
                    self.send_frame(slot, &ack);
                }
                _ => {}
            }
            return true;
        }
        false
    }

    fn collect_events(
        &mut self,
        now: Instant,
        work: &mut dyn Workload,
        rec: &mut Option<&mut Recorder>,
    ) {
        let mut i = 0;
        while i < self.dirty.len() {
            let slot = self.dirty[i];
            i += 1;
            while let Some(event) = self.engine(slot).poll_event() {
                match &event {
                    Event::Connected { addr, .. } if *addr == self.target => {
                        self.set_connected(slot, true);
                    }
                    // A peer's only session is the target's.
                    Event::Disconnected { .. } => self.set_connected(slot, false),
                    _ => {}
                }
                if let Some(rec) = rec.as_deref_mut() {
                    work.event(now, slot, &event, self, rec);
                }
            }
        }
    }

    /// Sends what the touched engines queued and re-arms their timers.
    pub fn flush(&mut self) {
        let Peers::Full(engines) = &mut self.peers else {
            self.net.flush();
            return;
        };
        for slot in self.dirty.drain(..) {
            self.is_dirty[slot as usize] = false;
            let engine = &mut engines[slot as usize];
            let net = &mut self.net;
            engine.drain_transmits(|dst, data| net.send(slot, dst, data));
            let at = engine.poll_timeout();
            let earlier = match self.scheduled[slot as usize] {
                Some(s) => at < s,
                None => true,
            };
            if earlier {
                self.scheduled[slot as usize] = Some(at);
                self.timers.push(Reverse((at, slot)));
            }
        }
        self.net.flush();
    }
}

/// No operations at all: the set-up phase, and the `idle` scenario.
pub struct Idle;

impl Workload for Idle {
    fn start(&mut self, _: Instant, _: &mut Swarm, _: &mut Recorder) -> bool {
        false
    }
    fn expire(&mut self, _: Instant, _: &mut Swarm, _: &mut Recorder) {}
    fn outstanding(&self) -> usize {
        0
    }
}

/// Drives `work` on `swarm` until the measured window is over and the stragglers had
/// [`crate::run::DRAIN`] to arrive.
pub fn drive(
    swarm: &mut Swarm,
    work: &mut dyn Workload,
    ctx: &crate::run::Ctx,
    rec: &mut Recorder,
) {
    let window = rec.window();
    let mut pacer = ctx.pacer(window.started);
    let limit = swarm.len() as usize * ctx.opts.options.in_flight;
    let mut last_expire = window.started;
    loop {
        let now = Instant::now();
        if ctx.stopped() || now >= window.measure_until + crate::run::DRAIN {
            break;
        }
        if !window.is_over(now) {
            let due = pacer.due(now, work.outstanding(), limit);
            for _ in 0..due {
                if !work.start(now, swarm, rec) {
                    break;
                }
            }
        }
        work.tick(now, swarm, rec);
        if now - last_expire >= Duration::from_millis(10) {
            work.expire(now, swarm, rec);
            last_expire = now;
        }
        let wait = pacer.next_in(now).min(Duration::from_millis(10));
        swarm.turn(now, wait, work, rec);
    }
    work.expire(Instant::now() + ctx.opts.timeout, swarm, rec);
    swarm.leave();
}
