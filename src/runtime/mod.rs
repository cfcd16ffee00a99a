//! The node's composition root: binds the UDP port (one SO_REUSEPORT socket per shard),
//! opens their I/O backends, starts the discovery services, the shards (each on its own
//! pinned thread) and the control plane, serves until a signal, `quit` or a failure stops
//! it, then drains and shuts everything down. Nothing but `main` depends on this module.
//!
//! Every long-lived thread and server runs under the [`Supervisor`]: one that panics or
//! ends early stops the node, which then exits with an error within a second.

pub(crate) mod bootstrap;
#[cfg(debug_assertions)]
mod fault;
mod listeners;
mod public_addr;
pub mod reload;
mod shards;
mod sockets;

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::admin::{AdminConfig, AdminError};
use crate::control;
use crate::discovery::dht::{DiscoveryError, DiscoveryOptions, Services};
use crate::http::server::ServeError;
use crate::http::HttpConfig;
use crate::io::BackendChoice;
use crate::node::handle::NodeHandle;
use crate::node::inboxes::Wake;
use crate::node::shard::{EventSink, ShardCommand, DRAIN};
use crate::node::shared::NodeShared;
use crate::state::{self, StateOptions};
use crate::supervisor::{self, Failure, Supervisor};
use crate::telemetry::state::StateMetrics;
use crate::telemetry::NodeMetrics;
use listeners::{ListenerParts, Listeners};
use setowire_core::proto::identity::Identity;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::dedupe::{self, SeenFilter};
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_limits::NodeLimits;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::store::ValueStore;
use shards::{ShardParts, Shards};
use sockets::Backend;

/// Events queued from all shards for the control interface; more are dropped.
const EVENT_QUEUE: usize = 65_536;
/// How often the node looks at its stop flag when nothing else wakes it.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long the shutdown after a failure may take: the process must be gone within a
/// second, so that its service manager restarts it promptly.
const FAILURE_DRAIN: Duration = Duration::from_millis(500);

pub struct NodeOptions {
    pub udp_listen: SocketAddr,
    pub shards: usize,
    pub io_backend: BackendChoice,
    /// Pin shard `i` to core `i` (when there are enough cores).
    pub pin_cores: bool,
    pub identity: Identity,
    pub engine: EngineConfig,
    /// The bootstrap nodes' addresses at start (the DHT joins through them).
    pub dial: Vec<SocketAddr>,
    /// The bootstrap nodes as configured (HOST:PORT): dialled until joined, resolved again
    /// at each try, and dialled again when a session with one ends.
    pub bootstrap: Vec<String>,
    /// JSON commands on stdin, JSON events on stdout.
    pub control_stdio: bool,
    /// DHT, its port, topics announced, LAN discovery.
    pub discovery: DiscoveryOptions,
    /// The public HTTP listener (bootstrap and piping); `None`: off.
    pub http: Option<HttpConfig>,
    /// The admin listener (metrics, API, status page); `None`: off.
    pub admin: Option<AdminConfig>,
    /// Persistence in a state directory; `None`: nothing is kept across restarts.
    pub state: Option<StateOptions>,
    /// The listener serving `/metrics` alone; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// Without a configured `engine.public_addr`, learn it from the bootstrap nodes (STUN).
    pub public_addr_auto: bool,
    /// How long a stop signal leaves the node serving (not ready) before it drains.
    pub shutdown_grace: Duration,
    /// What SIGHUP re-reads and where it applies it; `None`: SIGHUP is logged and ignored.
    pub reload: Option<reload::Reload>,
}

