//! One shard: an engine driving one SO_REUSEPORT socket through an I/O backend, plus its
//! inbox of work from other shards and commands from the control plane.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dht::service::Demux;
use crate::io::DatagramIo;
use crate::node::cluster::ClusterShared;
use crate::swarm::cluster::ShardId;
use crate::swarm::engine::Engine;
use crate::swarm::event::Event;
use crate::swarm::peer::PeerInfo;

/// Longest a shard sleeps without looking at its inbox and the stop flag.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// How long GOAWAYs and other last datagrams get to leave at shutdown.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Work the control plane asks of a shard.
pub enum ShardCommand {
    Dial(SocketAddr),
    Broadcast(Arc<[u8]>),
    Send {
        peer: crate::proto::identity::Id8,
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
    Disconnect(crate::proto::identity::Id8),
    /// Lists this shard's peers on the reply channel.
    Peers(SyncSender<(ShardId, Vec<PeerInfo>)>),
}

/// Where a shard's events go; bounded, full means dropped (the control plane is slow).
pub type EventSink = SyncSender<(ShardId, Event)>;

pub struct Shard {
    pub id: ShardId,
    pub engine: Engine,
    pub io: Box<dyn DatagramIo + Send>,
    /// Takes the DHT and STUN datagrams that share the port.
    pub demux: Demux,
    pub cluster: Arc<ClusterShared>,
    pub commands: Receiver<ShardCommand>,
    pub events: Option<EventSink>,
    pub stop: Arc<AtomicBool>,
}

impl Shard {
    pub fn run(mut self) {
        let mut inbox = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let timeout = self
                .engine
                .poll_timeout()
                .saturating_duration_since(Instant::now())
                .min(MAX_WAIT);
            self.receive(timeout);
            let now = Instant::now();
            self.cluster.take_inbox(self.id, &mut inbox);
            for msg in inbox.drain(..) {
                msg.apply(&mut self.engine, now);
            }
            while let Ok(cmd) = self.commands.try_recv() {
                self.command(now, cmd);
            }
            if now >= self.engine.poll_timeout() {
                self.engine.handle_timeout(now);
            }
            self.demux.tick(now);
            self.transmit();
            self.forward_events();
        }
        self.engine.disconnect_all();
        self.transmit();
        self.forward_events();
    }

    fn receive(&mut self, timeout: Duration) {
        let engine = &mut self.engine;
        let demux = &mut self.demux;
        // One clock reading per batch: datagrams of a batch arrived together.
        let mut now = None;
        let result = self.io.recv_batch(timeout, &mut |src, data| {
            let now = *now.get_or_insert_with(Instant::now);
            let src = SocketAddr::new(src.ip().to_canonical(), src.port());
            // DHT JSON and STUN share the port.
            if !demux.take(engine, now, src, data) {
                engine.handle_datagram(now, src, data);
            }
        });
        if let Err(e) = result {
            tracing::warn!(shard = self.id, error = %e, "receive failed");
        }
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
                let _ = engine.send(&peer, &payload);
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
            ShardCommand::Peers(reply) => {
                let _ = reply.send((self.id, engine.peers().collect()));
            }
        }
    }
}
