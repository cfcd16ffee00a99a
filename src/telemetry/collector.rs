//! The Prometheus collector: the node's metric families, filled from the published atomics
//! on every scrape, and their text rendering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use std::time::Instant;

use prometheus::{
    Encoder, Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::state::{StateMetrics, StatePart};
use super::{NodeMetrics, ShardHealth, STALL_AFTER};
use crate::http::metrics::{HttpRoute, CODE_CLASSES};
use crate::io::{BackendKind, SendErrorKind};
use setowire_core::dht::DhtStats;
use setowire_core::proto::frame::FrameKind;
use setowire_core::swarm::stats::DropReason;

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
    peers_displaced: IntCounterVec,
    credit_probes: IntCounterVec,
    wants_repeated: IntCounterVec,
    data_late: IntCounterVec,
    truncated: IntCounterVec,
    recv_errors: IntCounterVec,
    send_errors: IntCounterVec,
    inbox_drops: IntCounterVec,
    loop_iterations: IntCounterVec,
    heartbeat_age: GaugeVec,
    stalled: IntGaugeVec,
    engine_tables: IntGaugeVec,
    dht_requests: IntCounterVec,
    dht_drops: IntCounterVec,
    dht_values_evicted: IntCounter,
    dht_values: IntGauge,
    dht_values_bytes: IntGauge,
    dht_nodes: IntGauge,
    reassembly_memory: IntGauge,
    stun_responses: IntCounter,
    bootstrap_peers: IntGauge,
    http_requests: IntCounterVec,
    piping_transfers: IntCounter,
    piping_bytes: IntCounter,
    http_connections_refused: IntCounter,
    http_timeouts: IntCounterVec,
    http_announces_refused: IntCounterVec,
    http_too_large: IntCounterVec,
    piping_closed: IntCounter,
    piping_throttled_bytes: IntCounter,
    io_backend: IntGaugeVec,
    max_peers: IntGauge,
    build_info: IntGaugeVec,
    start_time: Gauge,
    state_snapshots: IntCounter,
    state_snapshot_failures: IntCounter,
    state_last_snapshot_time: Gauge,
    state_last_snapshot_duration: Gauge,
    state_last_snapshot_bytes: IntGauge,
    state_restore_failures: IntCounterVec,
    state_restored: IntCounterVec,
    bootstrap_nodes: IntGauge,
    bootstrap_connected: IntGauge,
    bootstrap_dials: IntCounter,
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
            peers_displaced: counter_vec(
                "setowire_peers_displaced_total",
                "Sessions ended to make room for a newcomer in a full peer table",
                shard,
            )?,
            credit_probes: counter_vec(
                "setowire_credit_probes_total",
                "HELLOs sent to peers whose send credit did not cover what they are owed",
                shard,
            )?,
            wants_repeated: counter_vec(
                "setowire_wants_repeated_total",
                "WANTs sent again for values whose pieces stopped coming",
                shard,
            )?,
            data_late: counter_vec(
                "setowire_data_late_total",
                "DATA that arrived after in-order delivery had skipped it, delivered late",
                shard,
            )?,
            truncated: counter_vec(
                "setowire_udp_truncated_datagrams_total",
                "UDP datagrams longer than the receive buffers, dropped unread",
                shard,
            )?,
            recv_errors: counter_vec(
                "setowire_udp_receive_errors_total",
                "Failed UDP receive operations",
                shard,
            )?,
            send_errors: counter_vec(
                "setowire_udp_send_errors_total",
                "UDP datagrams not sent, by kind of error",
                &["shard", "kind"],
            )?,
            inbox_drops: counter_vec(
                "setowire_shard_inbox_drops_total",
                "Cross-shard messages dropped because the inbox of the shard they were for \
                 was full, by that shard",
                shard,
            )?,
            loop_iterations: counter_vec(
                "setowire_shard_loop_iterations_total",
                "Turns of the shard's event loop",
                shard,
            )?,
            heartbeat_age: GaugeVec::new(
                Opts::new(
                    "setowire_shard_heartbeat_age_seconds",
                    "Seconds since the shard's loop last published its counters (about every \
                     100 ms while it runs; since the node started if it never did)",
                ),
                shard,
            )?,
            stalled: gauge_vec(
                "setowire_shard_stalled",
                &format!(
                    "1 while the shard runs but its loop has not published for {} s or more",
                    STALL_AFTER.as_secs()
                ),
                shard,
            )?,
            engine_tables: gauge_vec(
                "setowire_engine_table_entries",
                "Entries in each of a shard's session tables (all bounded; back to their \
                 baseline once the peers leave)",
                &["shard", "table"],
            )?,
            dht_requests: counter_vec(
                "setowire_dht_requests_total",
                "DHT datagrams received, by request type",
                &["type"],
            )?,
            dht_drops: counter_vec(
                "setowire_dht_drops_total",
                "DHT requests refused and DHT datagrams held back, by reason",
                &["reason"],
            )?,
            dht_values_evicted: IntCounter::new(
                "setowire_dht_values_evicted_total",
                "DHT values evicted to make room for a source below its fair share",
            )?,
            dht_values: IntGauge::new("setowire_dht_values", "Values held in the DHT storage")?,
            dht_values_bytes: IntGauge::new(
                "setowire_dht_values_bytes",
                "Memory charged to the values in the DHT storage (keys, values, bookkeeping)",
            )?,
            dht_nodes: IntGauge::new("setowire_dht_nodes", "Nodes in the DHT routing table")?,
            reassembly_memory: IntGauge::new(
                "setowire_reassembly_memory_bytes",
                "Memory held by FRAG and CHUNK reassembly across all shards (capped)",
            )?,
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
            http_connections_refused: IntCounter::new(
                "setowire_http_connections_refused_total",
                "Public HTTP connections reset at accept: their IP had http_max_connections_per_ip open",
            )?,
            http_timeouts: counter_vec(
                "setowire_http_timeouts_total",
                "Public HTTP connections closed for a request head not sent in time (header) or for waiting with no request (idle)",
                &["type"],
            )?,
            http_announces_refused: counter_vec(
                "setowire_http_announces_refused_total",
                "POST /announce refused: the id is held by another IP (owned) or the IP holds http_announces_per_ip ids (per_ip_cap)",
                &["reason"],
            )?,
            http_too_large: counter_vec(
                "setowire_http_too_large_total",
                "Public HTTP requests answered 413, by route",
                &["route"],
            )?,
            piping_closed: IntCounter::new(
                "setowire_piping_closed_total",
                "Piping requests answered 404 outside the rendezvous prefix while piping_open is false",
            )?,
            piping_throttled_bytes: IntCounter::new(
                "setowire_piping_throttled_bytes_total",
                "Piped bytes that took a bandwidth cap past its rate (the transfer paused after them)",
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
            state_snapshots: IntCounter::new(
                "setowire_state_snapshots_total",
                "Snapshots of the node's state written to state_dir",
            )?,
            state_snapshot_failures: IntCounter::new(
                "setowire_state_snapshot_failures_total",
                "Snapshots that could not be written (the previous one stays)",
            )?,
            state_last_snapshot_time: Gauge::new(
                "setowire_state_last_snapshot_time_seconds",
                "When the last snapshot was written, seconds since the Unix epoch (0: never)",
            )?,
            state_last_snapshot_duration: Gauge::new(
                "setowire_state_last_snapshot_duration_seconds",
                "Time the last snapshot took, from capture to the directory flushed",
            )?,
            state_last_snapshot_bytes: IntGauge::new(
                "setowire_state_last_snapshot_bytes",
                "Size of the last snapshot file",
            )?,
            state_restore_failures: counter_vec(
                "setowire_state_restore_failures_total",
                "Parts of the snapshot skipped at start: unreadable, corrupt, cut short or over \
                 the caps (file: the whole file)",
                &["part"],
            )?,
            state_restored: counter_vec(
                "setowire_state_restored_total",
                "Entries taken back from the snapshot at start, by part",
                &["part"],
            )?,
            bootstrap_nodes: IntGauge::new(
                "setowire_bootstrap_nodes",
                "Bootstrap nodes configured (bootstrap entries)",
            )?,
            bootstrap_connected: IntGauge::new(
                "setowire_bootstrap_nodes_connected",
                "Bootstrap nodes the node has a session with",
            )?,
            bootstrap_dials: IntCounter::new(
                "setowire_bootstrap_dials_total",
                "Dials of bootstrap node addresses, first ones and retries",
            )?,
        })
    }

    fn parts(&self) -> [&dyn Collector; 54] {
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
            &self.peers_displaced,
            &self.credit_probes,
            &self.wants_repeated,
            &self.data_late,
            &self.truncated,
            &self.recv_errors,
            &self.send_errors,
            &self.inbox_drops,
            &self.loop_iterations,
            &self.heartbeat_age,
            &self.stalled,
            &self.engine_tables,
            &self.dht_requests,
            &self.dht_drops,
            &self.dht_values_evicted,
            &self.dht_values,
            &self.dht_values_bytes,
            &self.dht_nodes,
            &self.reassembly_memory,
            &self.stun_responses,
            &self.bootstrap_peers,
            &self.http_requests,
            &self.piping_transfers,
            &self.piping_bytes,
            &self.http_connections_refused,
            &self.http_timeouts,
            &self.http_announces_refused,
            &self.http_too_large,
            &self.piping_closed,
            &self.piping_throttled_bytes,
            &self.io_backend,
            &self.max_peers,
            &self.build_info,
            &self.start_time,
            &self.state_snapshots,
            &self.state_snapshot_failures,
            &self.state_last_snapshot_time,
            &self.state_last_snapshot_duration,
            &self.state_last_snapshot_bytes,
            &self.state_restore_failures,
            &self.state_restored,
            &self.bootstrap_nodes,
            &self.bootstrap_connected,
            &self.bootstrap_dials,
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
            &self.peers_displaced,
            &self.credit_probes,
            &self.wants_repeated,
            &self.data_late,
            &self.truncated,
            &self.recv_errors,
            &self.send_errors,
            &self.inbox_drops,
            &self.loop_iterations,
            &self.dht_requests,
            &self.dht_drops,
            &self.http_requests,
            &self.http_timeouts,
            &self.http_announces_refused,
            &self.http_too_large,
            &self.state_restore_failures,
            &self.state_restored,
        ] {
            vec.reset();
        }
        let now = Instant::now();
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
                (&self.peers_displaced, &shard.peers_displaced),
                (&self.credit_probes, &shard.credit_probes),
                (&self.wants_repeated, &shard.wants_repeated),
                (&self.data_late, &shard.data_late),
                (&self.truncated, &shard.truncated),
                (&self.recv_errors, &shard.recv_errors),
                (&self.loop_iterations, &shard.loop_iterations),
            ];
            for (vec, value) in pairs {
                vec.with_label_values(l).inc_by(load(value));
            }
            for kind in SendErrorKind::ALL {
                self.send_errors
                    .with_label_values(&[id.as_str(), kind.name()])
                    .inc_by(shard.send_errors(kind));
            }
            let inbox_drops = (node.inbox_drops.as_ref())
                .and_then(|drops| drops.get(i))
                .map_or(0, load);
            self.inbox_drops.with_label_values(l).inc_by(inbox_drops);
            let age = shard
                .since_publish(node.epoch, now)
                .unwrap_or_else(|| now.saturating_duration_since(node.epoch));
            self.heartbeat_age
                .with_label_values(l)
                .set(age.as_secs_f64());
            let stalled = matches!(shard.health(node.epoch, now), ShardHealth::Stalled(_));
            self.stalled.with_label_values(l).set(i64::from(stalled));
            for (table, entries) in shard.tables() {
                self.engine_tables
                    .with_label_values(&[id.as_str(), table])
                    .set(entries as i64);
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
        let mut drops = [0; DHT_DROP_REASONS.len()];
        let (mut evicted, mut values_bytes) = (0, 0);
        let (requests, values, nodes) = match &node.dht {
            Some(dht) => {
                let dht = dht.lock();
                let s = dht.stats();
                drops = dht_drops(s);
                evicted = s.values_evicted;
                values_bytes = dht.storage().bytes();
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
        for (reason, n) in DHT_DROP_REASONS.iter().zip(drops) {
            self.dht_drops.with_label_values(&[reason]).inc_by(n);
        }
        reset_counter(&self.dht_values_evicted, evicted);
        self.dht_values.set(values as i64);
        self.dht_values_bytes.set(values_bytes as i64);
        self.dht_nodes.set(nodes as i64);
        let reassembly = node.limits.as_ref().map_or(0, |l| l.reassembly_memory());
        self.reassembly_memory.set(reassembly as i64);
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
        reset_counter(&self.piping_closed, load(&http.piping_closed));
        reset_counter(
            &self.piping_throttled_bytes,
            load(&http.piping_throttled_bytes),
        );
        reset_counter(
            &self.http_connections_refused,
            load(&http.connections_refused),
        );
        let by_label = [
            (
                &self.http_timeouts,
                [
                    ("header", &http.header_timeouts),
                    ("idle", &http.idle_timeouts),
                ],
            ),
            (
                &self.http_announces_refused,
                [
                    ("owned", &http.announces_refused_owned),
                    ("per_ip_cap", &http.announces_refused_per_ip),
                ],
            ),
        ];
        for (vec, series) in by_label {
            for (label, counter) in series {
                vec.with_label_values(&[label]).inc_by(load(counter));
            }
        }
        for route in HttpRoute::ALL {
            self.http_too_large
                .with_label_values(&[route.name()])
                .inc_by(http.too_large(route));
        }
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
        self.refresh_state(&node.state);
        let bootstrap = &node.bootstrap;
        self.bootstrap_nodes.set(load(&bootstrap.configured) as i64);
        self.bootstrap_connected
            .set(load(&bootstrap.connected) as i64);
        reset_counter(&self.bootstrap_dials, load(&bootstrap.dials));
    }

    fn refresh_state(&self, state: &StateMetrics) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        reset_counter(&self.state_snapshots, load(&state.snapshots));
        reset_counter(
            &self.state_snapshot_failures,
            load(&state.snapshot_failures),
        );
        self.state_last_snapshot_time
            .set(load(&state.last_unix_ms) as f64 / 1e3);
        self.state_last_snapshot_duration
            .set(load(&state.last_duration_us) as f64 / 1e6);
        self.state_last_snapshot_bytes
            .set(load(&state.last_bytes) as i64);
        for part in StatePart::ALL {
            self.state_restore_failures
                .with_label_values(&[part.name()])
                .inc_by(state.restore_failures(part));
            if part != StatePart::File {
                self.state_restored
                    .with_label_values(&[part.name()])
                    .inc_by(state.restored(part));
            }
        }
    }
}

