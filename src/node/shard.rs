//! One shard: an engine driving one SO_REUSEPORT socket through an I/O backend, plus its
//! inbox of work from other shards and commands from the control plane.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::discovery::dht::Demux;
use crate::io::DatagramIo;
use crate::node::hooks::ShardHooks;
use crate::node::shared::NodeShared;
use crate::telemetry::{LoopStats, PUBLISH_EVERY};
use setowire_core::proto::frame::{classify, DatagramClass};
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::peer::PeerInfo;

/// Longest a shard sleeps without looking at its inbox and the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How long GOAWAYs and other last datagrams get to leave at shutdown.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Work the control plane asks of a shard.
pub enum ShardCommand {
    Dial(SocketAddr),
    Broadcast(Arc<[u8]>),
    Send {
        peer: setowire_core::proto::identity::Id8,
        payload: Vec<u8>,
    },
    Store {
        key: String,
        value: Vec<u8>,
    },
    Fetch {
        key: String,
        timeout: Option<Duration>,
    },
    Disconnect(setowire_core::proto::identity::Id8),
    /// Lists this shard's peers on the reply channel.
    Peers(SyncSender<(ShardId, Vec<PeerInfo>)>),
    /// Broadcasts and answers how many peers it went to.
    BroadcastCounted(Arc<[u8]>, SyncSender<usize>),
    /// Fetches and answers with the value, or `None` when the fetch failed.
    FetchWait {
        key: String,
        timeout: Duration,
        reply: SyncSender<Option<Vec<u8>>>,
    },
}

/// Where a shard's events go; bounded, full means dropped (the control plane is slow).
pub type EventSink = SyncSender<(ShardId, Event)>;

pub struct Shard {
    pub id: ShardId,
    pub engine: Engine,
    pub io: Box<dyn DatagramIo + Send>,
    /// Takes the DHT and STUN datagrams that share the port.
    pub demux: Demux,
    pub shared: Arc<NodeShared>,
    pub commands: Receiver<ShardCommand>,
    pub events: Option<EventSink>,
    pub stop: Arc<AtomicBool>,
    /// Metrics and admin API waiters.
    pub hooks: ShardHooks,
}