/// Why the node could not start, or stopped on a failure.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("binding UDP {addr}")]
    BindUdp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("UDP {addr} is held by another process (another node?); refusing to share it")]
    PortInUse {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("opening the I/O backend of shard {shard}")]
    Backend {
        shard: ShardId,
        #[source]
        source: io::Error,
    },
    #[error("installing the signal handlers")]
    Signals(#[source] io::Error),
    #[error("starting thread {thread}")]
    Spawn {
        thread: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error(transparent)]
    Http(#[from] ServeError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("the node stopped because {0}")]
    Failed(Failure),
}

/// Runs the node until it is stopped; an error if it could not start or a supervised
/// thread failed.
pub fn run(mut options: NodeOptions) -> Result<(), RuntimeError> {
    let supervisor = Supervisor::new();
    let sighup = stop_on_signals(&supervisor)?;
    let epoch = Instant::now();
    let (sockets, local) = sockets::bind(options.udp_listen, options.shards.max(1))?;
    let (backends, backend) = sockets::open_backends(sockets, options.io_backend)?;
    options.engine.public_addr = public_addr::settle(
        options.engine.public_addr,
        options.public_addr_auto,
        local,
        &options.dial,
    );
    let shared = shared_state(&backends, &options.engine);
    let id40 = options.identity.id_hex();
    let state_metrics = Arc::new(StateMetrics::default());
    let saved = (options.state.as_ref()).map(|state| state::load(state, &state_metrics));
    let mut services = Services::start(
        &options.discovery,
        &options.engine,
        &id40,
        local,
        &options.dial,
        saved.as_ref().and_then(|s| s.dht_id),
        &supervisor,
        epoch,
    )?;
    let live = state::Live {
        shared: Arc::clone(&shared),
        dht: Arc::clone(services.dht()),
        registry: (options.http.as_ref()).map(|http| Arc::new(http.bootstrap.registry())),
    };
    // Before anything serves: restored entries must come before new ones.
    let redial = saved.map_or_else(Vec::new, |saved| {
        state::restore(saved, &live, &state_metrics)
    });
    let mut metrics = NodeMetrics::new(backends.len(), backend, options.engine.max_peers, epoch);
    metrics.dht = Some(Arc::clone(services.dht()));
    metrics.limits = Some(Arc::clone(&shared.limits));
    metrics.inbox_drops = Some(shared.inboxes.drop_counters());
    metrics.state = Arc::clone(&state_metrics);
    let metrics = Arc::new(metrics);
    let (event_sink, events) = control_events(options.control_stdio);
    let shard_parts = ShardParts {
        identity: &options.identity,
        engine: &options.engine,
        epoch,
        shared: &shared,
        services: &services,
        metrics: &metrics,
        events: event_sink,
        pin_cores: options.pin_cores,
    };
    let (shards, node) = Shards::spawn(backends, shard_parts, &supervisor)?;
    let node = Arc::new(node);
    start_lan(&mut services, &options.discovery, &id40, &node, &supervisor);
    let listener_parts = ListenerParts {
        id40: &id40,
        udp: local,
        engine: &options.engine,
        node: &node,
        metrics: &metrics,
        dht: services.dht(),
    };
    let http = options.http.take().zip(live.registry.clone());
    let listeners = Listeners::start(
        http,
        options.admin.take(),
        options.metrics_listen,
        listener_parts,
        &supervisor,
    )
    .inspect_err(|_| supervisor.stop())?;
    reload::spawn(sighup, options.reload.take(), listeners.http_rate_control())
        .and_then(|()| spawn_drain(&supervisor, options.shutdown_grace))
        .inspect_err(|_| supervisor.stop())?;
    tracing::info!(
        id = %id40,
        udp = %local,
        shards = node.shard_count(),
        io_backend = %backend,
        http = %describe(listeners.http_addr()),
        admin = %describe(listeners.admin_addr()),
        metrics = %describe(listeners.metrics_addr()),
        "node started"
    );
    let keeper = (!options.bootstrap.is_empty())
        .then(|| {
            let keeper = bootstrap::Keeper::new(
                &options.bootstrap,
                local.is_ipv4(),
                Arc::clone(&node),
                Arc::clone(services.dht()),
                Arc::clone(&metrics.bootstrap),
                Instant::now(),
            );
            keeper
                .spawn(&supervisor)
                .map_err(|source| RuntimeError::Spawn {
                    thread: "bootstrap".into(),
                    source,
                })
        })
        .transpose()
        .inspect_err(|_| supervisor.stop())?;
    // The peers of the last run, as the bootstrap nodes are: the swarm forms again.
    let cached: Vec<SocketAddr> = redial
        .into_iter()
        .filter(|addr| !options.dial.contains(addr))
        .collect();
    if !cached.is_empty() {
        tracing::info!(peers = cached.len(), "dialling the peers of the last run");
        dial(&node, &cached);
    }
    let snapshots = (options.state.as_ref())
        .map(|state| {
            state::spawn(state, live, Arc::clone(&state_metrics), &supervisor).map_err(|source| {
                RuntimeError::Spawn {
                    thread: "state-snapshot".into(),
                    source,
                }
            })
        })
        .transpose()
        .inspect_err(|_| supervisor.stop())?;
    let ready =
        control::codec::render_ready(&id40, local, listeners.http_addr(), listeners.admin_addr());
    serve_until_stopped(&node, ready, events, &supervisor);
    shut_down(
        &node,
        shards,
        services,
        listeners,
        [snapshots, keeper],
        &supervisor,
    );
    match supervisor.failure() {
        Some(failure) => Err(RuntimeError::Failed(failure.clone())),
        None => Ok(()),
    }
}

/// A first SIGTERM/SIGINT starts the drain (see [`spawn_drain`]); a second one exits at
/// once. SIGHUP, which service managers and operators send to ask for a reload and which
/// would end the process by default, is registered here too; [`reload::spawn`] acts on it.
/// Registered first thing, so that a signal during the start is not lost.
fn stop_on_signals(
    supervisor: &Supervisor,
) -> Result<signal_hook::iterator::Signals, RuntimeError> {
    let drain = supervisor.drain_flag();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(drain))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(drain)))
            .map_err(RuntimeError::Signals)?;
    }
    reload::register()
}