/// The `reason` labels of `setowire_dht_drops_total`, in the order [`dht_drops`] gives.
const DHT_DROP_REASONS: [&str; 10] = [
    "store_owned_by_other",
    "store_full",
    "store_per_ip_full",
    "store_too_large",
    "store_unverified",
    "store_rate_limited",
    "request_rate_limited",
    "reply_withheld",
    "probe_withheld",
    "out_queue_full",
];

/// The DHT's refusals and held-back datagrams, by [`DHT_DROP_REASONS`].
fn dht_drops(s: &DhtStats) -> [u64; DHT_DROP_REASONS.len()] {
    [
        s.store_owned_by_other,
        s.store_full,
        s.store_per_ip_full,
        s.store_too_large,
        s.store_unverified_dropped,
        s.store_rate_limited,
        s.request_rate_limited,
        s.replies_withheld,
        s.probes_withheld,
        s.out_queue_full,
    ]
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::io::IoStats;
    use crate::telemetry::LoopStats;
    use setowire_core::swarm::engine::tables::TableSizes;
    use setowire_core::swarm::stats::Stats;

    #[test]
    fn families_render_with_the_exported_names() {
        let mut node = NodeMetrics::new(2, BackendKind::Mmsg, 7, Instant::now());
        node.inbox_drops = Some([0, 6].map(AtomicU64::new).into());
        let node = Arc::new(node);
        let stats = Stats::default();
        let mut io = IoStats {
            datagrams_received: 3,
            bytes_received: 300,
            truncated: 2,
            ..IoStats::default()
        };
        io.send_errors.add(SendErrorKind::Denied, 5);
        let shard = LoopStats {
            peers: 4,
            iterations: 9,
            tables: TableSizes {
                peers: 4,
                addresses: 5,
                ..TableSizes::default()
            },
        };
        node.shards[1].publish(node.epoch, Instant::now(), &stats, &io, shard);
        node.http.count_request(HttpRoute::Peers, 200);
        node.handshake_seconds.observe(0.0001);
        let registry = node.registry().unwrap();
        let text = render(&registry);
        for needle in [
            "setowire_peers{shard=\"1\"} 4",
            "setowire_engine_table_entries{shard=\"1\",table=\"addresses\"} 5",
            "setowire_engine_table_entries{shard=\"0\",table=\"events\"} 0",
            "setowire_datagrams_received_total{shard=\"1\"} 3",
            "setowire_bytes_received_total{shard=\"1\"} 300",
            "setowire_io_backend{backend=\"mmsg\"} 1",
            "setowire_io_backend{backend=\"io_uring\"} 0",
            "setowire_max_peers 7",
            "setowire_http_requests_total{code_class=\"2xx\",route=\"peers\"} 1",
            "setowire_handshake_duration_seconds_count 1",
            "setowire_dht_requests_total{type=\"ping\"} 0",
            "setowire_dht_drops_total{reason=\"store_owned_by_other\"} 0",
            "setowire_dht_values_evicted_total 0",
            "setowire_frames_received_total{shard=\"0\",type=\"hello\"} 0",
            "setowire_http_timeouts_total{type=\"idle\"} 0",
            "setowire_http_announces_refused_total{reason=\"owned\"} 0",
            "setowire_http_too_large_total{route=\"announce\"} 0",
            "setowire_http_connections_refused_total 0",
            "setowire_piping_closed_total 0",
            "setowire_piping_throttled_bytes_total 0",
            "setowire_udp_truncated_datagrams_total{shard=\"1\"} 2",
            "setowire_udp_receive_errors_total{shard=\"1\"} 0",
            "setowire_udp_send_errors_total{kind=\"denied\",shard=\"1\"} 5",
            "setowire_udp_send_errors_total{kind=\"would_block\",shard=\"1\"} 0",
            "setowire_shard_inbox_drops_total{shard=\"1\"} 6",
            "setowire_shard_inbox_drops_total{shard=\"0\"} 0",
            "setowire_shard_loop_iterations_total{shard=\"1\"} 9",
            "setowire_shard_stalled{shard=\"1\"} 0",
            "setowire_shard_heartbeat_age_seconds{shard=\"0\"} ",
            "setowire_state_snapshots_total 0",
            "setowire_state_last_snapshot_bytes 0",
            "setowire_state_restore_failures_total{part=\"file\"} 0",
            "setowire_state_restored_total{part=\"dht\"} 0",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        // A second scrape gives the same counters (no double counting).
        let again = render(&registry);
        assert!(again.contains("setowire_datagrams_received_total{shard=\"1\"} 3"));
        assert!(again.contains("setowire_udp_send_errors_total{kind=\"denied\",shard=\"1\"} 5"));
        assert!(again.contains("setowire_shard_inbox_drops_total{shard=\"1\"} 6"));
        assert!(node.shards[1].healthy(node.epoch, Instant::now()));
        assert!(!node.shards[0].healthy(node.epoch, Instant::now()));
    }
}
