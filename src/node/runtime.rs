//! Starts the node: binds one SO_REUSEPORT socket per shard, opens their I/O backends, runs
//! each shard on its own pinned thread, and routes control commands and events between the
//! shards and the control interface until a signal or `quit` stops it.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::admin::{AdminConfig, AdminServer, NodeHandle, NodeInfo, ShardLink};
use crate::control::{self, Command};
use crate::discovery::dht::{DiscoveryOptions, Services};
use crate::http::{ControlPlane, HttpConfig, NodeSelf};
use crate::io::{bind_reuseport, open_backend, BackendChoice};
use crate::metrics::{NodeMetrics, ShardHooks};
use crate::node::inboxes::Wake;
use crate::node::shard::{Shard, ShardCommand, DRAIN};
use crate::node::shared::NodeShared;
use setowire_core::proto::identity::Identity;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::discovery::PEX_MAX;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_view::NodeView;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::store::ValueStore;

/// Commands queued for one shard before the control plane waits.
const COMMAND_QUEUE: usize = 1024;
/// Events queued from all shards for the control plane; more are dropped.
const EVENT_QUEUE: usize = 65_536;

pub struct NodeOptions {
    pub udp_listen: SocketAddr,
    pub shards: usize,
    pub io_backend: BackendChoice,
    /// Pin shard `i` to core `i` (when there are enough cores).
    pub pin_cores: bool,
    pub identity: Identity,
    pub engine: EngineConfig,
    /// Peers or other nodes to dial at start.
    pub dial: Vec<SocketAddr>,
    /// JSON commands on stdin, JSON events on stdout.
    pub control_stdio: bool,
    /// DHT, its port, topics announced, LAN discovery.
    pub discovery: DiscoveryOptions,
    /// The public HTTP listener (bootstrap and piping); `None`: off.
    pub http: Option<HttpConfig>,
    /// The admin listener (metrics, API, status page); `None`: off.
    pub admin: Option<AdminConfig>,
}

struct ShardHandle {
    commands: SyncSender<ShardCommand>,
    wake: Arc<dyn Fn() + Send + Sync>,
    thread: JoinHandle<()>,
}

