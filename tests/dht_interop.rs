//! The node's JSON DHT against real py-setowire 0.1.0 `SimpleDHT` clients
//! (`tests/interop/dht_probe.py`): bootstrapping from the node, the shapes of its answers,
//! values found through it, expiry, federation between nodes, the separate DHT port, and
//! the bounds that hold for addresses that have not proven themselves.

#[macro_use]
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use setowire_core::dht::id::topic_hash;
use setowire_core::dht::NodeId;
use support::dht::Raw;
use support::net::TestNet;
use support::peer::{spawn_node, ControlPeer};
use support::process::LineProcess;
use support::{is_event, venv, TIMEOUT};

on_both_backends!(
    simple_dht_bootstraps_from_the_node,
    two_simple_dhts_find_each_others_values_through_the_node,
);

/// One `SimpleDHT` behind the probe script.
struct Probe {
    proc: LineProcess,
    id: String,
    port: u16,
}

impl Probe {
    #[track_caller]
    fn spawn(net: &TestNet, label: &str) -> Probe {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/dht_probe.py");
        let mut cmd = net.command(venv::python());
        cmd.arg("-I").arg("-u").arg(script);
        let mut proc = LineProcess::spawn_command(label, cmd);
        let ready = proc.wait_event(TIMEOUT, |e| is_event(e, "ready"));
        let id = ready["id"].as_str().unwrap().to_owned();
        let port = ready["port"].as_u64().unwrap() as u16;
        Probe { proc, id, port }
    }

    #[track_caller]
    fn call(&mut self, cmd: Value, event: &str) -> Value {
        self.proc.send(&cmd);
        let ev = self
            .proc
            .wait_event(TIMEOUT, |e| is_event(e, event) || is_event(e, "error"));
        assert!(
            is_event(&ev, event),
            "{}: {cmd} failed: {ev}",
            self.proc.label()
        );
        ev
    }

    /// PINGs `addr` with SimpleDHT's own RPC; returns the responder's DHT id.
    #[track_caller]
    fn ping(&mut self, addr: &str) -> String {
        let ev = self.call(json!({"cmd": "ping", "addr": addr}), "pong");
        ev["id"].as_str().unwrap().to_owned()
    }

    /// `SimpleDHT.bootstrap()` from the nodes it knows; returns its table's ids.
    #[track_caller]
    fn bootstrap(&mut self) -> Vec<String> {
        let ev = self.call(json!({"cmd": "bootstrap"}), "bootstrapped");
        ids(&ev["table"])
    }

    #[track_caller]
    fn table(&mut self) -> Vec<String> {
        ids(&self.call(json!({"cmd": "table"}), "table")["table"])
    }

    #[track_caller]
    fn put(&mut self, key: &str, value: Value) {
        self.call(json!({"cmd": "put", "key": key, "value": value}), "stored");
    }

    #[track_caller]
    fn find_value(&mut self, key: &str) -> Value {
        self.call(json!({"cmd": "find_value", "key": key}), "value")["value"].clone()
    }

