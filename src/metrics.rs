//! Prometheus metrics, served as text at `GET /metrics` on the admin listener.
//!
//! Nothing here takes a lock on the hot path. Each shard copies its engine's [`Stats`] and its
//! backend's [`IoStats`] into its own [`ShardMetrics`] (relaxed atomic stores) about every
//! [`PUBLISH_EVERY`]; the HTTP listener counts into [`HttpMetrics`] (atomics). At scrape time
//! [`NodeCollector`] reads all of them, and the DHT's counters under its lock, and turns them
//! into metric families. So a scrape sees the shards as of at most ~100 ms ago.
//!
//! Labels are bounded: `shard`, `type` (a [`FrameKind`] name or a DHT request type), `reason`
//! (a [`DropReason`] name), `backend`, `route` and `code_class`; never a peer id or address.
//!
//! `setowire_handshake_duration_seconds` is the time the shard spends in
//! `Engine::handle_datagram` on the HELLO or HELLO_ACK that completes a handshake: the X25519
//! agreement, key derivation and session set-up (plus whatever else that datagram triggers,
//! such as introductions). It is not the network round trip of the handshake: the engine is
//! sans-IO and has no clock of its own to tell when the first HELLO left.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::discovery::dht::SharedDht;
use crate::io::{BackendKind, IoStats};
use setowire_core::proto::frame::FrameKind;
use setowire_core::swarm::stats::{DropReason, Stats};

/// How often a shard publishes its counters.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// One shard's counters, written by the shard alone, read at scrape time.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    pub peers: AtomicU64,
    pub handshakes: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagrams_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub relay_forwards: AtomicU64,
    pub data_delivered: AtomicU64,
    pub stun_responses: AtomicU64,
    pub send_errors: AtomicU64,
    frames: [AtomicU64; FrameKind::ALL.len()],
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Milliseconds since the node started at the last publish (0: never).
    last_publish_ms: AtomicU64,
    /// Set once the shard's loop has ended.
    stopped: AtomicBool,
}

impl ShardMetrics {
    /// Copies the counters out. Datagrams and bytes are the socket's (all traffic on the
    /// port: Setowire, DHT and STUN), as the backend counted them.
    pub fn publish(&self, epoch: Instant, now: Instant, stats: &Stats, io: &IoStats, peers: usize) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.peers, peers as u64);
        set(&self.handshakes, stats.handshakes);
        set(&self.datagrams_received, io.datagrams_received);
        set(&self.datagrams_sent, io.datagrams_sent);
        set(&self.bytes_received, io.bytes_received);
        set(&self.bytes_sent, io.bytes_sent);
        set(&self.relay_forwards, stats.relay_forwards);
        set(&self.data_delivered, stats.data_delivered);
        set(&self.stun_responses, stats.stun_responses);
        set(&self.send_errors, io.send_errors);
        for (slot, kind) in self.frames.iter().zip(FrameKind::ALL) {
            set(slot, stats.frames(kind));
        }
        for (slot, reason) in self.drops.iter().zip(DropReason::ALL) {
            set(slot, stats.drops(reason));
        }
        let ms = now.saturating_duration_since(epoch).as_millis() as u64;
        set(&self.last_publish_ms, ms.max(1));
    }

    /// Marks the shard as stopped (its loop has returned).
    pub fn mark_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn frames(&self, kind: FrameKind) -> u64 {
        self.frames[kind as usize].load(Ordering::Relaxed)
    }

    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// How long ago the shard last published; `None` before its first publish.
    pub fn since_publish(&self, epoch: Instant, now: Instant) -> Option<Duration> {
        match self.last_publish_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(
                now.saturating_duration_since(epoch)
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    /// Running and publishing: published within the last two seconds and not stopped.
    pub fn healthy(&self, epoch: Instant, now: Instant) -> bool {
        !self.stopped.load(Ordering::Relaxed)
            && self
                .since_publish(epoch, now)
                .is_some_and(|d| d < Duration::from_secs(2))
    }
}

/// Routes of the public HTTP listener, as the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
    Announce,
    Peers,
    Piping,
}