pub fn run(mut options: NodeOptions) -> anyhow::Result<()> {
    let shard_count = options.shards.max(1);
    // Bind the first socket alone so that port 0 resolves to one port all shards share.
    let first = bind_reuseport(options.udp_listen)
        .with_context(|| format!("binding UDP {}", options.udp_listen))?;
    let local = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..shard_count {
        sockets.push(bind_reuseport(local).with_context(|| format!("binding UDP {local}"))?);
    }
    let mut backends = Vec::with_capacity(shard_count);
    for socket in sockets {
        let (io, waker, fallback) = open_backend(socket, options.io_backend)?;
        if let Some(reason) = fallback.filter(|_| backends.is_empty()) {
            tracing::warn!(%reason, "io_uring unavailable, using recvmmsg/sendmmsg");
        }
        backends.push((io, waker));
    }
    let backend = backends[0].0.kind();
    if options.engine.public_addr.is_none() && !local.ip().is_unspecified() {
        options.engine.public_addr = Some(local);
    }
    let wakes: Vec<Arc<dyn Fn() + Send + Sync>> = backends
        .iter()
        .map(|(_, waker)| {
            let waker = waker.clone();
            Arc::new(move || waker.wake()) as Arc<dyn Fn() + Send + Sync>
        })
        .collect();
    let store = ValueStore::new(
        options.engine.store_max_entries,
        options.engine.store_max_bytes,
        options.engine.store_max_value,
    );
    let cluster = NodeShared::new(
        wakes
            .iter()
            .map(|w| {
                let w = Arc::clone(w);
                Box::new(move || w()) as Wake
            })
            .collect(),
        options.engine.gossip_fanout.max(PEX_MAX + 1),
        options.engine.max_dials,
        store,
    );
    let stop = Arc::new(AtomicBool::new(false));
    // A first SIGTERM/SIGINT stops gracefully; a second one while stopping exits at once.
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let (event_tx, event_rx) = mpsc::sync_channel(EVENT_QUEUE);
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let start = Instant::now();
    let id40 = options.identity.id_hex();
    let mut services = Services::start(
        &options.discovery,
        &options.engine,
        &id40,
        local,
        &options.dial,
        &stop,
        start,
    )?;
    let mut metrics = NodeMetrics::new(shard_count, backend, options.engine.max_peers, start);
    metrics.dht = Some(Arc::clone(services.dht()));
    let metrics = Arc::new(metrics);
    let mut shards = Vec::with_capacity(shard_count);
    for (id, ((io, _), wake)) in backends.into_iter().zip(wakes).enumerate() {
        let (commands, command_rx) = mpsc::sync_channel(COMMAND_QUEUE);
        let engine = Engine::for_shard(
            options.identity.clone(),
            options.engine.clone(),
            start,
            StdRng::from_entropy(),
            id,
            Arc::clone(&cluster) as Arc<dyn NodeView>,
        );
        let shard = Shard {
            id,
            engine,
            io,
            demux: services.demux(id),
            shared: Arc::clone(&cluster),
            commands: command_rx,
            events: options.control_stdio.then(|| event_tx.clone()),
            stop: Arc::clone(&stop),
            hooks: ShardHooks::new(&metrics, id),
        };
        let core = (options.pin_cores && cores.len() >= shard_count).then(|| cores[id]);
        let thread = std::thread::Builder::new()
            .name(format!("shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(shard = id, "cannot pin to core {}", core.id);
                    }
                }
                shard.run();
            })?;
        shards.push(ShardHandle {
            commands,
            wake,
            thread,
        });
    }
    drop(event_tx);
    {
        // LAN announcers are dialled like `dial` commands, through shard 0.
        let commands = shards[0].commands.clone();
        let wake = Arc::clone(&shards[0].wake);
        let index = Arc::clone(&cluster);
        services.start_lan(
            &options.discovery,
            &id40,
            Box::new(move |addr| {
                if commands.try_send(ShardCommand::Dial(addr)).is_ok() {
                    wake();
                }
            }),
            Box::new(move |id: &str| {
                control::peer_id(id).is_ok_and(|id8| index.directory.locate(&id8).is_some())
            }),
            &stop,
        );
    }
    // The control plane starts once the shards run; its own runtime, off the hot path.
    let http = match options.http.take().map(|config| {
        let node = NodeSelf {
            id40: options.identity.id_hex(),
            udp: local,
            public_addr: options.engine.public_addr,
            relay: options.engine.relay,
        };
        ControlPlane::start_with_metrics(config, node, Arc::clone(&metrics.http))
    }) {
        Some(Err(e)) => {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        started => started.and_then(Result::ok),
    };
    let node = Arc::new(NodeHandle::new(
        shards
            .iter()
            .map(|s| ShardLink {
                commands: s.commands.clone(),
                wake: Arc::clone(&s.wake),
            })
            .collect(),
        Arc::clone(&cluster),
    ));
    let http_addr = http.as_ref().map(ControlPlane::local_addr);
    let admin = match options.admin.take().map(|config| {
        let info = NodeInfo {
            id40: options.identity.id_hex(),
            udp: local,
            http: http_addr,
            public_addr: options.engine.public_addr,
            relay: options.engine.relay,
            flood: options.engine.flood,
            store_forward: options.engine.store_forward,
            store_max_value_bytes: options.engine.store_max_value,
        };
        let dht = Arc::clone(services.dht());
        AdminServer::start(config, info, Arc::clone(&node), Arc::clone(&metrics), dht)
    }) {
        Some(Err(e)) => {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        started => started.and_then(Result::ok),
    };
    let admin_addr = admin.as_ref().map(AdminServer::local_addr);
    tracing::info!(
        id = %options.identity.id_hex(),
        udp = %local,
        shards = shard_count,
        io_backend = %backend,
        http = %http_addr.map_or("off".to_owned(), |a| a.to_string()),
        admin = %admin_addr.map_or("off".to_owned(), |a| a.to_string()),
        "node started"
    );
    let router = Router { node: &node };
    for addr in options.dial {
        router.to_shard(0, ShardCommand::Dial(addr));
    }
    if options.control_stdio {
        control_loop(
            &router,
            local,
            http_addr,
            admin_addr,
            &options.identity,
            event_rx,
            &stop,
        );
    } else {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    tracing::info!(
        peers = cluster.directory.len(),
        "shutting down: GOAWAY to every peer"
    );
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + DRAIN;
    for shard in &shards {
        (shard.wake)();
    }
    services.join(deadline);
    if let Some(http) = http {
        http.stop(deadline);
    }
    if let Some(admin) = admin {
        admin.stop(deadline);
    }
    for shard in shards {
        // Shards notice the stop flag within one wait; a stuck one must not hold the exit.
        while !shard.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if shard.thread.is_finished() {
            let _ = shard.thread.join();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Sends control commands to the shard that can carry them out.
struct Router<'a> {
    node: &'a NodeHandle,
}

impl Router<'_> {
    fn to_shard(&self, shard: ShardId, cmd: ShardCommand) {
        self.node.to_shard(shard, cmd);
    }

    fn to_all(&self, cmd: impl FnMut() -> ShardCommand) {
        self.node.to_all(cmd);
    }

    /// Carries out one command; what it answers is written through `emit`.
    fn route(&self, cmd: Command, emit: &mut impl FnMut(Value)) -> Result<(), String> {
        match cmd {
            Command::Dial { addr } => self.to_shard(0, ShardCommand::Dial(addr)),
            Command::Broadcast { hex } => {
                let payload: Arc<[u8]> = control::bytes(&hex)?.into();
                self.to_all(|| ShardCommand::Broadcast(Arc::clone(&payload)));
            }
            Command::Send { peer, hex } => {
                let peer = control::peer_id(&peer)?;
                let payload = control::bytes(&hex)?;
                let owner = self.cluster_locate(&peer)?;
                self.to_shard(owner, ShardCommand::Send { peer, payload });
            }
            Command::Store { key, hex } => {
                let value = control::bytes(&hex)?;
                // Every shard announces it to its own mesh; the store itself is shared.
                self.to_all(|| ShardCommand::Store {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
            Command::Fetch { key, timeout_ms } => self.to_shard(
                0,
                ShardCommand::Fetch {
                    key,
                    timeout: timeout_ms.map(Duration::from_millis),
                },
            ),
            Command::Peers => {
                let peers = self.node.peers(Duration::from_secs(2))?;
                emit(control::render_peers(&peers));
            }
            Command::Disconnect { peer } => {
                let peer = control::peer_id(&peer)?;
                let owner = self.cluster_locate(&peer)?;
                self.to_shard(owner, ShardCommand::Disconnect(peer));
            }
            Command::Quit => unreachable!("quit is handled by the control loop"),
        }
        Ok(())
    }

    fn cluster_locate(
        &self,
        peer: &setowire_core::proto::identity::Id8,
    ) -> Result<ShardId, String> {
        self.node
            .locate(peer)
            .ok_or_else(|| "no such peer".to_owned())
    }
}

/// Reads commands from stdin and writes events to stdout until `quit`, EOF or a signal.
fn control_loop(
    router: &Router<'_>,
    local: SocketAddr,
    http: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    identity: &Identity,
    events: Receiver<(ShardId, Event)>,
    stop: &AtomicBool,
) {
    let lines = spawn_stdin_reader();
    let mut out = std::io::stdout().lock();
    let mut emit = |value: Value| {
        // A closed stdout only loses events; the node keeps serving.
        let _ = writeln!(out, "{value}").and_then(|()| out.flush());
    };
    emit(json!({
        "event": "ready",
        "id": identity.id_hex(),
        "port": local.port(),
        "http_port": http.map(|a| a.port()),
        "admin_port": admin.map(|a| a.port()),
    }));
    while !stop.load(Ordering::Relaxed) {
        match lines.recv_timeout(Duration::from_millis(10)) {
            Ok(line) => match control::parse_command(&line) {
                Ok(Command::Quit) => break,
                Ok(cmd) => {
                    if let Err(message) = router.route(cmd, &mut emit) {
                        emit(json!({"event": "error", "message": message}));
                    }
                }
                Err(message) => emit(json!({"event": "error", "message": message})),
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while let Ok((_, event)) = events.try_recv() {
            emit(control::render_event(&event));
        }
    }
    // Events that raced the stop (e.g. a last disconnect) still go out.
    while let Ok((_, event)) = events.try_recv() {
        emit(control::render_event(&event));
    }
}

/// Stdin lines on a channel; the channel closes at EOF.
fn spawn_stdin_reader() -> Receiver<String> {
    let (tx, rx) = mpsc::sync_channel(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if !line.trim().is_empty() && tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}
