use super::*;
use crate::dht::{probe, storage};
use crate::simnet::{HostId, SimConfig, SimNet};
use rand::SeedableRng;
use serde_json::{json, Value};
use std::net::Ipv6Addr;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 4000 + u16::from(n)))
}

fn dht(seed: u64, now: Instant) -> Dht {
    dht_with(seed, now, DhtConfig::default())
}

fn dht_with(seed: u64, now: Instant, config: DhtConfig) -> Dht {
    let mut rng = StdRng::seed_from_u64(seed);
    let id = NodeId::random(&mut rng);
    Dht::new(config, id, now, rng)
}

/// Hands `msg` to `dht` from `src`; returns what it sent, parsed.
fn send(dht: &mut Dht, now: Instant, src: SocketAddr, msg: &Value) -> Vec<(SocketAddr, Value)> {
    let bytes = serde_json::to_vec(msg).unwrap();
    send_raw(dht, now, src, &bytes).1
}

fn send_raw(
    dht: &mut Dht,
    now: Instant,
    src: SocketAddr,
    bytes: &[u8],
) -> (usize, Vec<(SocketAddr, Value)>) {
    dht.handle_datagram(now, src, bytes);
    let mut out = Vec::new();
    let mut total = 0;
    dht.drain_transmits(|dst, b| {
        if dst == src {
            total += b.len();
        }
        out.push((dst, serde_json::from_slice(b).unwrap()))
    });
    (total, out)
}

fn drain(dht: &mut Dht) -> Vec<(SocketAddr, Value)> {
    let mut out = Vec::new();
    dht.drain_transmits(|dst, b| out.push((dst, serde_json::from_slice(b).unwrap())));
    out
}

fn node_id(n: u8) -> NodeId {
    NodeId::of_key(&format!("node {n}"))
}

fn hex_id(n: u8) -> String {
    node_id(n).to_hex()
}

/// Makes `addr(n)` (claiming id `node_id(n)`) known and verified: it pings, answers our
/// PING. False when its bucket is full.
fn try_befriend(dht: &mut Dht, now: Instant, n: u8) -> bool {
    let src = addr(n);
    let out = send(
        dht,
        now,
        src,
        &json!({"type": 1, "from": hex_id(n), "rpcId": "00000001"}),
    );
    let Some((_, ping)) = out.iter().find(|(d, m)| *d == src && m["type"] == 1) else {
        return false;
    };
    let pong = json!({"type": 2, "from": hex_id(n), "rpcId": ping["rpcId"]});
    assert!(send(dht, now, src, &pong).is_empty());
    dht.table().contains(&node_id(n))
}

fn befriend(dht: &mut Dht, now: Instant, n: u8) {
    assert!(try_befriend(dht, now, n), "node {n} not admitted");
}

#[test]
fn ping_gets_pong_with_the_rpc_id_and_a_ping_back() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    let out = send(
        &mut d,
        t0,
        addr(1),
        &json!({"type": 1, "from": hex_id(1), "rpcId": "a1b2c3d4"}),
    );
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(
        out[0].1,
        json!({"type": 2, "from": d.id().to_hex(), "rpcId": "a1b2c3d4"})
    );
    assert_eq!(out[1].1["type"], 1);
    // Not in the table until it answers.
    assert!(d.table().is_empty());
    let pong = json!({"type": 2, "from": hex_id(1), "rpcId": out[1].1["rpcId"]});
    send(&mut d, t0, addr(1), &pong);
    assert!(d.table().contains(&node_id(1)));
    assert!(d.is_verified(addr(1), t0));
    // A PING without rpcId is answered with a null one, as SimpleDHT does.
    let out = send(&mut d, t0, addr(1), &json!({"type": 1, "from": hex_id(1)}));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1["rpcId"], Value::Null);
}

#[test]
fn a_pong_from_another_address_proves_nothing() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    let out = send(
        &mut d,
        t0,
        addr(1),
        &json!({"type": 1, "from": hex_id(1), "rpcId": "00000001"}),
    );
    let pong = json!({"type": 2, "from": hex_id(1), "rpcId": out[1].1["rpcId"]});
    send(&mut d, t0, addr(2), &pong);
    assert!(d.table().is_empty());
    assert!(!d.is_verified(addr(1), t0) && !d.is_verified(addr(2), t0));
    assert_eq!(d.stats().unsolicited, 1);
}

