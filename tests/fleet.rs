//! A fleet of nodes acts as one swarm: nodes given each other as `bootstrap` share their
//! peers, so that real py-setowire 0.1.0 peers that each know one node meet directly and keep
//! talking when that node stops, and the DHT federates across the fleet. Nodes start in any
//! order (a bootstrap node that is down is dialled until it is up) and a bootstrap node that
//! restarts, with a new identity or with its kept one, is joined again. Real node processes
//! and real peers on the loopback of a namespace each test makes; the figures are printed on
//! lines starting with `fleet |`.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use admin::prom::sum;
use admin::scrape;
use serde_json::{json, Value};
use support::net::TestNet;
use support::peer::{spawn_node_on, ControlPeer, PyPeer};
use support::process::LineProcess;
use support::{is_event, pattern_bytes, venv, TIMEOUT};

/// The bound: peers of two nodes meet within this after the second joins.
const MEET_WITHIN: Duration = Duration::from_secs(5);
/// A node whose bootstrap node was down joins it within this after it is up: the retry
/// after the first unanswered ones comes at most ~9 s after the start (1 + 2 + 4 s, each
/// ±25 %), and the node under test came up ~3 s after the start.
const JOIN_WITHIN: Duration = Duration::from_secs(10);

/// Two distinct UDP ports free in `net` now, for nodes to take (again) later.
fn free_ports(net: &TestNet) -> (u16, u16) {
    net.run_inside(|| {
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
        let (a, b) = (bind(), bind());
        let port = |s: &UdpSocket| s.local_addr().unwrap().port();
        (port(&a), port(&b))
    })
}