impl Shard {
    pub fn run(mut self) {
        let mut inbox = Vec::new();
        // Published with the counters: the turns cost a register increment, no store.
        let mut iterations: u64 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            iterations += 1;
            let timeout = self
                .engine
                .poll_timeout()
                .saturating_duration_since(Instant::now())
                .min(MAX_WAIT);
            // One clock reading for the turn: the one its datagrams were handled at, if any.
            let now = self.receive(timeout).unwrap_or_else(Instant::now);
            // Published once per batch: within it the engine counts its own new sessions.
            apply_effects(&mut self.engine, &self.shared, self.id);
            self.shared.inboxes.take(self.id, &mut inbox);
            for message in inbox.drain(..) {
                self.engine.handle_shard_message(now, message);
            }
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(now, cmd);
            }
            if now >= self.engine.poll_timeout() {
                self.engine.handle_timeout(now);
            }
            self.demux.tick(now);
            // Before the transmits: another shard may get the answer to a dial sent now.
            apply_effects(&mut self.engine, &self.shared, self.id);
            self.transmit();
            self.forward_events();
            self.publish(now, iterations);
        }
        tracing::info!(
            shard = self.id,
            peers = self.engine.peer_count(),
            "stopping: GOAWAY to the shard's peers"
        );
        self.engine.disconnect_all();
        apply_effects(&mut self.engine, &self.shared, self.id);
        self.transmit();
        self.forward_events();
        self.publish(Instant::now(), iterations);
        self.hooks.metrics.mark_stopped();
    }

    /// Copies the counters to the shard's metrics, at most every [`PUBLISH_EVERY`]. The
    /// publish is the shard's heartbeat too: readiness and the stall metric read its time.
    fn publish(&mut self, now: Instant, iterations: u64) {
        if now < self.hooks.next_publish {
            return;
        }
        self.hooks.next_publish = now + PUBLISH_EVERY;
        let shard = LoopStats {
            peers: self.engine.peer_count(),
            iterations,
            tables: self.engine.table_sizes(),
        };
        self.hooks.metrics.publish(
            self.hooks.epoch,
            now,
            self.engine.stats(),
            &self.io.stats(),
            shard,
        );
    }

    /// Handles the datagrams of one receive; returns the time they were handled at, when
    /// any came.
    fn receive(&mut self, timeout: Duration) -> Option<Instant> {
        let engine = &mut self.engine;
        let demux = &mut self.demux;
        let handshake_seconds = &self.hooks.handshake_seconds;
        // One clock reading per batch: datagrams of a batch arrived together.
        let mut now = None;
        let result = self.io.recv_batch(timeout, &mut |src, data| {
            let now = *now.get_or_insert_with(Instant::now);
            // Backends report sources canonical, as the engine wants them.
            // DHT JSON and STUN share the port. A look at the first bytes here spares
            // Setowire datagrams, nearly all of them, the call into the demux.
            let setowire = matches!(classify(data), DatagramClass::Setowire);
            if !setowire && demux.take(engine, now, src, data) {
                return;
            }
            // HELLO and HELLO_ACK: time the one that completes a handshake. One call site
            // for the engine, which is inlined here.
            let handshake = matches!(data.first(), Some(0xA1 | 0xA2))
                .then(|| (engine.stats().handshakes, Instant::now()));
            engine.handle_datagram(now, src, data);
            if let Some((before, started)) = handshake {
                if engine.stats().handshakes > before {
                    handshake_seconds.observe(started.elapsed().as_secs_f64());
                }
            }
        });
        if let Err(e) = result {
            tracing::warn!(shard = self.id, error = %e, "receive failed");
        }
        now
    }

    fn transmit(&mut self) {
        let io = &mut self.io;
        self.engine
            .drain_transmits(|dst, bytes| io.queue_send(dst, bytes));
        self.demux.flush(&mut **io);
        if let Err(e) = self.io.flush() {
            tracing::debug!(shard = self.id, error = %e, "send failed");
        }
    }

    fn forward_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            if !self.hooks.fetch_waiters.is_empty() {
                match &event {
                    Event::Fetched { key, value } => self.hooks.fetch_done(key, Some(value)),
                    Event::FetchFailed { key } => self.hooks.fetch_done(key, None),
                    _ => {}
                }
            }
            let Some(sink) = &self.events else { continue };
            if let Err(TrySendError::Disconnected(_)) = sink.try_send((self.id, event)) {
                self.events = None;
            }
        }
    }

    fn command(&mut self, now: Instant, cmd: ShardCommand) {
        let engine = &mut self.engine;
        match cmd {
            ShardCommand::Dial(addr) => {
                engine.dial(now, addr);
            }
            ShardCommand::Broadcast(payload) => {
                engine.broadcast(&payload);
            }
            ShardCommand::Send { peer, payload } => {
                if let Err(e) = engine.send(&peer, &payload) {
                    tracing::info!(shard = self.id, peer = %hex::encode(peer), error = %e, "send command failed");
                }
            }
            ShardCommand::Store { key, value } => {
                engine.store(&key, value);
            }
            ShardCommand::Fetch { key, timeout } => match timeout {
                Some(t) => engine.fetch_within(now, &key, t),
                None => engine.fetch(now, &key),
            },
            ShardCommand::Disconnect(peer) => {
                engine.disconnect(&peer);
            }
            // A reply channel whose caller gave up waiting is closed: nobody is left to tell.
            ShardCommand::Peers(reply) => {
                let _ = reply.send((self.id, engine.peers().collect()));
            }
            ShardCommand::BroadcastCounted(payload, reply) => {
                let _ = reply.try_send(engine.broadcast(&payload));
            }
            ShardCommand::FetchWait {
                key,
                timeout,
                reply,
            } => {
                self.hooks.fetch_waiters.push((key.clone(), reply));
                engine.fetch_within(now, &key, timeout);
            }
        }
    }
}

/// Hands everything the engine asked of the node to the shared state.
pub fn apply_effects(engine: &mut Engine, shared: &NodeShared, shard: ShardId) {
    while let Some(effect) = engine.poll_cluster_effect() {
        shared.apply(shard, effect);
    }
}