#[test]
fn replies_to_unverified_sources_stay_within_three_times_the_request() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    for n in 1..=60 {
        try_befriend(&mut d, t0, n);
    }
    assert!(d.table().len() > 2 * K, "{}", d.table().len());
    let stranger = SocketAddr::from(([192, 0, 2, 1], 999));
    let target = node_id(7);
    let req =
        json!({"type": 4, "from": hex_id(200), "target": target.to_hex(), "rpcId": "0badc0de"});
    let bytes = serde_json::to_vec(&req).unwrap();
    let (total, out) = send_raw(&mut d, t0, stranger, &bytes);
    assert!(total <= 3 * bytes.len(), "{total} > 3 × {}", bytes.len());
    let reply = &out.iter().find(|(_, m)| m["type"] == 5).unwrap().1;
    let nodes = reply["nodes"].as_array().unwrap();
    assert!(!nodes.is_empty() && nodes.len() < K, "{}", nodes.len());
    assert_eq!(d.stats().replies_truncated, 1);
    // It answers our PING, and gets the full list next time.
    let ping = &out.iter().find(|(_, m)| m["type"] == 1).unwrap().1;
    send(
        &mut d,
        t0,
        stranger,
        &json!({"type": 2, "from": hex_id(200), "rpcId": ping["rpcId"]}),
    );
    let out = send(&mut d, t0, stranger, &req);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1["nodes"].as_array().unwrap().len(), K);
    // The closest first, by XOR distance to the target.
    let ids: Vec<NodeId> = out[0].1["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| NodeId::from_hex(n["id"].as_str().unwrap()).unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_by_key(|id| id.distance(&target));
    assert_eq!(ids, sorted);
    if d.table().contains(&target) {
        assert_eq!(ids[0], target);
    }
}

#[test]
fn tiny_requests_from_strangers_get_nothing_bigger() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    for n in 1..=5 {
        befriend(&mut d, t0, n);
    }
    let stranger = SocketAddr::from(([192, 0, 2, 1], 999));
    for req in [
        &br#"{"type":1}"#[..],
        br#"{"type":1,"rpcId":1}"#,
        br#"{"type":4,"target":"0101010101010101010101010101010101010101"}"#,
        br#"{"type":6,"key":"0101010101010101010101010101010101010101"}"#,
    ] {
        let (total, _) = send_raw(&mut d, t0, stranger, req);
        assert!(
            total <= 3 * req.len(),
            "{total} for {}",
            String::from_utf8_lossy(req)
        );
    }
    assert!(d.stats().replies_withheld >= 2);
}

#[test]
fn stores_wait_for_the_sender_to_answer() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    let key = NodeId::of_key("topic:abc:def");
    let store = json!({"type": 3, "from": hex_id(1), "key": key.to_hex(), "value": "{\"id\": 1}"});
    let out = send(&mut d, t0, addr(1), &store);
    assert_eq!(out.len(), 1, "only our PING: {out:?}");
    assert_eq!(d.value(&key, t0), None);
    let pong = json!({"type": 2, "from": hex_id(1), "rpcId": out[0].1["rpcId"]});
    send(&mut d, t0, addr(1), &pong);
    assert_eq!(d.value(&key, t0), Some("\"{\\\"id\\\": 1}\""));
    // FIND_VALUE returns it as SimpleDHT would.
    let find = json!({"type": 6, "from": hex_id(1), "key": key.to_hex(), "rpcId": "00000009"});
    let out = send(&mut d, t0, addr(1), &find);
    assert_eq!(
        out[0].1,
        json!({"type": 7, "from": d.id().to_hex(), "value": "{\"id\": 1}", "rpcId": "00000009"})
    );
    // Verified senders store at once.
    let key2 = NodeId::of_key("other");
    send(
        &mut d,
        t0,
        addr(1),
        &json!({"type": 3, "from": hex_id(1), "key": key2.to_hex(), "value": 5}),
    );
    assert_eq!(d.value(&key2, t0), Some("5"));
}

