//! `GET /metrics` on the admin listener with real traffic: a py-setowire 0.1.0 peer
//! connected and exchanging data, HTTP bootstrap and a piping transfer. Checks that every
//! exported family is there with sensible values, and that the text is valid Prometheus
//! exposition format (a strict line check).

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use admin::prom::{parse, sum};
use admin::{get, node_with_admin};
use http_client::{curl, curl_spawn, curl_with_stdin, finish};
use support::net::TestNet;
use support::pattern_bytes;
use support::peer::PyPeer;

#[test]
fn metrics_cover_the_node_with_real_traffic() {
    let net = TestNet::new();
    // Piping open: the transfer below uses a generic path.
    let (mut node, admin) = node_with_admin(&net, &["--shards", "2", "--piping-open"]);
    let ready = node
        .proc
        .events_so_far()
        .into_iter()
        .find(|e| support::is_event(e, "ready"))
        .unwrap();
    let http = format!("http://127.0.0.1:{}", ready["http_port"].as_u64().unwrap());
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    py.dial_peer(&node);
    node.wait_connection(&py.id8);
    py.wait_connection(&node.id8);
    for i in 0..5 {
        let payload = pattern_bytes(100 + i, 64);
        py.broadcast(&payload);
        node.wait_data_eq(&py.id8, &payload);
    }
    // HTTP bootstrap and one piping transfer.
    assert_eq!(curl(&net, &[&format!("{http}/peers")]).status, 200);
    let receiver = curl_spawn(&net, &[&format!("{http}/metrics-test-pipe")]);
    std::thread::sleep(Duration::from_millis(200));
    let body = pattern_bytes(9, 5000);
    let sender = curl_with_stdin(
        &net,
        &["-T", "-", &format!("{http}/metrics-test-pipe")],
        &body,
    );
    assert_eq!(sender.status, 200, "{sender:?}");
    let received = finish(receiver, Duration::from_secs(30));
    assert!(received.body.ends_with(&body), "{}", received.status);

    // The shards publish every 100 ms: wait until the data shows.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (types, samples) = loop {
        let reply = get(&net, &format!("{admin}/metrics"), None);
        assert_eq!(reply.status, 200);
        assert!(reply
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let (types, samples) = parse(&reply.text());
        if sum(&samples, "setowire_data_delivered_total", &[]) >= 5.0
            && sum(&samples, "setowire_peers", &[]) == 1.0
        {
            break (types, samples);
        }
        assert!(
            Instant::now() < deadline,
            "data never showed:\n{}",
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };

    let expected = [
        ("setowire_peers", "gauge"),
        ("setowire_handshakes_total", "counter"),
        ("setowire_datagrams_received_total", "counter"),
        ("setowire_datagrams_sent_total", "counter"),
        ("setowire_bytes_received_total", "counter"),
        ("setowire_bytes_sent_total", "counter"),
        ("setowire_frames_received_total", "counter"),
        ("setowire_drops_total", "counter"),
        ("setowire_relay_forwards_total", "counter"),
        ("setowire_data_delivered_total", "counter"),
        ("setowire_peers_displaced_total", "counter"),
        ("setowire_credit_probes_total", "counter"),
        ("setowire_reassembly_memory_bytes", "gauge"),
        ("setowire_udp_truncated_datagrams_total", "counter"),
        ("setowire_udp_receive_errors_total", "counter"),
        ("setowire_udp_send_errors_total", "counter"),
        ("setowire_shard_inbox_drops_total", "counter"),
        ("setowire_shard_loop_iterations_total", "counter"),
        ("setowire_shard_heartbeat_age_seconds", "gauge"),
        ("setowire_shard_stalled", "gauge"),
        ("setowire_engine_table_entries", "gauge"),
        ("setowire_dht_requests_total", "counter"),
        ("setowire_dht_drops_total", "counter"),
        ("setowire_dht_values_evicted_total", "counter"),
        ("setowire_dht_values", "gauge"),
        ("setowire_dht_values_bytes", "gauge"),
        ("setowire_dht_nodes", "gauge"),
        ("setowire_stun_responses_total", "counter"),
        ("setowire_http_bootstrap_peers", "gauge"),
        ("setowire_http_requests_total", "counter"),
        ("setowire_piping_transfers_total", "counter"),
        ("setowire_piping_bytes_total", "counter"),
        ("setowire_http_connections_refused_total", "counter"),
        ("setowire_http_timeouts_total", "counter"),
        ("setowire_http_announces_refused_total", "counter"),
        ("setowire_http_too_large_total", "counter"),
        ("setowire_piping_closed_total", "counter"),
        ("setowire_piping_throttled_bytes_total", "counter"),
        ("setowire_io_backend", "gauge"),
        ("setowire_handshake_duration_seconds", "histogram"),
        ("setowire_max_peers", "gauge"),
        ("setowire_build_info", "gauge"),
        ("setowire_start_time_seconds", "gauge"),
        ("setowire_state_snapshots_total", "counter"),
        ("setowire_state_snapshot_failures_total", "counter"),
        ("setowire_state_last_snapshot_time_seconds", "gauge"),
        ("setowire_state_last_snapshot_duration_seconds", "gauge"),
        ("setowire_state_last_snapshot_bytes", "gauge"),
        ("setowire_state_restore_failures_total", "counter"),
        ("setowire_state_restored_total", "counter"),
        ("setowire_bootstrap_nodes", "gauge"),
        ("setowire_bootstrap_nodes_connected", "gauge"),
        ("setowire_bootstrap_dials_total", "counter"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
    ];
    for (name, kind) in expected {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }

    // Per-shard families carry exactly shards 0 and 1.
    let shards: BTreeSet<&str> = samples
        .iter()
        .filter(|(n, _, _)| n == "setowire_peers")
        .map(|(_, l, _)| l["shard"].as_str())
        .collect();
    assert_eq!(shards, BTreeSet::from(["0", "1"]));
    // Labels stay bounded: no peer ids or addresses anywhere.
    let allowed = [
        "shard",
        "type",
        "reason",
        "kind",
        "backend",
        "route",
        "code_class",
        "part",
        "table",
        "version",
        "le",
    ];
    for (name, labels, _) in &samples {
        for key in labels.keys() {
            assert!(allowed.contains(&key.as_str()), "{name} has label {key}");
        }
    }
    let text_all: String = samples.iter().map(|s| format!("{s:?}")).collect();
    assert!(!text_all.contains(&py.id8) && !text_all.contains(&py.port.to_string()));

    assert_eq!(sum(&samples, "setowire_peers", &[]), 1.0);
    assert!(sum(&samples, "setowire_handshakes_total", &[]) >= 1.0);
    assert!(sum(&samples, "setowire_datagrams_received_total", &[]) >= 6.0);
    assert!(sum(&samples, "setowire_datagrams_sent_total", &[]) >= 1.0);
    assert!(sum(&samples, "setowire_bytes_received_total", &[]) >= 5.0 * 64.0);
    assert!(sum(&samples, "setowire_bytes_sent_total", &[]) > 0.0);
    assert!(
        sum(
            &samples,
            "setowire_frames_received_total",
            &[("type", "hello")]
        ) >= 1.0
    );
    assert!(
        sum(
            &samples,
            "setowire_frames_received_total",
            &[("type", "data")]
        ) >= 5.0
    );
    assert!(sum(&samples, "setowire_data_delivered_total", &[]) >= 5.0);
    assert_eq!(
        samples
            .iter()
            .filter(|(n, _, _)| n == "setowire_drops_total")
            .count(),
        2 * 28,
        "every reason on every shard"
    );
    let count = |name: &str| samples.iter().filter(|(n, _, _)| n == name).count();
    assert_eq!(
        count("setowire_udp_send_errors_total"),
        2 * 5,
        "every send error kind on every shard"
    );
    assert_eq!(
        count("setowire_engine_table_entries"),
        2 * 10,
        "every engine table on every shard"
    );
    // The peers table holds the sessions the peers gauge counts.
    assert_eq!(
        sum(
            &samples,
            "setowire_engine_table_entries",
            &[("table", "peers")]
        ),
        sum(&samples, "setowire_peers", &[])
    );
    for name in [
        "setowire_udp_truncated_datagrams_total",
        "setowire_udp_receive_errors_total",
        "setowire_shard_inbox_drops_total",
        "setowire_shard_loop_iterations_total",
        "setowire_shard_heartbeat_age_seconds",
        "setowire_shard_stalled",
    ] {
        assert_eq!(count(name), 2, "{name}: one series per shard");
    }
    // Ordinary traffic: nothing cut short, refused or dropped between shards.
    assert_eq!(
        sum(&samples, "setowire_udp_truncated_datagrams_total", &[]),
        0.0
    );
    assert_eq!(sum(&samples, "setowire_udp_send_errors_total", &[]), 0.0);
    assert_eq!(sum(&samples, "setowire_shard_inbox_drops_total", &[]), 0.0);
    assert_eq!(sum(&samples, "setowire_shard_stalled", &[]), 0.0);
    for shard in ["0", "1"] {
        let on = [("shard", shard)];
        assert!(sum(&samples, "setowire_shard_loop_iterations_total", &on) >= 1.0);
        let age = sum(&samples, "setowire_shard_heartbeat_age_seconds", &on);
        assert!(
            (0.0..2.0).contains(&age),
            "shard {shard} heartbeat {age} s old"
        );
    }
    assert!(sum(&samples, "setowire_handshake_duration_seconds_count", &[]) >= 1.0);
    let hs_sum = sum(&samples, "setowire_handshake_duration_seconds_sum", &[]);
    assert!(hs_sum > 0.0 && hs_sum < 1.0, "handshake seconds {hs_sum}");
    assert_eq!(sum(&samples, "setowire_io_backend", &[]), 1.0);
    let status = get(&net, &format!("{admin}/api/v1/status"), None).json();
    let backend = status["io_backend"].as_str().unwrap();
    assert_eq!(
        sum(&samples, "setowire_io_backend", &[("backend", backend)]),
        1.0
    );
    assert_eq!(sum(&samples, "setowire_max_peers", &[]), 100_000.0);
    assert_eq!(
        sum(
            &samples,
            "setowire_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let start = sum(&samples, "setowire_start_time_seconds", &[]);
    assert!(start > 1.6e9, "start time {start}");
    for kind in ["ping", "store", "find_node", "find_value", "other"] {
        assert!(samples
            .iter()
            .any(|(n, l, _)| n == "setowire_dht_requests_total" && l["type"] == kind));
    }
    assert!(
        sum(
            &samples,
            "setowire_http_requests_total",
            &[("route", "peers"), ("code_class", "2xx")]
        ) >= 1.0
    );
    assert!(
        sum(
            &samples,
            "setowire_http_requests_total",
            &[("route", "piping"), ("code_class", "2xx")]
        ) >= 2.0
    );
    assert_eq!(sum(&samples, "setowire_piping_transfers_total", &[]), 1.0);
    assert!(sum(&samples, "setowire_piping_bytes_total", &[]) >= 5000.0);
    // Without a state directory the persistence families are there, all zero, each part
    // of the snapshot labelled.
    let parts = |name: &str| -> BTreeSet<String> {
        samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, _)| l["part"].clone())
            .collect()
    };
    let all = ["announcements", "dht", "file", "peers", "values"].map(String::from);
    assert_eq!(
        parts("setowire_state_restore_failures_total"),
        BTreeSet::from(all.clone())
    );
    assert_eq!(
        parts("setowire_state_restored_total"),
        all.into_iter().filter(|p| p != "file").collect()
    );
    for name in [
        "setowire_state_snapshots_total",
        "setowire_state_snapshot_failures_total",
        "setowire_state_last_snapshot_time_seconds",
        "setowire_state_restore_failures_total",
    ] {
        assert_eq!(sum(&samples, name, &[]), 0.0, "{name}");
    }
    assert!(sum(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sum(&samples, "process_open_fds", &[]) >= 3.0);
    assert!(sum(&samples, "process_cpu_seconds_total", &[]) >= 0.0);
}
