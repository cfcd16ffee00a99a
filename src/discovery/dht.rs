//! How the node runs its DHT: one [`Dht`] for the whole node behind a mutex
//! ([`SharedDht`]; DHT traffic is light next to Setowire's, so the shards share it rather
//! than partition it). Being one, its per-source accounting (STORE and request rates,
//! values per source, fair shares) is node-wide: N shards do not make N budgets. The per-shard [`Demux`] that takes DHT JSON and STUN off the shared
//! UDP port, an optional separate DHT port served by a small thread, and the keys the node
//! announces for its topics.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::discovery::lan;
use crate::io::DatagramIo;
use crate::supervisor::{self, Supervisor};
use setowire_core::discovery::lan::LanDiscovery;
use setowire_core::discovery::stun;
use setowire_core::proto::frame::{classify, DatagramClass};
use setowire_core::ratelimit::{IpLimiter, Rate};
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::node_view::ShardId;
use setowire_core::swarm::stats::DropReason;

use setowire_core::dht::id::{topic_hash, NodeId};
use setowire_core::dht::message::MAX_DATAGRAM;
use setowire_core::dht::rpc::{Dht, DhtConfig, Outcome};
use setowire_core::ratelimit::SourceGrouping;

/// What the node's discovery services need from the configuration.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryOptions {
    pub dht: DhtConfig,
    /// A second UDP address serving only the DHT.
    pub dht_listen: Option<SocketAddr>,
    /// Topics announced in the DHT and on the LAN.
    pub topics: Vec<Vec<u8>>,
    /// LAN multicast discovery.
    pub lan: bool,
}

/// Why the discovery services could not be started.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("binding the DHT port {addr}")]
    DhtPort {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The node's discovery services: its DHT (shared by the shards, also on `dht_listen` when
/// set) and LAN discovery, with the threads they run on.
pub struct Services {
    dht: Arc<SharedDht>,
    threads: Vec<JoinHandle<()>>,
    /// Where LAN peers and DHT records should reach the node.
    reachable: SocketAddr,
}

impl Services {
    /// Creates the DHT with the id `saved_id` (an earlier run's) or a random one, has it
    /// announce the topics and join the DHT through `bootstrap`, and opens `dht_listen`,
    /// served on a thread `supervisor` watches. `local`: the bound UDP address.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        options: &DiscoveryOptions,
        engine: &EngineConfig,
        id40: &str,
        local: SocketAddr,
        bootstrap: &[SocketAddr],
        saved_id: Option<NodeId>,
        supervisor: &Supervisor,
        epoch: Instant,
    ) -> Result<Self, DiscoveryError> {
        let mut rng = StdRng::from_entropy();
        let id = saved_id.unwrap_or_else(|| NodeId::random(&mut rng));
        let mut dht = Dht::new(options.dht.clone(), id, epoch, rng);
        let reachable = if local.ip().is_unspecified() {
            SocketAddr::new(lan::local_ip_guess(), local.port())
        } else {
            local
        };
        let public = engine.public_addr.unwrap_or(reachable);
        for (key, value) in announcements(id40, &options.topics, public, reachable, engine.relay) {
            dht.announce(&key, value);
        }
        dht.bootstrap(epoch, bootstrap);
        let dht = SharedDht::new(dht, epoch);
        let mut threads = Vec::new();
        if let Some(addr) = options.dht_listen {
            let (bound, thread) = spawn_listener(
                addr,
                Arc::clone(&dht),
                engine.unauth_rate,
                engine.rate_limit_ips,
                options.dht.ipv6_prefix_len,
                supervisor,
            )
            .map_err(|source| DiscoveryError::DhtPort { addr, source })?;
            tracing::info!(%bound, "DHT port");
            threads.push(thread);
        }
        tracing::info!(dht_id = %id, topics = options.topics.len(), "DHT node");
        Ok(Self {
            dht,
            threads,
            reachable,
        })
    }

    pub fn dht(&self) -> &Arc<SharedDht> {
        &self.dht
    }

    /// The demultiplexer of shard `shard`; shard 0 runs the DHT's timers.
    pub fn demux(&self, shard: ShardId) -> Demux {
        Demux::new(Arc::clone(&self.dht), shard == 0)
    }

    /// Starts LAN discovery when `options.lan` is set, on a thread `supervisor` watches:
    /// announcers to dial go to `dial`; `connected(id40)` tells announcers the node is
    /// already connected to. A LAN socket that cannot be opened is logged, not fatal
    /// (py-setowire also carries on without).
    pub fn start_lan(
        &mut self,
        options: &DiscoveryOptions,
        id40: &str,
        dial: Box<dyn Fn(SocketAddr) + Send>,
        connected: Box<dyn Fn(&str) -> bool + Send>,
        supervisor: &Supervisor,
    ) {
        if !options.lan {
            return;
        }
        let discovery = LanDiscovery::new(id40.to_owned(), self.reachable, &options.topics);
        match lan::spawn(discovery, dial, connected, supervisor) {
            Ok(thread) => {
                tracing::info!(announce = %self.reachable, "LAN discovery on 239.0.0.1:45678");
                self.threads.push(thread);
            }
            Err(e) => tracing::warn!(error = %e, "LAN discovery unavailable"),
        }
    }

    /// Waits (until `deadline`) for the service threads, which stop with the node.
    pub fn join(self, deadline: Instant) {
        for thread in self.threads {
            supervisor::join_until(thread, deadline);
        }
    }
}

