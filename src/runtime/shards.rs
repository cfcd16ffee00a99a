//! The shard threads: one engine per socket, each on its own (pinned) thread the
//! supervisor watches, and the inboxes the control plane reaches them by.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::sockets::Backend;
use super::RuntimeError;
use crate::discovery::dht::Services;
use crate::node::handle::{NodeHandle, ShardLink};
use crate::node::hooks::ShardHooks;
use crate::node::shard::{EventSink, Shard};
use crate::node::shared::NodeShared;
use crate::supervisor::{self, Supervisor};
use crate::telemetry::NodeMetrics;
use setowire_core::proto::identity::Identity;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::node_view::NodeView;

/// Commands queued for one shard before the control plane waits.
const COMMAND_QUEUE: usize = 1024;

/// What every shard is built from, besides its own socket.
pub struct ShardParts<'a> {
    pub identity: &'a Identity,
    pub engine: &'a EngineConfig,
    pub epoch: Instant,
    pub shared: &'a Arc<NodeShared>,
    pub services: &'a Services,
    pub metrics: &'a NodeMetrics,
    /// Where events go for the control interface, if it wants them.
    pub events: Option<EventSink>,
    /// Pin shard `i` to core `i` (when there are enough cores).
    pub pin_cores: bool,
}

/// The running shards' threads.
pub struct Shards {
    threads: Vec<JoinHandle<()>>,
}

impl Shards {
    /// Starts one shard per backend; returns them and the handle that routes commands to
    /// them.
    pub fn spawn(
        backends: Vec<Backend>,
        parts: ShardParts<'_>,
        supervisor: &Supervisor,
    ) -> Result<(Shards, NodeHandle), RuntimeError> {
        let count = backends.len();
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        #[cfg(debug_assertions)]
        let fault = super::fault::Fault::from_env();
        let mut threads = Vec::with_capacity(count);
        let mut links = Vec::with_capacity(count);
        for (id, Backend { io, waker }) in backends.into_iter().enumerate() {
            #[cfg(debug_assertions)]
            let io = match fault {
                Some(fault) => fault.arm(id, io),
                None => io,
            };
            let (commands, command_rx) = mpsc::sync_channel(COMMAND_QUEUE);
            let engine = Engine::for_shard(
                parts.identity.clone(),
                parts.engine.clone(),
                parts.epoch,
                StdRng::from_entropy(),
                id,
                Arc::clone(parts.shared) as Arc<dyn NodeView>,
            );
            let shard = Shard {
                id,
                engine,
                io,
                demux: parts.services.demux(id),
                shared: Arc::clone(parts.shared),
                commands: command_rx,
                events: parts.events.clone(),
                stop: Arc::clone(supervisor.stop_flag()),
                hooks: ShardHooks::new(parts.metrics, id),
            };
            let core = (parts.pin_cores && cores.len() >= count).then(|| cores[id]);
            let name = format!("shard-{id}");
            let thread = supervisor
                .spawn(name.clone(), move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core) {
                            tracing::warn!(shard = id, "cannot pin to core {}", core.id);
                        }
                    }
                    shard.run();
                })
                .map_err(|source| RuntimeError::Spawn {
                    thread: name,
                    source,
                })?;
            threads.push(thread);
            links.push(ShardLink {
                commands,
                wake: Arc::new(move || waker.wake()),
            });
        }
        let node = NodeHandle::new(links, Arc::clone(parts.shared));
        Ok((Shards { threads }, node))
    }

    /// Waits (until `deadline`) for the shards to say GOAWAY and end.
    pub fn join(self, deadline: Instant) {
        for thread in self.threads {
            supervisor::join_until(thread, deadline);
        }
    }
}