    /// One request through SimpleDHT's RPC (it adds `from`'s rpcId); the reply, or `None`
    /// after its 5 s timeout. Also returns the reply's keys in order.
    #[track_caller]
    fn rpc(&mut self, addr: &str, msg: Value) -> Option<(Value, Vec<String>)> {
        let ev = self.call(json!({"cmd": "rpc", "addr": addr, "msg": msg}), "reply");
        let keys = ev["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect();
        (!ev["reply"].is_null()).then(|| (ev["reply"].clone(), keys))
    }
}

fn ids(table: &Value) -> Vec<String> {
    table
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

fn find_node(from: &str, target: &str) -> Value {
    json!({"type": 4, "from": from, "target": target})
}

fn find_value(from: &str, key: &str) -> Value {
    json!({"type": 6, "from": from, "key": NodeId::of_key(key).to_hex()})
}

fn node(net: &TestNet, backend: &str, extra: &[&str]) -> ControlPeer {
    let mut args = vec!["--shards", "2", "--io-backend", backend];
    args.extend_from_slice(extra);
    spawn_node(net, &args)
}

fn simple_dht_bootstraps_from_the_node(backend: &str) {
    let net = TestNet::new();
    let node = node(&net, backend, &[]);
    let addr = node.addr();
    let mut probes: Vec<Probe> = (0..4)
        .map(|i| Probe::spawn(&net, &format!("dht#{i}")))
        .collect();
    let mut node_id = String::new();
    for p in &mut probes[..3] {
        node_id = p.ping(&addr);
        let table = p.bootstrap();
        assert!(table.contains(&node_id), "{table:?}");
    }
    // A newcomer learns every node that answered the node's PINGs.
    let last = &mut probes[3];
    assert_eq!(last.ping(&addr), node_id);
    let table = last.bootstrap();
    for earlier in ["dht#0", "dht#1", "dht#2"] {
        let id = probes_id(&probes, earlier);
        assert!(table.contains(&id), "{earlier} {id} missing from {table:?}");
    }
    assert_eq!(table.len(), 4, "{table:?}");
}

fn probes_id(probes: &[Probe], label: &str) -> String {
    probes
        .iter()
        .find(|p| p.proc.label() == label)
        .map(|p| p.id.clone())
        .unwrap()
}

fn two_simple_dhts_find_each_others_values_through_the_node(backend: &str) {
    let net = TestNet::new();
    let node = node(&net, backend, &[]);
    let addr = node.addr();
    let mut a = Probe::spawn(&net, "dht-a");
    let mut b = Probe::spawn(&net, "dht-b");
    let node_id = a.ping(&addr);
    assert_eq!(b.ping(&addr), node_id);
    // As py-setowire announces itself: a JSON string under topic:{th}:{id40}.
    let th = topic_hash(b"chat");
    let key_a = format!("topic:{th}:{}", "a".repeat(40));
    let value_a = r#"{"id": "aaaa", "ip": "127.0.0.1", "port": 1111, "nat": "unknown"}"#;
    let key_b = format!("relay:{th}:{}", "b".repeat(40));
    let value_b = r#"{"id": "bbbb", "ip": "127.0.0.1", "port": 2222}"#;
    a.put(&key_a, json!(value_a));
    b.put(&key_b, json!(value_b));
    // Each knows only the node, so the node is where each finds the other's value.
    assert_eq!(a.table(), vec![node_id.clone()]);
    assert_eq!(b.table(), vec![node_id]);
    assert_eq!(b.find_value(&key_a), json!(value_a));
    assert_eq!(a.find_value(&key_b), json!(value_b));
    // Any JSON value round-trips, as SimpleDHT stores whatever it is given.
    a.put("structured", json!({"n": [1, 2.5, "x"], "ok": true}));
    assert_eq!(
        b.find_value("structured"),
        json!({"n": [1, 2.5, "x"], "ok": true})
    );
}

/// The node's answers have exactly the keys, in the order, that SimpleDHT's have.
#[test]
fn answers_have_the_shapes_of_simple_dht_answers() {
    let net = TestNet::new();
    let node = node(&net, "mmsg", &[]);
    let addr = node.addr();
    let mut reference = Probe::spawn(&net, "reference");
    let mut client = Probe::spawn(&net, "client");
    let reference_addr = format!("127.0.0.1:{}", reference.port);
    client.ping(&addr);
    client.ping(&reference_addr);
    reference.ping(&addr);
    client.put("shape-key", json!("shape-value"));
    let from = client.id.clone();
    // The node adds a sender to its table only once it answered the node's own PING, which
    // may take a moment on a loaded machine: wait (bounded) until it lists someone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while client
        .rpc(&addr, find_node(&from, &"0".repeat(40)))
        .is_none_or(|(reply, _)| reply["nodes"].as_array().is_none_or(Vec::is_empty))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the node never listed a node"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let cases = [
        json!({"type": 1, "from": from}),
        find_node(&from, &"0".repeat(40)),
        find_value(&from, "shape-key"),
        find_value(&from, "absent-key"),
    ];
    for msg in cases {
        let (ours, our_keys) = client.rpc(&addr, msg.clone()).expect("the node answers");
        let (theirs, their_keys) = client
            .rpc(&reference_addr, msg.clone())
            .expect("SimpleDHT answers");
        assert_eq!(our_keys, their_keys, "{msg}: {ours} vs {theirs}");
        assert_eq!(ours["type"], theirs["type"], "{msg}");
        if let Some(nodes) = ours["nodes"].as_array() {
            assert!(!nodes.is_empty(), "{ours}");
            for n in nodes {
                let keys: Vec<&String> = n.as_object().unwrap().keys().collect();
                assert_eq!(keys.len(), 3, "{n}");
                assert!(
                    n["id"].as_str().unwrap().len() == 40 && n["port"].is_u64(),
                    "{n}"
                );
                assert!(n["ip"].is_string(), "{n}");
            }
        }
        if ours["type"] == 7 {
            assert_eq!(ours["value"], theirs["value"]);
        }
    }
}

#[test]
fn unverified_sources_get_at_most_three_times_their_request() {
    let net = TestNet::new();
    let node = node(&net, "mmsg", &[]);
    let addr = node.addr();
    let target: SocketAddr = addr.parse().unwrap();
    // Fill the node's table with real SimpleDHTs; one stores a value.
    let mut probes: Vec<Probe> = (0..8)
        .map(|i| Probe::spawn(&net, &format!("dht#{i}")))
        .collect();
    for p in &mut probes {
        p.ping(&addr);
    }
    probes[0].put("big", json!("v".repeat(900)));
    let attacker_id = "5a".repeat(20);
    net.run_inside(|| {
        // 127.0.0.2: an address nobody has verified (the probes all use 127.0.0.1).
        let raw = Raw::bind("127.0.0.2:0", target, &attacker_id);
        let mut find = find_node(&attacker_id, &"0".repeat(40));
        find["rpcId"] = json!("0badf00d");
        let find = find.to_string();
        let mut big = find_value(&attacker_id, "big");
        big["rpcId"] = json!("0badf00e");
        let big = big.to_string();
        let tiny = r#"{"type":4,"target":"0000000000000000000000000000000000000000"}"#;
        for request in [find.as_str(), big.as_str(), tiny] {
            raw.send(request.as_bytes());
            let got = raw.collect(Duration::from_millis(500));
            let total: usize = got.iter().map(Vec::len).sum();
            assert!(
                total <= 3 * request.len(),
                "{total} bytes for a {}-byte request: {got:?}",
                request.len()
            );
        }
        // The cut-short answer to FIND_NODE still lists some nodes; after answering the
        // node's PING the same request gets them all.
        raw.send(find.as_bytes());
        let got = raw.collect(Duration::from_millis(500));
        let reply: Value = got
            .iter()
            .map(|d| serde_json::from_slice::<Value>(d).unwrap())
            .find(|v| v["type"] == 5)
            .expect("a FOUND_NODE");
        let cut = reply["nodes"].as_array().unwrap().len();
        assert!((1..8).contains(&cut), "{reply}");
        raw.prove();
        raw.send(find.as_bytes());
        let got = raw.collect(Duration::from_millis(500));
        let reply: Value = serde_json::from_slice(&got[0]).unwrap();
        assert_eq!(reply["nodes"].as_array().unwrap().len(), 8, "{reply}");
        raw.send(big.as_bytes());
        let got = raw.collect(Duration::from_millis(500));
        let reply: Value = serde_json::from_slice(&got[0]).unwrap();
        assert_eq!(reply["type"], 7, "{reply}");
    });
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn garbage_and_floods_leave_the_node_serving_within_its_caps() {
    let net = TestNet::new();
    let mut node = node(
        &net,
        "mmsg",
        &[
            "--unauth-rate-per-ip",
            "1000000",
            "--unauth-burst-per-ip",
            "1000000",
            "--dht-max-values-bytes",
            "100000",
        ],
    );
    let addr = node.addr();
    let target: SocketAddr = addr.parse().unwrap();
    let rss_before = vm_rss_kib(node.pid());
    let id = "77".repeat(20);
    let stored = net.run_inside(|| {
        let raw = Raw::bind("127.0.0.3:0", target, &id);
        let garbage: Vec<Vec<u8>> = vec![
            b"{".to_vec(),
            b"{}".to_vec(),
            b"{\"type\": 1, \"from\": 42}".to_vec(),
            b"{\"type\": \"PING\"}".to_vec(),
            b"{\"type\": 4, \"target\": \"nothex\"}".to_vec(),
            b"{\"type\": 3, \"key\": [1,2,3], \"value\": null}".to_vec(),
            format!("{{\"a\": {}{}}}", "[".repeat(1500), "]".repeat(1500)).into_bytes(),
            format!("{{\"type\": 1, \"rpcId\": \"{}\"}}", "x".repeat(1900)).into_bytes(),
            vec![b'{'; 1999],
            vec![b'{'; 4000],
        ];
        for round in 0..2000 {
            raw.send(&garbage[round % garbage.len()]);
        }
        // A STORE flood with distinct keys from a verified address.
        raw.prove();
        let value = "x".repeat(1000);
        for i in 0..3000 {
            let key = NodeId::of_key(&format!("flood {i}")).to_hex();
            let store = json!({"type": 3, "from": id, "key": key, "value": value});
            raw.send(store.to_string().as_bytes());
            if i % 200 == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        raw.collect(Duration::from_millis(100));
        // How many of the first 400 keys the node kept.
        let mut found = 0;
        for i in 0..400 {
            let mut find = find_value(&id, &format!("flood {i}"));
            find["rpcId"] = json!(format!("{i:08x}"));
            raw.send(find.to_string().as_bytes());
            let got = raw.collect(Duration::from_millis(5));
            found += got
                .iter()
                .filter(|d| serde_json::from_slice::<Value>(d).unwrap()["type"] == 7)
                .count();
        }
        found += raw
            .collect(Duration::from_millis(200))
            .iter()
            .filter(|d| serde_json::from_slice::<Value>(d).unwrap()["type"] == 7)
            .count();
        found
    });
    // 100000 bytes at 1000 + 96 per value.
    assert!((1..=91).contains(&stored), "{stored} values kept");
    let rss_after = vm_rss_kib(node.pid());
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Still serving DHT clients and Setowire peers.
    let mut probe = Probe::spawn(&net, "after");
    probe.ping(&addr);
    assert!(node.try_status().is_none(), "the node exited");
    node.peers();
}

#[test]
fn stored_values_expire_after_the_ttl() {
    let net = TestNet::new();
    let node = node(&net, "mmsg", &["--dht-value-ttl-secs", "2"]);
    let addr = node.addr();
    let mut a = Probe::spawn(&net, "dht-a");
    let mut b = Probe::spawn(&net, "dht-b");
    a.ping(&addr);
    b.ping(&addr);
    a.put("short-lived", json!("soon gone"));
    let (reply, _) = b
        .rpc(&addr, find_value(&b.id.clone(), "short-lived"))
        .unwrap();
    assert_eq!(reply["value"], "soon gone");
    std::thread::sleep(Duration::from_millis(2500));
    let (reply, _) = b
        .rpc(&addr, find_value(&b.id.clone(), "short-lived"))
        .unwrap();
    assert_eq!(reply["type"], 5, "expired values are not served: {reply}");
}

/// Polls FIND_VALUE for `key` at `addr` until a value comes back.
fn wait_value(probe: &mut Probe, addr: &str, key: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    let from = probe.id.clone();
    loop {
        if let Some((reply, _)) = probe.rpc(addr, find_value(&from, key)) {
            if reply["type"] == 7 {
                return reply["value"].clone();
            }
        }
        assert!(Instant::now() < deadline, "{key} never showed up at {addr}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn nodes_federate_and_announce_their_topics() {
    let net = TestNet::new();
    let a = node(&net, "mmsg", &["--topic", "aa01"]);
    let a_addr = a.addr();
    let b = node(&net, "mmsg", &["--topic", "bb02", "--bootstrap", &a_addr]);
    let b_addr = b.addr();
    let mut probe = Probe::spawn(&net, "dht");
    probe.ping(&a_addr);
    probe.ping(&b_addr);
    // b joined through a and stored its keys there; a stored its own at b once it knew b.
    for (holder, owner, topic) in [(&a_addr, &b, &[0xbb, 0x02]), (&b_addr, &a, &[0xaa, 0x01])] {
        let th = topic_hash(topic);
        let me = wait_value(&mut probe, holder, &format!("topic:{th}:{}", owner.id40));
        let me: Value = serde_json::from_str(me.as_str().unwrap()).unwrap();
        assert_eq!(me["id"], owner.id40.as_str());
        assert_eq!(
            (me["ip"].as_str(), me["port"].as_u64()),
            (Some("127.0.0.1"), Some(u64::from(owner.port)))
        );
        assert_eq!(me["lport"].as_u64(), Some(u64::from(owner.port)));
        let relay = wait_value(&mut probe, holder, &format!("relay:{th}:{}", owner.id40));
        let relay: Value = serde_json::from_str(relay.as_str().unwrap()).unwrap();
        assert_eq!(relay["port"].as_u64(), Some(u64::from(owner.port)));
    }
    // A SimpleDHT that knows only a finds b's topic record with an ordinary lookup.
    let mut client = Probe::spawn(&net, "client");
    client.ping(&a_addr);
    let th = topic_hash(&[0xbb, 0x02]);
    let found = client.find_value(&format!("topic:{th}:{}", b.id40));
    assert!(found.as_str().unwrap().contains(&b.id40), "{found}");
}

#[test]
fn the_dht_port_serves_the_same_dht() {
    let net = TestNet::new();
    let port = net.run_inside(|| {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let dht_addr = format!("127.0.0.1:{port}");
    let node = node(&net, "mmsg", &["--dht-listen", &dht_addr]);
    let mut a = Probe::spawn(&net, "dht-a");
    let mut b = Probe::spawn(&net, "dht-b");
    let id = a.ping(&dht_addr);
    assert_eq!(b.ping(&node.addr()), id);
    a.put("two doors", json!("one room"));
    assert_eq!(b.find_value("two doors"), json!("one room"));
}