impl HttpRoute {
    pub const ALL: [HttpRoute; 3] = [HttpRoute::Announce, HttpRoute::Peers, HttpRoute::Piping];

    pub fn name(self) -> &'static str {
        match self {
            HttpRoute::Announce => "announce",
            HttpRoute::Peers => "peers",
            HttpRoute::Piping => "piping",
        }
    }
}

const CODE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counters of the public HTTP listener.
#[derive(Default)]
pub struct HttpMetrics {
    requests: [[AtomicU64; CODE_CLASSES.len()]; HttpRoute::ALL.len()],
    /// Piping transfers started (a sender paired with a receiver).
    pub piping_transfers: AtomicU64,
    /// Bytes passed from piping senders to receivers.
    pub piping_bytes: AtomicU64,
    /// Live HTTP bootstrap announcements, asked at scrape time.
    bootstrap_peers: Mutex<Option<Box<dyn Fn() -> usize + Send + Sync>>>,
}

impl HttpMetrics {
    pub fn count_request(&self, route: HttpRoute, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[route as usize][class].fetch_add(1, Ordering::Relaxed);
    }

    pub fn requests(&self, route: HttpRoute, class: &str) -> u64 {
        CODE_CLASSES
            .iter()
            .position(|c| *c == class)
            .map_or(0, |i| {
                self.requests[route as usize][i].load(Ordering::Relaxed)
            })
    }

    /// Sets how the number of live bootstrap announcements is found.
    pub fn set_bootstrap_peers(&self, count: Box<dyn Fn() -> usize + Send + Sync>) {
        *self
            .bootstrap_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(count);
    }

    pub fn bootstrap_peers(&self) -> usize {
        self.bootstrap_peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or(0, |f| f())
    }
}

/// Counts every request on the public HTTP listener by route and status class, and piping
/// transfers and their bytes (a GET on a piping path answered 200 is a receiver paired with
/// a sender; its body is the piped data).
pub async fn count_http(
    axum::extract::State(metrics): axum::extract::State<Arc<HttpMetrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    let route = match path {
        "/announce" => HttpRoute::Announce,
        "/peers" => HttpRoute::Peers,
        _ => HttpRoute::Piping,
    };
    let transfer = route == HttpRoute::Piping
        && request.method() == axum::http::Method::GET
        && !crate::http::piping::RESERVED_PATHS.contains(&path);
    let response = next.run(request).await;
    metrics.count_request(route, response.status().as_u16());
    if !(transfer && response.status() == axum::http::StatusCode::OK) {
        return response;
    }
    metrics.piping_transfers.fetch_add(1, Ordering::Relaxed);
    response.map(|inner| axum::body::Body::new(CountingBody { inner, metrics }))
}

/// A response body that adds the bytes passing through to `piping_bytes`.
struct CountingBody {
    inner: axum::body::Body,
    metrics: Arc<HttpMetrics>,
}

impl http_body::Body for CountingBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.metrics
                    .piping_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Everything the node exports, shared by the shards (writers) and the admin API (reader).
pub struct NodeMetrics {
    pub shards: Vec<Arc<ShardMetrics>>,
    pub http: Arc<HttpMetrics>,
    pub handshake_seconds: Histogram,
    pub backend: BackendKind,
    pub max_peers: usize,
    /// When the node started.
    pub epoch: Instant,
    pub start_unix: f64,
    pub dht: Option<Arc<SharedDht>>,
}