#[test]
fn held_stores_are_dropped_when_the_sender_stays_silent() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    let key = NodeId::of_key("k");
    send(
        &mut d,
        t0,
        addr(1),
        &json!({"type": 3, "key": key.to_hex(), "value": "v"}),
    );
    let mut now = t0;
    for _ in 0..40 {
        now += Duration::from_millis(250);
        d.handle_timeout(now);
        drain(&mut d);
    }
    assert_eq!(d.stats().store_unverified_dropped, 1);
    assert_eq!(d.value(&key, now), None);
    assert_eq!(d.pending_requests(), 0);
}

#[test]
fn values_expire_and_are_capped_per_ip() {
    let t0 = Instant::now();
    let config = DhtConfig {
        value_ttl: Duration::from_secs(2),
        max_values_per_ip: 3,
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    befriend(&mut d, t0, 1);
    for i in 0..5 {
        let key = NodeId::of_key(&format!("k{i}"));
        send(
            &mut d,
            t0,
            addr(1),
            &json!({"type": 3, "from": hex_id(1), "key": key.to_hex(), "value": i}),
        );
    }
    assert_eq!(d.storage().len(), 3);
    assert_eq!(d.stats().store_per_ip_full, 2);
    let key = NodeId::of_key("k0");
    assert_eq!(d.value(&key, t0 + Duration::from_secs(1)), Some("0"));
    let later = t0 + Duration::from_secs(2);
    assert_eq!(d.value(&key, later), None);
    // FIND_VALUE for an expired key answers with nodes.
    let out = send(
        &mut d,
        later,
        addr(1),
        &json!({"type": 6, "from": hex_id(1), "key": key.to_hex(), "rpcId": "00000001"}),
    );
    assert_eq!(out[0].1["type"], 5);
    d.handle_timeout(later + Duration::from_secs(10));
    assert!(d.storage().is_empty());
    // Oversized values are refused.
    let big = "x".repeat(2000);
    send(
        &mut d,
        later,
        addr(1),
        &json!({"type": 3, "from": hex_id(1), "key": key.to_hex(), "value": big}),
    );
    assert_eq!(d.stats().store_too_large, 1);
}

#[test]
fn silent_table_nodes_are_evicted() {
    let t0 = Instant::now();
    let config = DhtConfig {
        stale_after: Duration::from_secs(30),
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    befriend(&mut d, t0, 1);
    befriend(&mut d, t0, 2);
    let mut now = t0;
    for _ in 0..400 {
        now += Duration::from_millis(250);
        d.handle_timeout(now);
        for (dst, m) in drain(&mut d) {
            // Node 2 answers, node 1 is gone.
            if dst == addr(2) && m["type"] == 1 {
                send(
                    &mut d,
                    now,
                    dst,
                    &json!({"type": 2, "from": hex_id(2), "rpcId": m["rpcId"]}),
                );
            }
        }
    }
    assert!(!d.table().contains(&node_id(1)));
    assert!(d.table().contains(&node_id(2)));
    assert!(d.stats().nodes_evicted >= 1);
}

#[test]
fn garbage_is_counted_and_never_panics() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    let mut rng = StdRng::seed_from_u64(7);
    let mut malformed = 0;
    for i in 0..5000 {
        let len = rng.gen_range(1..300);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        bytes[0] = b'{';
        if i % 3 == 0 {
            // Mostly valid JSON with hostile fields.
            bytes = format!(
                r#"{{"type": {}, "from": "{}", "key": {}, "nodes": [{{"id": 1}}], "rpcId": [{}]}}"#,
                rng.gen_range(0..9),
                hex_id(rng.gen()),
                rng.gen::<u32>(),
                rng.gen::<u8>()
            )
            .into_bytes();
        }
        if let Outcome::Malformed(_) = d.handle_datagram(t0, addr(1), &bytes) {
            malformed += 1;
        }
        drain(&mut d);
    }
    assert!(malformed > 3000);
    assert_eq!(d.stats().malformed + d.stats().too_large, malformed);
    assert!(d.table().is_empty() && d.storage().is_empty());
}

#[test]
fn nodes_join_through_a_bootstrap_node_and_announce_to_each_other() {
    let t0 = Instant::now();
    let mut net = SimNet::new(t0, SimConfig::default());
    let nodes: Vec<HostId> = (1..=12)
        .map(|n| net.add_host(addr(n), dht(u64::from(n), t0)).unwrap())
        .collect();
    let seed = addr(1);
    for (i, &node) in nodes.iter().enumerate().skip(1) {
        let d = net.host_mut(node);
        d.announce(&format!("topic:abc:{i}"), format!("\"value {i}\""));
        d.bootstrap(t0, &[seed]);
    }
    net.settle().expect("the network goes quiet");
    net.run_for(Duration::from_secs(30)).unwrap();
    for &node in &nodes {
        let table = net.host(node).table().len();
        assert!(table >= 5, "{}: {table} nodes", net.addr(node));
    }
    // Every announced value sits at the K closest nodes: with 12 nodes, at all the others.
    for i in 1..12 {
        let key = NodeId::of_key(&format!("topic:abc:{i}"));
        let holders = nodes
            .iter()
            .filter(|&&node| {
                net.host(node).value(&key, net.now()) == Some(&format!("\"value {i}\""))
            })
            .count();
        assert_eq!(holders, 12, "topic {i}");
    }
}

fn store_msg(n: u8, key: &NodeId, value: &str) -> Value {
    json!({"type": 3, "from": hex_id(n), "key": key.to_hex(), "value": value})
}

#[test]
fn a_key_stays_with_the_address_that_stored_it_first() {
    let t0 = Instant::now();
    let mut d = dht(1, t0);
    befriend(&mut d, t0, 1);
    befriend(&mut d, t0, 2);
    let key = NodeId::of_key("topic:abc:owned");
    send(&mut d, t0, addr(1), &store_msg(1, &key, "first"));
    send(&mut d, t0, addr(2), &store_msg(2, &key, "hijack"));
    assert_eq!(d.value(&key, t0), Some("\"first\""));
    assert_eq!(d.stats().store_owned_by_other, 1);
    // The owner replaces it, from any port of its IP.
    let other_port = SocketAddr::new(addr(1).ip(), 9);
    send(&mut d, t0, addr(1), &store_msg(1, &key, "second"));
    assert_eq!(d.value(&key, t0), Some("\"second\""));
    // (A STORE from an unverified port waits for that port's answer, as any other.)
    send(&mut d, t0, other_port, &store_msg(1, &key, "third"));
    assert_eq!(d.value(&key, t0), Some("\"second\""));
    assert_eq!(d.stats().store_owned_by_other, 1);
}

#[test]
fn one_address_that_filled_the_store_does_not_lock_out_the_others() {
    let t0 = Instant::now();
    let value = "v".repeat(1000);
    let config = DhtConfig {
        max_values_bytes: 40 * storage::entry_cost(value.len() + 2),
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    befriend(&mut d, t0, 1);
    befriend(&mut d, t0, 2);
    for i in 0..60 {
        let key = NodeId::of_key(&format!("a{i}"));
        send(&mut d, t0, addr(1), &store_msg(1, &key, &value));
    }
    let held_by_1 = d.storage().len();
    assert!(held_by_1 < 40 && d.stats().store_full > 0, "{held_by_1}");
    let a = |i: usize| NodeId::of_key(&format!("a{i}"));
    let newest = (0..60)
        .rev()
        .find(|&i| d.value(&a(i), t0).is_some())
        .unwrap();
    for i in 0..10 {
        let key = NodeId::of_key(&format!("b{i}"));
        send(&mut d, t0, addr(2), &store_msg(2, &key, &value));
        assert!(d.value(&key, t0).is_some(), "b{i} refused");
    }
    assert!(d.stats().values_evicted >= 10);
    // Address 1 lost its oldest values, kept its newest.
    assert_eq!(d.value(&a(0), t0), None);
    assert!(d.value(&a(newest), t0).is_some());
}

#[test]
fn requests_are_rate_limited_per_ipv4_address_and_ipv6_prefix() {
    let t0 = Instant::now();
    let config = DhtConfig {
        store_rate: Rate {
            per_second: 1.0,
            burst: 5.0,
        },
        request_rate: Rate {
            per_second: 1.0,
            burst: 10.0,
        },
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    befriend(&mut d, t0, 1);
    let before = d.stats().clone();
    for i in 0..20 {
        let key = NodeId::of_key(&format!("k{i}"));
        send(&mut d, t0, addr(1), &store_msg(1, &key, "x"));
    }
    // Each STORE pays: 5 in the burst, the other 15 dropped before any work.
    assert_eq!(d.stats().store_rate_limited, 15);
    assert_eq!(d.storage().len(), 5);
    // The budgets are separate: PINGs still get through, up to theirs (the befriending
    // PING took one).
    let ping = json!({"type": 1, "from": hex_id(1), "rpcId": "00000001"});
    let answered = (0..20)
        .filter(|_| !send(&mut d, t0, addr(1), &ping).is_empty())
        .count();
    assert_eq!(answered, 9);
    assert_eq!(d.stats().request_rate_limited, 11);
    assert_eq!(
        d.stats().pings - before.pings,
        20,
        "counted by type all the same"
    );
    // Another IPv4 address has its own budget; every address of one IPv6 /64 shares one.
    let other = SocketAddr::from(([10, 0, 0, 99], 1));
    assert!(!send(&mut d, t0, other, &ping).is_empty());
    let in_64 =
        |host: u16| SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host), 1));
    let answered = (1..=20u16)
        .filter(|&h| !send(&mut d, t0, in_64(h), &ping).is_empty())
        .count();
    assert_eq!(answered, 10);
    let next_64 = SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1), 1));
    assert!(!send(&mut d, t0, next_64, &ping).is_empty());
    // The budget refills with time.
    let later = t0 + Duration::from_secs(3);
    assert!(!send(&mut d, later, in_64(1), &ping).is_empty());
}

