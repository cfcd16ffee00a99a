//! The bootstrap keeper: keeps the node joined to the nodes its `bootstrap` entries name.
//!
//! A fleet of nodes given each other as `bootstrap` (often one name behind DNS or a
//! Kubernetes Service) forms one swarm only if each node reaches the others, and they do not
//! start together nor stay up forever. So each entry is resolved again and dialled, with
//! exponential backoff and jitter, for as long as the node has no session with any of its
//! addresses: at start, while the node it names is still down, and again once a session
//! with it has ended (it restarted, or moved to another address). Each time an entry is
//! joined the DHT is pointed at the bootstrap nodes again, so that it joins them as soon as
//! the swarm does rather than at its own slow retry. Joins and losses are logged; retries
//! are not.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::discovery::dht::SharedDht;
use crate::node::handle::NodeHandle;
use crate::node::shard::ShardCommand;
use crate::supervisor::Supervisor;
use crate::telemetry::bootstrap::BootstrapMetrics;

/// The wait before the first retry, doubled after each unanswered one up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How often the keeper looks at the sessions (and at the node's stop flag).
const POLL: Duration = Duration::from_millis(200);

/// The addresses `host_port` resolves to, those of the family `udp_listen` binds (when it
/// has any: a socket of one family cannot reach the other).
pub fn resolve(host_port: &str, ipv4: bool) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = host_port.to_socket_addrs()?.collect();
    let same_family: Vec<SocketAddr> = addrs
        .iter()
        .copied()
        .filter(|a| a.is_ipv4() == ipv4)
        .collect();
    Ok(if same_family.is_empty() {
        addrs
    } else {
        same_family
    })
}

/// One `bootstrap` entry and where the keeper is with it.
struct Entry {
    host_port: String,
    /// What it resolved to last.
    addrs: Vec<SocketAddr>,
    joined: bool,
    /// Whether the last resolution failed (logged once, not at every retry).
    unresolved: bool,
    next_dial: Instant,
    retry: Duration,
}

pub struct Keeper {
    entries: Vec<Entry>,
    ipv4: bool,
    node: Arc<NodeHandle>,
    dht: Arc<SharedDht>,
    metrics: Arc<BootstrapMetrics>,
    rng: StdRng,
}

impl Keeper {
    /// A keeper of `hosts` (HOST:PORT each), for a node bound to an IPv4 address or not;
    /// the first tick resolves and dials them all.
    pub fn new(
        hosts: &[String],
        ipv4: bool,
        node: Arc<NodeHandle>,
        dht: Arc<SharedDht>,
        metrics: Arc<BootstrapMetrics>,
        now: Instant,
    ) -> Self {
        let entries = hosts
            .iter()
            .map(|host_port| Entry {
                host_port: host_port.clone(),
                addrs: Vec::new(),
                joined: false,
                unresolved: false,
                next_dial: now,
                retry: FIRST_RETRY,
            })
            .collect();
        metrics
            .configured
            .store(hosts.len() as u64, Ordering::Relaxed);
        Keeper {
            entries,
            ipv4,
            node,
            dht,
            metrics,
            rng: StdRng::from_entropy(),
        }
    }

    /// Runs the keeper on a thread `supervisor` watches, until the node stops.
    pub fn spawn(mut self, supervisor: &Supervisor) -> io::Result<JoinHandle<()>> {
        let stop = Arc::clone(supervisor.stop_flag());
        supervisor.spawn("bootstrap".into(), move || {
            while !stop.load(Ordering::Relaxed) {
                self.tick(Instant::now());
                std::thread::sleep(POLL);
            }
        })
    }

    /// Notes which entries are joined, and dials those that are not and are due.
    pub fn tick(&mut self, now: Instant) {
        let mut joined_any = false;
        for i in 0..self.entries.len() {
            let joined = self.is_joined(&self.entries[i]);
            let entry = &mut self.entries[i];
            match (entry.joined, joined) {
                (false, true) => {
                    tracing::info!(bootstrap = %entry.host_port, "joined bootstrap node");
                    entry.retry = FIRST_RETRY;
                    joined_any = true;
                }
                (true, false) => {
                    tracing::info!(
                        bootstrap = %entry.host_port,
                        "session with bootstrap node ended; dialling it again"
                    );
                    entry.next_dial = now;
                }
                _ => {}
            }
            entry.joined = joined;
            if !joined && now >= entry.next_dial {
                self.dial(i, now);
            }
        }
        let connected = self.entries.iter().filter(|e| e.joined).count();
        self.metrics
            .connected
            .store(connected as u64, Ordering::Relaxed);
        if joined_any {
            self.rejoin_dht(now);
        }
    }

    fn is_joined(&self, entry: &Entry) -> bool {
        entry
            .addrs
            .iter()
            .any(|addr| self.node.has_session_at(addr))
    }

    /// Resolves entry `i` again and dials what it names, then schedules its next retry.
    fn dial(&mut self, i: usize, now: Instant) {
        let ipv4 = self.ipv4;
        let entry = &mut self.entries[i];
        match resolve(&entry.host_port, ipv4) {
            Ok(addrs) => {
                if entry.unresolved {
                    tracing::info!(bootstrap = %entry.host_port, "bootstrap node resolves again");
                }
                entry.unresolved = false;
                entry.addrs = addrs;
            }
            // The addresses of the last resolution are still worth a try.
            Err(e) => {
                if !entry.unresolved {
                    tracing::warn!(bootstrap = %entry.host_port, "cannot resolve: {e}");
                }
                entry.unresolved = true;
            }
        }
        for &addr in &entry.addrs {
            // Never wait for a busy shard: the entry comes round again.
            match self.node.try_to_shard(0, ShardCommand::Dial(addr)) {
                Ok(()) => {
                    self.metrics.dials.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::debug!(%addr, error = %e, "bootstrap node not dialled"),
            }
        }
        // Jitter: nodes of a fleet that started (or lost a seed) together spread out.
        let wait = entry.retry.mul_f64(self.rng.gen_range(0.75..1.25));
        entry.next_dial = now + wait;
        entry.retry = (entry.retry * 2).min(MAX_RETRY);
    }

    /// Points the DHT at every bootstrap address now known: it joins through them at once.
    fn rejoin_dht(&self, now: Instant) {
        let addrs: Vec<SocketAddr> = self
            .entries
            .iter()
            .flat_map(|e| e.addrs.iter().copied())
            .collect();
        self.dht.update(|dht| dht.bootstrap(now, &addrs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_to_the_family_the_node_binds_when_it_can() {
        let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert_eq!(resolve("127.0.0.1:7", true).unwrap(), [v4]);
        // A socket of the other family is all there is: it is still tried.
        assert_eq!(resolve("[::1]:7", true).unwrap(), [v6]);
        assert_eq!(resolve("127.0.0.1:7", false).unwrap(), [v4]);
        assert!(resolve("no port", true).is_err());
    }
}
