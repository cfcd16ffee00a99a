//! The node's JSON DHT against hostile sources over real UDP on loopback, each 127.0.0.x
//! address a different IP: a key stays with the IP that stored it first, an IP that filled
//! the store does not lock out the next one, STOREs are rate-limited per IP for the whole
//! node (not per shard), a forged victim address gets at most three times its bytes, and
//! the refusals show in the Prometheus metrics.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::net::SocketAddr;
use std::time::Duration;

use admin::{get, node_with_admin};
use serde_json::json;
use setowire_core::dht::NodeId;
use support::dht::Raw;
use support::net::TestNet;

/// The value of the sample `series` (name and labels as written) in the metrics `text`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing in\n{text}"))
}

#[test]
fn hostile_sources_get_their_share_and_no_more() {
    let net = TestNet::new();
    // 100000 bytes hold about 70 values of 1000 bytes; 160 STOREs per IP in a burst, then one
    // per second; two shards.
    let (node, admin) = node_with_admin(
        &net,
        &[
            "--shards",
            "2",
            "--dht-max-values-bytes",
            "100000",
            "--dht-store-rate-per-ip",
            "1",
            "--dht-store-burst-per-ip",
            "160",
        ],
    );
    let target: SocketAddr = node.addr().parse().unwrap();
    let ids: Vec<String> = (0..8).map(|i| format!("{i:02x}").repeat(20)).collect();
    let value = "x".repeat(1000);
    net.run_inside(|| {
        let a = Raw::bind("127.0.0.2:0", target, &ids[0]);
        let b = Raw::bind("127.0.0.3:0", target, &ids[1]);
        a.prove();
        b.prove();

        // Ownership: b cannot overwrite a's key; a can.
        a.store("contested", "from a");
        a.collect(Duration::from_millis(100));
        b.store("contested", "from b");
        b.collect(Duration::from_millis(100));
        assert_eq!(b.find_value("contested", 1), Some(json!("from a")));
        a.store("contested", "from a again");
        a.collect(Duration::from_millis(100));
        assert_eq!(b.find_value("contested", 2), Some(json!("from a again")));

        // Fair share: a fills the store, b still gets its 20 values in.
        for i in 0..150 {
            a.store(&format!("a {i}"), &value);
            if i % 25 == 0 {
                a.collect(Duration::from_millis(20));
            }
        }
        a.collect(Duration::from_millis(200));
        let kept_by_a = (0..150)
            .filter(|i| a.find_value(&format!("a {i}"), 100 + i).is_some())
            .count();
        assert!((40..100).contains(&kept_by_a), "a kept {kept_by_a}");
        for i in 0..20 {
            b.store(&format!("b {i}"), &value);
        }
        b.collect(Duration::from_millis(200));
        let accepted = (0..20)
            .filter(|i| b.find_value(&format!("b {i}"), 1000 + i).is_some())
            .count();
        assert_eq!(accepted, 20, "b's STOREs into a store a filled");

        // The STORE rate is per IP for the whole node: 200 STOREs from four ports of one IP
        // (spread over both shards by the kernel) get one burst of 160 between them.
        let c: Vec<Raw> = (0..4)
            .map(|i| Raw::bind("127.0.0.4:0", target, &ids[2 + i]))
            .collect();
        for raw in &c {
            raw.prove();
        }
        for i in 0..200 {
            let raw = &c[i % 4];
            raw.store(&format!("c {i}"), "small");
        }
        std::thread::sleep(Duration::from_millis(300));

        // Reflection: the victim's first port proved itself, its other ports are forged. A
        // table of 7 nodes and a 1000-byte value make replies bigger than the requests.
        let proven = Raw::bind("127.0.0.5:0", target, &ids[6]);
        proven.prove();
        a.store("big", &value);
        let forged: Vec<Raw> = (0..4)
            .map(|_| Raw::bind("127.0.0.5:0", target, &ids[7]))
            .collect();
        let requests = [
            json!({"type": 4, "from": ids[7], "target": "0".repeat(40), "rpcId": "0badf00d"}),
            json!({"type": 6, "from": ids[7], "key": NodeId::of_key("big").to_hex(), "rpcId": "1"}),
            json!({"type": 1, "from": ids[7], "rpcId": "0badf00f"}),
            json!({"type": 4, "target": "1".repeat(40)}),
            json!({"type": 6, "key": NodeId::of_key("big").to_hex()}),
        ];
        let (mut sent, mut received) = (0, 0);
        for i in 0..200 {
            let request = requests[i % requests.len()].to_string();
            forged[i % 4].send(request.as_bytes());
            sent += request.len();
            if i % 20 == 19 {
                for raw in &forged {
                    received += raw
                        .collect(Duration::from_millis(10))
                        .iter()
                        .map(Vec::len)
                        .sum::<usize>();
                }
            }
        }
        for raw in &forged {
            received += raw
                .collect(Duration::from_millis(200))
                .iter()
                .map(Vec::len)
                .sum::<usize>();
        }
        assert!(received > 0, "the forged ports got nothing at all");
        assert!(
            received <= 3 * sent,
            "{received} bytes toward the forged ports for {sent}"
        );
    });

    let text = get(&net, &format!("{admin}/metrics"), None).text();
    let drop = |reason: &str| {
        metric(
            &text,
            &format!("setowire_dht_drops_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(drop("store_owned_by_other"), 1.0);
    assert!(drop("store_full") >= 1.0);
    let limited = drop("store_rate_limited");
    assert!(
        (35.0..=40.0).contains(&limited),
        "{limited} STOREs rate-limited of 40 over"
    );
    assert!(metric(&text, "setowire_dht_values_evicted_total") >= 20.0);
    let bytes = metric(&text, "setowire_dht_values_bytes");
    assert!(bytes > 50_000.0 && bytes <= 100_000.0, "{bytes}");
}