#[test]
fn the_ipv6_prefix_length_is_configurable() {
    let t0 = Instant::now();
    let config = DhtConfig {
        ipv6_prefix_len: 48,
        request_rate: Rate {
            per_second: 1.0,
            burst: 3.0,
        },
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    let ping = json!({"type": 1, "from": hex_id(1), "rpcId": "00000001"});
    // Different /64s of one /48 share one budget.
    let in_48 = |net: u16| SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 7, net, 0, 0, 0, 1), 1));
    let answered = (1..=6u16)
        .filter(|&n| !send(&mut d, t0, in_48(n), &ping).is_empty())
        .count();
    assert_eq!(answered, 3);
}

/// Bytes received from and sent to one victim, by time.
#[derive(Default)]
struct Ledger(Vec<(Instant, usize, usize)>);

impl Ledger {
    /// The largest bytes sent over bytes received in any window of `width` that starts at
    /// an event; `None` when something was sent in a window where nothing was received.
    fn worst_ratio(&self, width: Duration) -> Option<f64> {
        let mut worst: f64 = 0.0;
        let mut end = 0;
        let (mut got, mut sent) = (0, 0);
        for start in 0..self.0.len() {
            while end < self.0.len() && self.0[end].0 < self.0[start].0 + width {
                got += self.0[end].1;
                sent += self.0[end].2;
                end += 1;
            }
            if sent > 0 {
                if got == 0 {
                    return None;
                }
                worst = worst.max(sent as f64 / got as f64);
            }
            got -= self.0[start].1;
            sent -= self.0[start].2;
        }
        Some(worst)
    }
}