/// The node's one DHT, shared by the shards and the optional DHT port.
pub struct SharedDht {
    dht: Mutex<Dht>,
    epoch: Instant,
    /// Milliseconds after `epoch` when the DHT's timer is due; read without the lock.
    due_ms: AtomicU64,
}

impl SharedDht {
    pub fn new(dht: Dht, epoch: Instant) -> Arc<Self> {
        Arc::new(Self {
            dht: Mutex::new(dht),
            epoch,
            due_ms: AtomicU64::new(0),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, Dht> {
        self.dht.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the DHT; whatever it queues goes out on the next [`tick`](Self::tick).
    pub fn update<R>(&self, f: impl FnOnce(&mut Dht) -> R) -> R {
        let result = f(&mut self.lock());
        self.due_ms.store(0, Ordering::Relaxed);
        result
    }

    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    fn note_due(&self, dht: &Dht) {
        self.due_ms
            .store(self.millis(dht.poll_timeout()), Ordering::Relaxed);
    }

    /// Handles one DHT datagram; replies go to `sink`.
    pub fn handle(
        &self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
        sink: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> Outcome {
        let mut dht = self.lock();
        let outcome = dht.handle_datagram(now, src, datagram);
        dht.drain_transmits(&mut *sink);
        self.note_due(&dht);
        outcome
    }

    /// Runs the DHT's timers if they are due (a cheap atomic read otherwise).
    pub fn tick(&self, now: Instant, sink: &mut impl FnMut(SocketAddr, &[u8])) {
        if self.millis(now) < self.due_ms.load(Ordering::Relaxed) {
            return;
        }
        let mut dht = self.lock();
        dht.handle_timeout(now);
        dht.drain_transmits(&mut *sink);
        self.note_due(&dht);
    }
}

/// A shard's share of the services on its port: DHT JSON goes to the shared DHT, STUN is
/// answered on the spot, both charged to the source IP's unauthenticated-traffic budget;
/// everything else is left to the engine. Replies leave through the shard's own socket.
pub struct Demux {
    dht: Arc<SharedDht>,
    /// Whether this shard runs the DHT's timers (one shard does).
    drives_timers: bool,
    out: Outbox,
    stun_buf: [u8; stun::MAX_RESPONSE],
}

/// Datagrams waiting for the socket, their bytes one after the other in one buffer that is
/// kept from one batch to the next.
#[derive(Default)]
struct Outbox {
    /// Destination and end of each datagram's bytes in `bytes`.
    datagrams: Vec<(SocketAddr, usize)>,
    bytes: Vec<u8>,
}

impl Outbox {
    /// Bytes kept between batches (more after a burst are given back).
    const KEPT: usize = 256 << 10;

    fn push(&mut self, dst: SocketAddr, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        self.datagrams.push((dst, self.bytes.len()));
    }

    fn drain(&mut self, mut send: impl FnMut(SocketAddr, &[u8])) {
        let mut start = 0;
        for (dst, end) in self.datagrams.drain(..) {
            send(dst, &self.bytes[start..end]);
            start = end;
        }
        if self.bytes.capacity() > Self::KEPT {
            self.bytes = Vec::new();
        } else {
            self.bytes.clear();
        }
    }
}

impl Demux {
    pub fn new(dht: Arc<SharedDht>, drives_timers: bool) -> Self {
        Self {
            dht,
            drives_timers,
            out: Outbox::default(),
            stun_buf: [0; stun::MAX_RESPONSE],
        }
    }

    /// Takes `datagram` if it is DHT JSON or STUN (true), or leaves it to the engine.
    pub fn take(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        src: SocketAddr,
        data: &[u8],
    ) -> bool {
        match classify(data) {
            DatagramClass::Setowire => false,
            DatagramClass::DhtJson => {
                if !engine.allow_unauthenticated(now, src) {
                    engine.count_drop(DropReason::RateLimited);
                    return true;
                }
                let out = &mut self.out;
                let outcome = self
                    .dht
                    .handle(now, src, data, &mut |dst, bytes| out.push(dst, bytes));
                if let Outcome::Malformed(_) = outcome {
                    engine.count_drop(DropReason::Dht);
                }
                true
            }
            DatagramClass::Stun => {
                if !engine.allow_unauthenticated(now, src) {
                    engine.count_drop(DropReason::RateLimited);
                    return true;
                }
                match stun::answer(data, src, &mut self.stun_buf) {
                    Ok(Some(n)) => {
                        engine.count_stun_response();
                        self.out.push(src, &self.stun_buf[..n]);
                    }
                    Ok(None) => {}
                    Err(_) => engine.count_drop(DropReason::Stun),
                }
                true
            }
        }
    }

    /// Runs the DHT's timers when this shard drives them and they are due.
    pub fn tick(&mut self, now: Instant) {
        if self.drives_timers {
            let out = &mut self.out;
            self.dht.tick(now, &mut |dst, bytes| out.push(dst, bytes));
        }
    }

    /// Hands what the services queued to the shard's socket.
    pub fn flush(&mut self, io: &mut dyn DatagramIo) {
        self.out.drain(|dst, bytes| io.queue_send(dst, bytes));
    }
}

/// Serves the DHT on its own UDP socket (config `dht_listen`) from a small thread until
/// the node stops, its datagrams limited to `rate` per IPv4 address or IPv6 prefix of
/// `ipv6_prefix_len`. Returns the bound address.
pub fn spawn_listener(
    addr: SocketAddr,
    dht: Arc<SharedDht>,
    rate: Rate,
    max_ips: usize,
    ipv6_prefix_len: u8,
    supervisor: &Supervisor,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let local = socket.local_addr()?;
    let stop = Arc::clone(supervisor.stop_flag());
    let thread = supervisor.spawn("dht-listen".into(), move || {
        // One byte more than accepted, so that longer datagrams show as too large.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut limiter = IpLimiter::new(rate, max_ips, Instant::now());
        let mut replies = Outbox::default();
        while !stop.load(Ordering::Relaxed) {
            let (len, src) = match socket.recv_from(&mut buf) {
                Ok(got) => got,
                Err(e) if crate::io::is_wait_over(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "DHT socket receive failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let now = Instant::now();
            let src = SocketAddr::new(src.ip().to_canonical(), src.port());
            if !limiter.allow(
                SourceGrouping::new(ipv6_prefix_len)
                    .group_of(src.ip())
                    .addr(),
                now,
            ) {
                dht.lock().count_rate_limited();
                continue;
            }
            // Sent once the DHT's lock is released.
            dht.handle(now, src, &buf[..len], &mut |dst, bytes| {
                replies.push(dst, bytes);
            });
            replies.drain(|dst, bytes| {
                if let Err(e) = socket.send_to(bytes, dst) {
                    tracing::debug!(%dst, error = %e, "DHT reply not sent");
                }
            });
        }
    })?;
    Ok((local, thread))
}

/// The DHT keys and values (JSON text) the node announces for `topics`, as py-setowire
/// peers do: `topic:{th}:{id40}` → `{id, ip, port, lip, lport, nat}` and, for a relay,
/// `relay:{th}:{id40}` → `{id, ip, port}`, each value a JSON string holding JSON.
pub fn announcements(
    id40: &str,
    topics: &[Vec<u8>],
    public: SocketAddr,
    local: SocketAddr,
    relay: bool,
) -> Vec<(String, String)> {
    let quoted = |ip: IpAddr| format!("\"{ip}\"");
    let mut out = Vec::new();
    for topic in topics {
        let th = topic_hash(topic);
        let me = format!(
            "{{\"id\": \"{id40}\", \"ip\": {}, \"port\": {}, \"lip\": {}, \"lport\": {}, \
             \"nat\": \"open\"}}",
            quoted(public.ip()),
            public.port(),
            quoted(local.ip()),
            local.port()
        );
        out.push((format!("topic:{th}:{id40}"), json_string(&me)));
        if relay {
            let me = format!(
                "{{\"id\": \"{id40}\", \"ip\": {}, \"port\": {}}}",
                quoted(public.ip()),
                public.port()
            );
            out.push((format!("relay:{th}:{id40}"), json_string(&me)));
        }
    }
    out
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_follow_py_setowire() {
        let id = "ab".repeat(20);
        let list = announcements(
            &id,
            &[vec![1, 2]],
            "203.0.113.5:49737".parse().unwrap(),
            "10.0.0.5:49737".parse().unwrap(),
            true,
        );
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].0, format!("topic:f47de373dc27:{id}"));
        assert_eq!(list[1].0, format!("relay:f47de373dc27:{id}"));
        let inner: String = serde_json::from_str(&list[0].1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&inner).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(
            (v["ip"].as_str(), v["port"].as_u64()),
            (Some("203.0.113.5"), Some(49737))
        );
        assert_eq!(
            (v["lip"].as_str(), v["lport"].as_u64()),
            (Some("10.0.0.5"), Some(49737))
        );
        let inner: String = serde_json::from_str(&list[1].1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&inner).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3);
        let no_relay = announcements(
            &id,
            &[vec![1], vec![2]],
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::1]:1".parse().unwrap(),
            false,
        );
        assert_eq!(no_relay.len(), 2);
        assert!(no_relay.iter().all(|(k, _)| k.starts_with("topic:")));
    }
}