/// Waits (bounded) until a killed node's port is free: its io_uring gives its sockets back a
/// moment after the process is gone.
fn wait_port_free(net: &TestNet, port: u16) {
    let deadline = Instant::now() + TIMEOUT;
    while net.run_inside(|| UdpSocket::bind(at(port)).is_err()) {
        assert!(Instant::now() < deadline, "port {port} never came free");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn at(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A node of the fleet on `port`, with `extra` flags (`--bootstrap`, `--state-dir`).
fn fleet_node(net: &TestNet, port: u16, extra: &[&str]) -> ControlPeer {
    let mut args = vec!["--shards", "2"];
    args.extend_from_slice(extra);
    spawn_node_on(net, &at(port), &args)
}

/// A py-setowire peer that knows only `node`.
fn peer_of(net: &TestNet, node: &ControlPeer) -> PyPeer {
    let mut peer = PyPeer::spawn(net, &[]);
    peer.dial_peer(node);
    peer.wait_connection(&node.id8);
    peer
}

/// Waits until `a` and `b` report a session with each other; how long that took.
#[track_caller]
fn meet(a: &mut ControlPeer, b: &mut ControlPeer, since: Instant) -> Duration {
    a.wait_connection(&b.id8);
    let met = since.elapsed();
    b.wait_connection(&a.id8);
    met
}

/// `a` and `b` send each other a distinct payload `rounds` times; each must arrive.
#[track_caller]
fn exchange(a: &mut ControlPeer, b: &mut ControlPeer, seed: u64, rounds: u64) {
    for round in 0..rounds {
        let to_b = pattern_bytes(seed + 2 * round, 64);
        let to_a = pattern_bytes(seed + 2 * round + 1, 64);
        let (a_id, b_id) = (a.id8.clone(), b.id8.clone());
        a.send_to(&b_id, &to_b);
        b.send_to(&a_id, &to_a);
        b.wait_data_eq(&a_id, &to_b);
        a.wait_data_eq(&b_id, &to_a);
    }
}

/// A real py-setowire `SimpleDHT` (`tests/interop/dht_probe.py`) that knows one node.
struct DhtClient(LineProcess);

impl DhtClient {
    #[track_caller]
    fn of(net: &TestNet, label: &str, node: &ControlPeer) -> DhtClient {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/dht_probe.py");
        let mut cmd = net.command(venv::python());
        cmd.arg("-I").arg("-u").arg(script);
        let mut client = DhtClient(LineProcess::spawn_command(label, cmd));
        client.0.wait_event(TIMEOUT, |e| is_event(e, "ready"));
        client.call(json!({"cmd": "ping", "addr": node.addr()}), "pong");
        client
    }

    #[track_caller]
    fn call(&mut self, cmd: Value, event: &str) -> Value {
        self.0.send(&cmd);
        let ev = self
            .0
            .wait_event(TIMEOUT, |e| is_event(e, event) || is_event(e, "error"));
        assert!(is_event(&ev, event), "{cmd} failed: {ev}");
        ev
    }
}

/// Two nodes bootstrapped to each other; a peer that knows only A and one that knows only
/// B meet directly, keep talking once A stops, and a DHT value stored through A is found
/// through B.
#[test]
fn peers_of_two_nodes_meet_and_outlive_either() {
    let net = TestNet::new();
    let (port_a, port_b) = free_ports(&net);
    // A starts first, while B is down: whichever dial is answered first joins them.
    let mut a = fleet_node(&net, port_a, &["--bootstrap", &at(port_b)]);
    let started = Instant::now();
    let mut b = fleet_node(&net, port_b, &["--bootstrap", &at(port_a)]);
    let joined = meet(&mut a, &mut b, started);
    println!("fleet | nodes given each other as bootstrap joined in {joined:?}");

    let mut p1 = peer_of(&net, &a);
    let since = Instant::now();
    let mut p2 = peer_of(&net, &b);
    let met = meet(&mut p2, &mut p1, since);
    println!("fleet | a peer of A and a peer of B met directly {met:?} after the second joined");
    assert!(met < MEET_WITHIN, "met after {met:?}");

    let mut put = DhtClient::of(&net, "dht-a", &a);
    put.call(
        json!({"cmd": "put", "key": "fleet-key", "value": "one swarm"}),
        "stored",
    );
    let mut find = DhtClient::of(&net, "dht-b", &b);
    let found = find.call(json!({"cmd": "find_value", "key": "fleet-key"}), "value");
    assert_eq!(found["value"], json!("one swarm"), "{found}");

    assert!(a.quit().success());
    let stopped = Instant::now();
    // Past the grace in which a peer could still have been taking A's GOAWAY back.
    std::thread::sleep(Duration::from_secs(4));
    exchange(&mut p1, &mut p2, 100, 5);
    println!(
        "fleet | after A stopped the peers kept exchanging data ({:?} on)",
        stopped.elapsed()
    );
}

/// B starts with `bootstrap = A` while A is down; A starts 3 s later. B joins A, and their
/// peers meet.
#[test]
fn a_node_joins_a_bootstrap_node_that_starts_later() {
    let net = TestNet::new();
    let (port_a, port_b) = free_ports(&net);
    let mut b = fleet_node(&net, port_b, &["--bootstrap", &at(port_a)]);
    let admin_b = format!("http://127.0.0.1:{}", b.ready_port("admin_port"));
    let mut p1 = peer_of(&net, &b);
    std::thread::sleep(Duration::from_secs(3));
    let down = scrape(&net, &admin_b);
    assert_eq!(sum(&down, "setowire_bootstrap_nodes", &[]), 1.0);
    assert_eq!(sum(&down, "setowire_bootstrap_nodes_connected", &[]), 0.0);
    // At start, then about a second later.
    let dials_while_down = sum(&down, "setowire_bootstrap_dials_total", &[]);
    assert!(dials_while_down >= 2.0, "{dials_while_down} dials");
    let mut a = fleet_node(&net, port_a, &[]);
    let up = Instant::now();
    let joined = meet(&mut b, &mut a, up);
    println!(
        "fleet | a node started 3 s before its bootstrap node joined it {joined:?} after it was up"
    );
    assert!(joined < JOIN_WITHIN, "joined after {joined:?}");
    // The keeper sees the session within its poll.
    let deadline = Instant::now() + TIMEOUT;
    let dials = loop {
        let samples = scrape(&net, &admin_b);
        if sum(&samples, "setowire_bootstrap_nodes_connected", &[]) == 1.0 {
            break sum(&samples, "setowire_bootstrap_dials_total", &[]);
        }
        assert!(
            Instant::now() < deadline,
            "the bootstrap node never showed as joined"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("fleet | {dials_while_down} dials while the bootstrap node was down, {dials} in all");

    let since = Instant::now();
    let mut p2 = peer_of(&net, &a);
    let met = meet(&mut p2, &mut p1, since);
    println!("fleet | then a peer of A and a peer of B met directly in {met:?}");
    assert!(met < MEET_WITHIN, "met after {met:?}");
    exchange(&mut p1, &mut p2, 200, 2);
}

/// How the seed stops before it starts again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: no GOAWAY, B's session with it only goes silent.
    Kill,
    /// `quit`: GOAWAY to every peer, as at a rolling update.
    Quit,
}

/// What the seed keeps across its restart.
enum Kept {
    /// Nothing: a new identity.
    Nothing,
    /// Its identity (`--seed`), but no memory of its sessions.
    Identity,
    /// Its identity and the peers it had (`--state-dir`).
    State(PathBuf),
}

/// The seed A stops and starts again on its port, keeping what `kept` says: B joins it
/// again, and a new peer of A meets a peer of B directly.
fn a_restarted_seed_is_joined_again(stop: Stop, kept: Kept) {
    let net = TestNet::new();
    let (port_a, port_b) = free_ports(&net);
    let state = match &kept {
        Kept::State(dir) => dir.to_str().unwrap().to_owned(),
        _ => String::new(),
    };
    let seed_flags: Vec<&str> = match &kept {
        Kept::Nothing => Vec::new(),
        Kept::Identity => vec!["--seed", "f1ee70"],
        Kept::State(_) => vec!["--state-dir", &state, "--state-snapshot-interval-secs", "1"],
    };
    let mut a = fleet_node(&net, port_a, &seed_flags);
    let mut b = fleet_node(&net, port_b, &["--bootstrap", &at(port_a)]);
    meet(&mut b, &mut a, Instant::now());
    let mut p2 = peer_of(&net, &b);
    // A snapshot holding B has been written (state directory only).
    std::thread::sleep(Duration::from_secs(2));

    match stop {
        Stop::Kill => a.proc.kill(),
        Stop::Quit => assert!(a.quit().success()),
    }
    wait_port_free(&net, port_a);
    let mut a2 = fleet_node(&net, port_a, &seed_flags);
    let up = Instant::now();
    let what = match (stop, &kept) {
        (Stop::Kill, Kept::State(_)) => "killed and restarted with its state directory",
        (Stop::Kill, Kept::Identity) => "killed and restarted with its identity only",
        (Stop::Kill, Kept::Nothing) => "killed and restarted with a new identity",
        (Stop::Quit, _) => "stopped and started again with a new identity",
    };
    let same_identity = !matches!(kept, Kept::Nothing);
    assert_eq!(a2.id8 == a.id8, same_identity, "{what}");
    // A restarted node reports every session it makes; B reports a new identity only.
    a2.wait_connection(&b.id8);
    if !same_identity {
        b.wait_connection(&a2.id8);
    }
    let rejoined = up.elapsed();
    println!("fleet | a seed {what} was joined again {rejoined:?} after it was up");
    assert!(rejoined < JOIN_WITHIN, "joined after {rejoined:?}");

    let since = Instant::now();
    let mut p1 = peer_of(&net, &a2);
    let met = meet(&mut p1, &mut p2, since);
    println!("fleet | then a new peer of the seed and a peer of B met directly in {met:?}");
    assert!(met < MEET_WITHIN, "met after {met:?}");
    exchange(&mut p1, &mut p2, 300, 2);
}

#[test]
fn a_seed_restarted_with_a_new_identity_is_joined_again() {
    a_restarted_seed_is_joined_again(Stop::Kill, Kept::Nothing);
}

#[test]
fn a_seed_stopped_and_started_again_is_joined_again() {
    a_restarted_seed_is_joined_again(Stop::Quit, Kept::Nothing);
}

#[test]
fn a_seed_restarted_with_its_identity_only_is_joined_again() {
    a_restarted_seed_is_joined_again(Stop::Kill, Kept::Identity);
}

#[test]
fn a_seed_restarted_with_its_state_dir_is_joined_again() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fleet-seed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    a_restarted_seed_is_joined_again(Stop::Kill, Kept::State(dir.join("state")));
    let _ = std::fs::remove_dir_all(&dir);
}
