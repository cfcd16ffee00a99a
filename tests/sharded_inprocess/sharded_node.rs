//! A node of several shards as one host of the simulated network: engines sharing one
//! address and one [`NodeShared`], driven as the runtime's shards drive them, with each
//! source's datagrams steered to one shard as the kernel's SO_REUSEPORT hash would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use setowire_core::proto::identity::Identity;
use setowire_core::simnet::SimHost;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::dedupe::{SeenFilter, ROTATE_EVERY};
use setowire_core::swarm::effects::ShardMessage;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_limits::NodeLimits;
use setowire_core::swarm::node_view::{NodeView, ShardId};
use setowire_core::swarm::store::ValueStore;
use setowire_node::node::shard::apply_effects;
use setowire_node::node::shared::NodeShared;

/// Which shard a datagram from a source reaches.
pub type Steering = Box<dyn Fn(SocketAddr) -> ShardId>;

pub struct ShardedNode {
    shared: Arc<NodeShared>,
    shards: Vec<Engine>,
    steering: Steering,
    /// `woken[i]` is set by shard `i`'s waker when another shard sends it work, and cleared
    /// when it takes its inbox.
    woken: Vec<Arc<AtomicBool>>,
    /// The time of the node's last input: a woken shard is due from then.
    last_input: Instant,
    /// One shard's inbox while it is handled; kept to reuse its allocation.
    inbox: Vec<ShardMessage>,
}

impl ShardedNode {
    /// `shards` engines of one identity, started at `now`; shard `i` draws from a random
    /// source seeded with `i`. The shared state is sized as the runtime sizes it.
    pub fn new(
        identity: &Identity,
        config: &EngineConfig,
        now: Instant,
        shards: usize,
        steering: Steering,
    ) -> ShardedNode {
        let woken: Vec<Arc<AtomicBool>> = (0..shards)
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        let wakers = woken
            .iter()
            .map(|flag| {
                let flag = Arc::clone(flag);
                Box::new(move || flag.store(true, Ordering::Relaxed)) as _
            })
            .collect();
        let store = ValueStore::new(
            config.store_max_entries,
            config.store_max_bytes,
            config.store_max_value,
        );
        let shared = NodeShared::new(
            wakers,
            config.recent_peers_wanted(),
            config.max_dials,
            store,
            NodeLimits::new(config, now),
            SeenFilter::new(config.seen_filter_bits, ROTATE_EVERY, now),
        );
        let shards = (0..shards)
            .map(|i| {
                Engine::for_shard(
                    identity.clone(),
                    config.clone(),
                    now,
                    StdRng::seed_from_u64(i as u64),
                    i,
                    Arc::clone(&shared) as Arc<dyn NodeView>,
                )
            })
            .collect();
        ShardedNode {
            shared,
            shards,
            steering,
            woken,
            last_input: now,
            inbox: Vec::new(),
        }
    }

    pub fn shard(&self, shard: ShardId) -> &Engine {
        &self.shards[shard]
    }

    /// For commands to one shard; what it queues is sent when the network next runs.
    pub fn shard_mut(&mut self, shard: ShardId) -> &mut Engine {
        &mut self.shards[shard]
    }

    pub fn shared(&self) -> &NodeShared {
        &self.shared
    }

    fn apply_effects(&mut self, shard: ShardId) {
        apply_effects(&mut self.shards[shard], &self.shared, shard);
    }
}

impl SimHost for ShardedNode {
    /// The events of every shard, merged.
    type Event = Event;

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        self.last_input = now;
        let shard = (self.steering)(src);
        self.shards[shard].handle_datagram(now, src, datagram);
        // At once, as the runtime does: the next datagram, on this shard or another, must
        // see the sessions this one made.
        self.apply_effects(shard);
    }

    /// Each shard's turn, as in the runtime: its inbox, its timers if due, its effects.
    fn handle_timeout(&mut self, now: Instant) {
        self.last_input = now;
        for shard in 0..self.shards.len() {
            self.woken[shard].store(false, Ordering::Relaxed);
            self.shared.inboxes.take(shard, &mut self.inbox);
            for message in self.inbox.drain(..) {
                self.shards[shard].handle_shard_message(now, message);
            }
            if now >= self.shards[shard].poll_timeout() {
                self.shards[shard].handle_timeout(now);
            }
            self.apply_effects(shard);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.woken.iter().any(|flag| flag.load(Ordering::Relaxed)) {
            return Some(self.last_input);
        }
        self.shards.iter().map(Engine::poll_timeout).min()
    }

    fn drain_transmits(&mut self, sink: &mut dyn FnMut(SocketAddr, &[u8])) {
        // Commands given to shards since the last input leave effects too, and they go
        // before the transmits: a dial's answer may reach another shard, which must know
        // of the dial by then.
        for shard in 0..self.shards.len() {
            self.apply_effects(shard);
        }
        for engine in &mut self.shards {
            engine.drain_transmits(&mut *sink);
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.shards.iter_mut().find_map(Engine::poll_event)
    }
}