/// Waits in a thread of its own for a stop signal (a signal handler can only set a flag):
/// the node is not ready from then on, and is stopped once `grace` has passed. The thread
/// ends early when the node stops another way.
fn spawn_drain(supervisor: &Supervisor, grace: Duration) -> Result<(), RuntimeError> {
    let supervisor = supervisor.clone();
    let stop_after_grace = move || {
        while !supervisor.is_draining() {
            if supervisor.is_stopping() {
                return;
            }
            std::thread::sleep(STOP_POLL);
        }
        if !grace.is_zero() {
            tracing::info!(?grace, "stop signal: not ready; draining after the grace");
            let end = Instant::now() + grace;
            while Instant::now() < end && !supervisor.is_stopping() {
                std::thread::sleep(STOP_POLL);
            }
        }
        supervisor.stop();
    };
    std::thread::Builder::new()
        .name("drain".into())
        .spawn(stop_after_grace)
        .map(drop)
        .map_err(|source| RuntimeError::Spawn {
            thread: "drain".into(),
            source,
        })
}

/// The state the shards share: the peer directory, the value store, and an inbox per shard
/// that wakes it.
fn shared_state(backends: &[Backend], engine: &EngineConfig) -> Arc<NodeShared> {
    let wakes = backends
        .iter()
        .map(|backend| {
            let waker = backend.waker.clone();
            Box::new(move || waker.wake()) as Wake
        })
        .collect();
    let store = ValueStore::new(
        engine.store_max_entries,
        engine.store_max_bytes,
        engine.store_max_value,
    );
    let now = Instant::now();
    let limits = NodeLimits::new(engine, now);
    let seen = SeenFilter::new(engine.seen_filter_bits, dedupe::ROTATE_EVERY, now);
    NodeShared::new(
        wakes,
        engine.recent_peers_wanted(),
        engine.max_dials,
        store,
        limits,
        seen,
    )
}

/// The channel the shards' events reach the stdio control interface by, when it runs.
fn control_events(control_stdio: bool) -> (Option<EventSink>, Option<Receiver<(ShardId, Event)>>) {
    if !control_stdio {
        return (None, None);
    }
    let (sink, events) = mpsc::sync_channel(EVENT_QUEUE);
    (Some(sink), Some(events))
}

/// Starts LAN discovery (when configured); the announcers it finds are dialled through
/// shard 0, like `dial` commands.
fn start_lan(
    services: &mut Services,
    options: &DiscoveryOptions,
    id40: &str,
    node: &Arc<NodeHandle>,
    supervisor: &Supervisor,
) {
    let dialer = Arc::clone(node);
    let index = Arc::clone(node);
    services.start_lan(
        options,
        id40,
        Box::new(move |addr| {
            // The LAN thread must not wait for a busy shard: the announcer comes round again.
            if let Err(e) = dialer.try_to_shard(0, ShardCommand::Dial(addr)) {
                tracing::debug!(%addr, error = %e, "LAN announcer not dialled");
            }
        }),
        Box::new(move |id: &str| {
            control::peer_id(id).is_ok_and(|id8| index.locate(&id8).is_some())
        }),
        supervisor,
    );
}

/// Dials `addrs` (the peers of the last run) through shard 0.
fn dial(node: &NodeHandle, addrs: &[SocketAddr]) {
    for &addr in addrs {
        if let Err(e) = node.to_shard(0, ShardCommand::Dial(addr)) {
            tracing::warn!(%addr, error = %e, "cannot dial");
        }
    }
}

/// Serves until the node stops: the control loop on stdio when there is one (it also
/// stops the node at `quit` or the end of stdin), else a wait for a signal or a failure.
fn serve_until_stopped(
    node: &NodeHandle,
    ready: Value,
    events: Option<Receiver<(ShardId, Event)>>,
    supervisor: &Supervisor,
) {
    match events {
        Some(events) => control::stdio::serve(node, ready, events, supervisor.stop_flag()),
        None => {
            while !supervisor.is_stopping() {
                std::thread::sleep(STOP_POLL);
            }
        }
    }
}

/// Stops the node by a deadline: the shards say GOAWAY to their peers while the services
/// and the public listener stop, the bootstrap keeper stops and the last snapshot is written; the admin listener goes
/// last, so that `/readyz` tells why to the end. After a failure the deadline is short.
fn shut_down(
    node: &NodeHandle,
    shards: Shards,
    services: Services,
    mut listeners: Listeners,
    background: [Option<JoinHandle<()>>; 2],
    supervisor: &Supervisor,
) {
    let drain = match supervisor.failure() {
        Some(_) => FAILURE_DRAIN,
        None => DRAIN,
    };
    // Each shard logs how many peers it told: a signal may have stopped them already.
    tracing::info!("shutting down: GOAWAY to every peer");
    supervisor.stop();
    let deadline = Instant::now() + drain;
    node.wake_all();
    services.join(deadline);
    listeners.stop_http(deadline);
    shards.join(deadline);
    // The state snapshotter (its last snapshot) and the bootstrap keeper.
    for thread in background.into_iter().flatten() {
        supervisor::join_until(thread, deadline);
    }
    listeners.stop(deadline);
    tracing::info!("stopped");
}

fn describe(addr: Option<SocketAddr>) -> String {
    addr.map_or("off".to_owned(), |a| a.to_string())
}