impl NodeMetrics {
    pub fn new(shards: usize, backend: BackendKind, max_peers: usize, epoch: Instant) -> Self {
        let handshake_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "setowire_handshake_duration_seconds",
                "Time spent handling the HELLO or HELLO_ACK that completes a handshake \
                 (X25519, key derivation, session set-up)",
            )
            .buckets(vec![
                10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 50e-3,
            ]),
        )
        .expect("valid histogram options");
        NodeMetrics {
            shards: (0..shards).map(|_| Arc::default()).collect(),
            http: Arc::default(),
            handshake_seconds,
            backend,
            max_peers,
            epoch,
            start_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            dht: None,
        }
    }

    pub fn peer_count(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.peers.load(Ordering::Relaxed))
            .sum()
    }

    /// Sum of one counter over the shards.
    pub fn total(&self, field: impl Fn(&ShardMetrics) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| field(s).load(Ordering::Relaxed))
            .sum()
    }

    /// A registry holding the node's families, the handshake histogram and the process
    /// metrics (`process_*`).
    pub fn registry(self: &Arc<Self>) -> prometheus::Result<Registry> {
        let registry = Registry::new();
        registry.register(Box::new(NodeCollector::new(Arc::clone(self))?))?;
        registry.register(Box::new(self.handshake_seconds.clone()))?;
        registry.register(Box::new(crate::process_metrics::ProcessCollector::new()?))?;
        Ok(registry)
    }
}

/// Renders `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %e, "encoding metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The node's families, filled from the atomics on every scrape. The metric objects are
/// reset and set under a mutex that only scrapes take.
pub struct NodeCollector {
    node: Arc<NodeMetrics>,
    scrape: Mutex<()>,
    peers: IntGaugeVec,
    handshakes: IntCounterVec,
    datagrams_received: IntCounterVec,
    datagrams_sent: IntCounterVec,
    bytes_received: IntCounterVec,
    bytes_sent: IntCounterVec,
    frames: IntCounterVec,
    drops: IntCounterVec,
    relay_forwards: IntCounterVec,
    data_delivered: IntCounterVec,
    dht_requests: IntCounterVec,
    dht_values: IntGauge,
    dht_nodes: IntGauge,
    stun_responses: IntCounter,
    bootstrap_peers: IntGauge,
    http_requests: IntCounterVec,
    piping_transfers: IntCounter,
    piping_bytes: IntCounter,
    io_backend: IntGaugeVec,
    max_peers: IntGauge,
    build_info: IntGaugeVec,
    start_time: Gauge,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntCounterVec> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    IntGaugeVec::new(Opts::new(name, help), labels)
}

impl NodeCollector {
    pub fn new(node: Arc<NodeMetrics>) -> prometheus::Result<Self> {
        let shard = &["shard"];
        Ok(NodeCollector {
            node,
            scrape: Mutex::new(()),
            peers: gauge_vec("setowire_peers", "Peers with a session", shard)?,
            handshakes: counter_vec("setowire_handshakes_total", "Handshakes completed", shard)?,
            datagrams_received: counter_vec(
                "setowire_datagrams_received_total",
                "UDP datagrams received (Setowire, DHT and STUN)",
                shard,
            )?,
            datagrams_sent: counter_vec(
                "setowire_datagrams_sent_total",
                "UDP datagrams sent",
                shard,
            )?,
            bytes_received: counter_vec(
                "setowire_bytes_received_total",
                "UDP payload bytes received",
                shard,
            )?,
            bytes_sent: counter_vec("setowire_bytes_sent_total", "UDP payload bytes sent", shard)?,
            frames: counter_vec(
                "setowire_frames_received_total",
                "Setowire frames received, by type",
                &["shard", "type"],
            )?,
            drops: counter_vec(
                "setowire_drops_total",
                "Datagrams or frames dropped, by reason",
                &["shard", "reason"],
            )?,
            relay_forwards: counter_vec(
                "setowire_relay_forwards_total",
                "RELAY_FWD introductions sent",
                shard,
            )?,
            data_delivered: counter_vec(
                "setowire_data_delivered_total",
                "Application messages delivered in order",
                shard,
            )?,
            dht_requests: counter_vec(
                "setowire_dht_requests_total",
                "DHT datagrams received, by request type",
                &["type"],
            )?,
            dht_values: IntGauge::new("setowire_dht_values", "Values held in the DHT storage")?,
            dht_nodes: IntGauge::new("setowire_dht_nodes", "Nodes in the DHT routing table")?,
            stun_responses: IntCounter::new(
                "setowire_stun_responses_total",
                "STUN Binding responses sent",
            )?,
            bootstrap_peers: IntGauge::new(
                "setowire_http_bootstrap_peers",
                "Live HTTP bootstrap announcements",
            )?,
            http_requests: counter_vec(
                "setowire_http_requests_total",
                "Requests on the public HTTP listener",
                &["route", "code_class"],
            )?,
            piping_transfers: IntCounter::new(
                "setowire_piping_transfers_total",
                "Piping transfers started (a sender paired with a receiver)",
            )?,
            piping_bytes: IntCounter::new(
                "setowire_piping_bytes_total",
                "Bytes piped from senders to receivers",
            )?,
            io_backend: gauge_vec(
                "setowire_io_backend",
                "The socket I/O backend in use (1) and the other one (0)",
                &["backend"],
            )?,
            max_peers: IntGauge::new("setowire_max_peers", "Configured max_peers")?,
            build_info: gauge_vec("setowire_build_info", "Always 1", &["version"])?,
            start_time: Gauge::new(
                "setowire_start_time_seconds",
                "Start time of the node, seconds since the Unix epoch",
            )?,
        })
    }