#[test]
fn forged_requests_never_reflect_more_than_three_times_toward_their_victim() {
    let t0 = Instant::now();
    // Limits high enough that every forged request is answered: the bound must hold by
    // itself, not thanks to the rate limits.
    let generous = Rate {
        per_second: 1e6,
        burst: 1e6,
    };
    let config = DhtConfig {
        store_rate: generous,
        request_rate: generous,
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    for n in 1..=60 {
        try_befriend(&mut d, t0, n);
    }
    let big = NodeId::of_key("big");
    send(&mut d, t0, addr(1), &store_msg(1, &big, &"v".repeat(1100)));
    assert!(d.value(&big, t0).is_some());
    // The victim's port 1000 proved itself; the attacker forges its other ports.
    let victim = IpAddr::from([192, 0, 2, 9]);
    let proven = SocketAddr::new(victim, 1000);
    let out = send(
        &mut d,
        t0,
        proven,
        &json!({"type": 1, "from": hex_id(250), "rpcId": "1"}),
    );
    let ping = &out.iter().find(|(_, m)| m["type"] == 1).unwrap().1;
    send(
        &mut d,
        t0,
        proven,
        &json!({"type": 2, "from": hex_id(250), "rpcId": ping["rpcId"]}),
    );
    assert!(d.is_verified(proven, t0));
    let forged: Vec<Vec<u8>> = [
        json!({"type": 4, "from": hex_id(251), "target": hex_id(7), "rpcId": "0badf00d"}),
        json!({"type": 6, "from": hex_id(251), "key": big.to_hex(), "rpcId": "0badf00e"}),
        json!({"type": 6, "from": hex_id(251), "key": hex_id(9), "rpcId": 1}),
        json!({"type": 1, "from": hex_id(251), "rpcId": "0badf00f"}),
        json!({"type": 3, "from": hex_id(251), "key": hex_id(3), "value": "forged"}),
        json!({"type": 4, "target": hex_id(8)}),
        json!({"type": 6, "key": big.to_hex()}),
        json!({"type": 1}),
    ]
    .iter()
    .map(|m| serde_json::to_vec(m).unwrap())
    .chain([b"{\"type\": 9}".to_vec(), b"{".to_vec()])
    .collect();
    let mut ledger = Ledger::default();
    let mut now = t0;
    // 70 s of forged requests, one every 20 ms, from four ports the victim never proved.
    for i in 0..3500 {
        now += Duration::from_millis(20);
        let src = SocketAddr::new(victim, 2000 + (i % 4) as u16);
        let request = &forged[i % forged.len()];
        d.handle_datagram(now, src, request);
        d.handle_timeout(now);
        let mut sent = 0;
        d.drain_transmits(|dst, b| {
            if dst.ip() == victim && dst != proven {
                sent += b.len();
            }
        });
        ledger.0.push((now, request.len(), sent));
    }
    let total_got: usize = ledger.0.iter().map(|e| e.1).sum();
    let total_sent: usize = ledger.0.iter().map(|e| e.2).sum();
    assert!(
        total_sent > total_got,
        "the test reflects something: {total_sent}"
    );
    for width in [Duration::from_secs(10), Duration::from_secs(60)] {
        let worst = ledger.worst_ratio(width).expect("nothing sent unasked");
        assert!(
            worst <= AMPLIFICATION_FACTOR as f64,
            "{worst:.2}× over {width:?} ({total_sent} sent for {total_got})"
        );
    }
    // The bound cut replies short and withheld some, rather than letting them through.
    assert!(d.stats().replies_truncated > 0 && d.stats().replies_withheld > 0);
}

#[test]
fn lookups_probe_an_unverified_address_a_few_times_a_minute() {
    let t0 = Instant::now();
    let config = DhtConfig {
        announce_interval: Duration::from_secs(5),
        ..DhtConfig::default()
    };
    let mut d = dht_with(1, t0, config);
    befriend(&mut d, t0, 1);
    for i in 0..8 {
        d.announce(&format!("mine {i}"), "1".into());
    }
    // Node 1 answers every FIND_NODE with 20 made-up nodes at the victim's IP.
    let victim = IpAddr::from([192, 0, 2, 66]);
    let mut fake = 0u32;
    let mut probes: Vec<Instant> = Vec::new();
    let mut now = t0;
    for _ in 0..2400 {
        now += Duration::from_millis(250);
        d.handle_timeout(now);
        let mut queue = drain(&mut d);
        while let Some((dst, m)) = queue.pop() {
            if dst.ip() == victim {
                probes.push(now);
            } else if dst == addr(1) && m["type"] == 4 {
                let nodes: Vec<Value> = (0..20)
                    .map(|_| {
                        fake += 1;
                        let id = NodeId::of_key(&format!("fake {fake}")).to_hex();
                        json!({"id": id, "ip": victim.to_string(), "port": 1 + fake % 60000})
                    })
                    .collect();
                let reply =
                    json!({"type": 5, "from": hex_id(1), "nodes": nodes, "rpcId": m["rpcId"]});
                queue.extend(send(&mut d, now, dst, &reply));
            } else if dst == addr(1) && m["type"] == 1 {
                let pong = json!({"type": 2, "from": hex_id(1), "rpcId": m["rpcId"]});
                queue.extend(send(&mut d, now, dst, &pong));
            }
        }
    }
    assert!(fake > 1000, "node 1 was asked: {fake}");
    assert!(!probes.is_empty(), "lookups still try new nodes");
    for (i, t) in probes.iter().enumerate() {
        let in_minute = probes[i..]
            .iter()
            .take_while(|u| **u < *t + probe::PROBE_WINDOW)
            .count();
        assert!(
            in_minute <= usize::from(probe::PROBES_PER_WINDOW),
            "{in_minute} at {i}"
        );
    }
    assert!(d.stats().probes_withheld > 0);
}
