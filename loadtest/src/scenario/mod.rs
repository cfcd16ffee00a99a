//! The scenarios, and the worker threads they run on.

mod chat;
pub mod dht;
mod handshake;
pub mod http;
mod idle;
mod mixed;
mod ping;
mod relay;
mod saturate;
mod store;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Barrier;
use std::time::Instant;

use crate::cli::{is_local, Checked, Scenario};
use crate::net::PeerNet;
use crate::report::Recorder;
use crate::run::{Ctx, SETUP_LIMIT};
use crate::swarm::{drive, Swarm, Workload};

pub fn run(ctx: &Ctx) -> anyhow::Result<Vec<Recorder>> {
    match ctx.opts.options.scenario {
        Scenario::Handshake => handshake::run(ctx),
        Scenario::Ping => ping::run(ctx),
        Scenario::Chat => chat::run(ctx),
        Scenario::Store => store::run(ctx),
        Scenario::Relay => relay::run(ctx),
        Scenario::Dht => dht::run(ctx),
        Scenario::Http => http::run(ctx),
        Scenario::Mixed => mixed::run(ctx),
        Scenario::Idle => idle::run(ctx),
    }
}

/// The endpoint a scenario loads.
pub fn target_of(opts: &Checked) -> SocketAddr {
    match opts.options.scenario {
        Scenario::Dht => opts.dht_target,
        Scenario::Http => opts.http_target,
        _ => opts.target,
    }
}

/// How a worker's peers are set up before the load starts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Identities only; the scenario handshakes (or not) itself.
    Raw,
    /// Identities with a session at the target, opened by bare HELLOs.
    RawConnected,
    /// An engine per peer, connected to the target.
    Engines,
}

/// Everything one worker thread knows when its load starts.
pub struct Worker {
    pub swarm: Swarm,
    /// Connected peers over all workers.
    pub peers_total: usize,
}

/// Runs a swarm scenario: `--threads` workers, each with its share of `--peers` set up as
/// `setup`; once every worker is set up, each drives the workload `make` gives it.
pub fn run_swarm<W: Workload>(
    ctx: &Ctx,
    setup: Setup,
    make: impl Fn(&Worker) -> W + Sync,
) -> anyhow::Result<Vec<Recorder>> {
    let opts = &ctx.opts;
    let threads = opts.options.threads.min(opts.options.peers);
    let barrier = Barrier::new(threads);
    let connected_total = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                let (barrier, connected_total, make) = (&barrier, &connected_total, &make);
                scope.spawn(move || -> anyhow::Result<Recorder> {
                    let result = set_up(ctx, index, threads, setup);
                    let swarm = match result {
                        Ok(swarm) => swarm,
                        Err(e) => {
                            ctx.stop.store(true, Ordering::Relaxed);
                            barrier.wait();
                            return Err(e);
                        }
                    };
                    connected_total.fetch_add(swarm.connected_count(), Ordering::Relaxed);
                    barrier.wait();
                    let mut worker = Worker {
                        swarm,
                        peers_total: connected_total.load(Ordering::Relaxed),
                    };
                    if setup != Setup::Raw && worker.peers_total == 0 {
                        anyhow::bail!("no peer could connect to {}", opts.target);
                    }
                    let mut work = make(&worker);
                    let mut rec = ctx.recorder(Instant::now());
                    if setup != Setup::Raw {
                        rec.note("peers_connected", worker.swarm.connected_count() as u64);
                    }
                    drive(&mut worker.swarm, &mut work, ctx, &mut rec);
                    let stats = worker.swarm.net.stats();
                    rec.note("datagrams_sent", stats.sent);
                    rec.note("datagrams_received", stats.received);
                    rec.note("send_dropped", stats.send_dropped);
                    if stats.refused > 0 {
                        rec.note("refused_non_loopback", stats.refused);
                    }
                    Ok(rec)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked")))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
}

fn set_up(ctx: &Ctx, index: usize, threads: usize, setup: Setup) -> anyhow::Result<Swarm> {
    let opts = &ctx.opts;
    let (first, count) = Ctx::share(opts.options.peers, threads, index);
    let (first, count) = (first as u32, count as u32);
    let net = if is_local(opts.target.ip()) {
        if !opts.target.is_ipv4() {
            anyhow::bail!("virtual peers use 127.0.0.0/8 source addresses: give an IPv4 --target");
        }
        PeerNet::loopback(first, count)?
    } else {
        PeerNet::per_peer(first, count, opts.options.allow_remote)?
    };
    let now = Instant::now();
    let mut swarm = match setup {
        Setup::Raw | Setup::RawConnected => Swarm::raw(net, count, opts.target),
        Setup::Engines => Swarm::full(
            net,
            count,
            opts.target,
            &crate::swarm::peer_engine_config(),
            now,
        ),
    };
    if setup != Setup::Raw {
        let stop = || ctx.stopped();
        let connected = swarm.connect_all(now + SETUP_LIMIT, &stop);
        if connected < count as usize {
            eprintln!(
                "setowire-sim: worker {index}: {connected} of {count} peers connected within \
                 {} s; going on with those",
                SETUP_LIMIT.as_secs()
            );
        }
    }
    Ok(swarm)
}