    fn parts(&self) -> [&dyn Collector; 22] {
        [
            &self.peers,
            &self.handshakes,
            &self.datagrams_received,
            &self.datagrams_sent,
            &self.bytes_received,
            &self.bytes_sent,
            &self.frames,
            &self.drops,
            &self.relay_forwards,
            &self.data_delivered,
            &self.dht_requests,
            &self.dht_values,
            &self.dht_nodes,
            &self.stun_responses,
            &self.bootstrap_peers,
            &self.http_requests,
            &self.piping_transfers,
            &self.piping_bytes,
            &self.io_backend,
            &self.max_peers,
            &self.build_info,
            &self.start_time,
        ]
    }

    fn refresh(&self) {
        let node = &self.node;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for vec in [
            &self.handshakes,
            &self.datagrams_received,
            &self.datagrams_sent,
            &self.bytes_received,
            &self.bytes_sent,
            &self.frames,
            &self.drops,
            &self.relay_forwards,
            &self.data_delivered,
            &self.dht_requests,
            &self.http_requests,
        ] {
            vec.reset();
        }
        let mut stun = 0;
        for (i, shard) in node.shards.iter().enumerate() {
            let id = i.to_string();
            let l = &[id.as_str()];
            self.peers
                .with_label_values(l)
                .set(load(&shard.peers) as i64);
            let pairs = [
                (&self.handshakes, &shard.handshakes),
                (&self.datagrams_received, &shard.datagrams_received),
                (&self.datagrams_sent, &shard.datagrams_sent),
                (&self.bytes_received, &shard.bytes_received),
                (&self.bytes_sent, &shard.bytes_sent),
                (&self.relay_forwards, &shard.relay_forwards),
                (&self.data_delivered, &shard.data_delivered),
            ];
            for (vec, value) in pairs {
                vec.with_label_values(l).inc_by(load(value));
            }
            for kind in FrameKind::ALL {
                self.frames
                    .with_label_values(&[id.as_str(), kind.name()])
                    .inc_by(shard.frames(kind));
            }
            for reason in DropReason::ALL {
                self.drops
                    .with_label_values(&[id.as_str(), reason.name()])
                    .inc_by(shard.drops(reason));
            }
            stun += load(&shard.stun_responses);
        }
        reset_counter(&self.stun_responses, stun);
        let (requests, values, nodes) = match &node.dht {
            Some(dht) => {
                let dht = dht.lock();
                let s = dht.stats();
                let known = s.pings
                    + s.stores
                    + s.find_nodes
                    + s.find_values
                    + s.responses
                    + s.malformed
                    + s.too_large;
                let requests = [
                    ("ping", s.pings),
                    ("store", s.stores),
                    ("find_node", s.find_nodes),
                    ("find_value", s.find_values),
                    ("other", s.datagrams_received.saturating_sub(known)),
                ];
                (requests, dht.storage().len(), dht.table().len())
            }
            None => (
                [
                    ("ping", 0),
                    ("store", 0),
                    ("find_node", 0),
                    ("find_value", 0),
                    ("other", 0),
                ],
                0,
                0,
            ),
        };
        for (kind, n) in requests {
            self.dht_requests.with_label_values(&[kind]).inc_by(n);
        }
        self.dht_values.set(values as i64);
        self.dht_nodes.set(nodes as i64);
        let http = &node.http;
        self.bootstrap_peers.set(http.bootstrap_peers() as i64);
        for route in HttpRoute::ALL {
            for class in CODE_CLASSES {
                let n = http.requests(route, class);
                // Every route and class from 2xx on, so the family always exists.
                if n > 0 || class != "1xx" {
                    self.http_requests
                        .with_label_values(&[route.name(), class])
                        .inc_by(n);
                }
            }
        }
        reset_counter(&self.piping_transfers, load(&http.piping_transfers));
        reset_counter(&self.piping_bytes, load(&http.piping_bytes));
        for kind in [BackendKind::IoUring, BackendKind::Mmsg] {
            self.io_backend
                .with_label_values(&[&kind.to_string()])
                .set(i64::from(kind == node.backend));
        }
        self.max_peers.set(node.max_peers as i64);
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        self.start_time.set(node.start_unix);
    }
}

fn reset_counter(counter: &IntCounter, value: u64) {
    counter.reset();
    counter.inc_by(value);
}

impl Collector for NodeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.parts().into_iter().flat_map(|c| c.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _scrape = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh();
        self.parts().into_iter().flat_map(|c| c.collect()).collect()
    }
}

/// What a shard keeps for the control plane besides its engine: its metrics, when it last
/// published them, and the admin API's fetches waiting for a result.
pub struct ShardHooks {
    pub metrics: Arc<ShardMetrics>,
    pub handshake_seconds: Histogram,
    pub epoch: Instant,
    pub next_publish: Instant,
    /// Fetches waiting for `Fetched`/`FetchFailed` of their key.
    pub fetch_waiters: Vec<(String, std::sync::mpsc::SyncSender<Option<Vec<u8>>>)>,
}

impl ShardHooks {
    pub fn new(node: &NodeMetrics, shard: usize) -> Self {
        ShardHooks {
            metrics: Arc::clone(&node.shards[shard]),
            handshake_seconds: node.handshake_seconds.clone(),
            epoch: node.epoch,
            next_publish: node.epoch,
            fetch_waiters: Vec::new(),
        }
    }

    /// Answers (and forgets) the waiters of `key`.
    pub fn fetch_done(&mut self, key: &str, value: Option<&[u8]>) {
        self.fetch_waiters.retain(|(k, reply)| {
            if k != key {
                return true;
            }
            let _ = reply.try_send(value.map(<[u8]>::to_vec));
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_the_exported_names() {
        let node = Arc::new(NodeMetrics::new(2, BackendKind::Mmsg, 7, Instant::now()));
        let stats = Stats::default();
        let io = IoStats {
            datagrams_received: 3,
            bytes_received: 300,
            ..IoStats::default()
        };
        node.shards[1].publish(node.epoch, Instant::now(), &stats, &io, 4);
        node.http.count_request(HttpRoute::Peers, 200);
        node.handshake_seconds.observe(0.0001);
        let registry = node.registry().unwrap();
        let text = render(&registry);
        for needle in [
            "setowire_peers{shard=\"1\"} 4",
            "setowire_datagrams_received_total{shard=\"1\"} 3",
            "setowire_bytes_received_total{shard=\"1\"} 300",
            "setowire_io_backend{backend=\"mmsg\"} 1",
            "setowire_io_backend{backend=\"io_uring\"} 0",
            "setowire_max_peers 7",
            "setowire_http_requests_total{code_class=\"2xx\",route=\"peers\"} 1",
            "setowire_handshake_duration_seconds_count 1",
            "setowire_dht_requests_total{type=\"ping\"} 0",
            "setowire_frames_received_total{shard=\"0\",type=\"hello\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        // A second scrape gives the same counters (no double counting).
        let again = render(&registry);
        assert!(again.contains("setowire_datagrams_received_total{shard=\"1\"} 3"));
        assert!(node.shards[1].healthy(node.epoch, Instant::now()));
        assert!(!node.shards[0].healthy(node.epoch, Instant::now()));
    }
}
