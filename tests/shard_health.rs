//! A shard whose loop stops running: the debug build stalls one when `SETOWIRE_TEST_FAULT`
//! asks (`shard-stall:<shard>:<after_ms>:<for_ms>`). `/readyz` and the metrics must name the
//! stalled shard while the node goes on, until the loop runs again; and cross-shard messages
//! for the stalled shard, which its full inbox cannot take, are dropped and counted.

mod admin;
mod http_client;
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use admin::prom::{sum, Sample};
use admin::{get, scrape};
use setowire_core::proto::frame::Frame;
use setowire_node::node::inboxes::INBOX_CAPACITY;
use support::net::TestNet;
use support::peer::{node_command, spawn_node_command, spawn_node_on, ControlPeer};
use support::TIMEOUT;

const FAULT: &str = "SETOWIRE_TEST_FAULT";
const STALLED: &str = "shards stalled (loop stuck for 2s or more): [1]";

/// A two-shard node whose shard 1 stalls `after_ms` after the start, for `for_ms`.
fn node_stalling_shard_1(
    net: &TestNet,
    after_ms: u64,
    for_ms: u64,
    args: &[&str],
) -> (ControlPeer, String) {
    let mut cmd: Command = node_command(net, "127.0.0.1:0", &[&["--shards", "2"], args].concat());
    cmd.env(FAULT, format!("shard-stall:1:{after_ms}:{for_ms}"));
    let mut node = spawn_node_command(cmd);
    let port = node.ready_port("admin_port");
    (node, format!("http://127.0.0.1:{port}"))
}

/// Asks `/readyz` every 50 ms until it answers `status` with a body containing `body`;
/// fails after `TIMEOUT`.
fn wait_readyz(net: &TestNet, admin: &str, status: u16, body: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reply = get(net, &format!("{admin}/readyz"), None);
        if reply.status == status && reply.text().contains(body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} {body:?}; last {} {}",
            reply.status,
            reply.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn on(shard: &str) -> [(&str, &str); 1] {
    [("shard", shard)]
}

#[test]
fn a_stalled_shard_is_reported_until_its_loop_runs_again() {
    let net = TestNet::new();
    let (mut node, admin) = node_stalling_shard_1(&net, 1500, 4000, &[]);
    wait_readyz(&net, &admin, 503, STALLED);
    let samples = scrape(&net, &admin);
    assert_eq!(sum(&samples, "setowire_shard_stalled", &on("1")), 1.0);
    assert_eq!(sum(&samples, "setowire_shard_stalled", &on("0")), 0.0);
    let age = |s: &[Sample], shard| sum(s, "setowire_shard_heartbeat_age_seconds", &on(shard));
    assert!(age(&samples, "1") >= 2.0, "{samples:?}");
    assert!(age(&samples, "0") < 2.0, "{samples:?}");
    let turns = |s: &[Sample], shard| sum(s, "setowire_shard_loop_iterations_total", &on(shard));
    let stalled_at = turns(&samples, "1");
    assert!(stalled_at >= 1.0, "shard 1 ran before it stalled");
    // A stall is not a failure: the node goes on, and is ready again once the loop runs.
    assert!(node.proc.try_status().is_none(), "{}", node.proc.report());
    wait_readyz(&net, &admin, 200, "ready");
    let samples = scrape(&net, &admin);
    assert_eq!(sum(&samples, "setowire_shard_stalled", &[]), 0.0);
    assert!(age(&samples, "1") < 2.0, "{samples:?}");
    assert!(turns(&samples, "1") > stalled_at, "{samples:?}");
}

/// A local port whose datagrams to `node` reach the shard that is not stalled: only it
/// answers a PING. The port is free again when this returns.
fn port_served_while_stalled(net: &TestNet, node: SocketAddr) -> u16 {
    let mut ping = [0u8; 64];
    let frame = Frame::Ping {
        timestamp_ms: 1,
        id: [0x5a; 20],
    };
    let len = frame.encode(&mut ping).unwrap();
    net.run_inside(|| {
        // Each port reaches either shard; 64 misses in a row would take odds of 2^-64.
        for _ in 0..64 {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            socket.send_to(&ping[..len], node).unwrap();
            let mut buf = [0u8; 2048];
            if socket.recv_from(&mut buf).is_ok() {
                return socket.local_addr().unwrap().port();
            }
        }
        panic!("no port reached the running shard");
    })
}

#[test]
fn messages_for_a_stalled_shard_are_dropped_and_counted() {
    let net = TestNet::new();
    let (mut node, admin) = node_stalling_shard_1(
        &net,
        1000,
        180_000,
        &["--session-rate", "1000000", "--session-burst", "1000000"],
    );
    wait_readyz(&net, &admin, 503, STALLED);
    // A peer whose session lives on the running shard 0: each message it sends is flooded
    // to shard 1 through its inbox.
    let port = port_served_while_stalled(&net, SocketAddr::from(([127, 0, 0, 1], node.port)));
    let mut peer = spawn_node_on(&net, &format!("127.0.0.1:{port}"), &["--shards", "1"]);
    peer.dial_peer(&node);
    peer.wait_connection(&node.id8);
    node.wait_connection(&peer.id8);

    let delivered = |s: &[Sample]| sum(s, "setowire_data_delivered_total", &on("0"));
    let want = (INBOX_CAPACITY + 500) as f64;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut sent = 0u64;
    // Bounded by the count and the deadline. Sent in rounds that wait for the node to keep
    // up, so that its socket buffer does not overflow.
    loop {
        let samples = scrape(&net, &admin);
        let got = delivered(&samples);
        if got >= want {
            break;
        }
        assert!(
            Instant::now() < deadline && sent < 2 * INBOX_CAPACITY as u64,
            "{got} of {sent} messages delivered"
        );
        if sent as f64 - got < 2000.0 {
            for _ in 0..2000 {
                peer.broadcast(format!("message {sent}").as_bytes());
                sent += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The shard publishes every 100 ms, the inboxes count at once: wait until both agree.
    let deadline = Instant::now() + Duration::from_secs(10);
    let drops = |s: &[Sample], shard| sum(s, "setowire_shard_inbox_drops_total", &on(shard));
    let samples = loop {
        let first = scrape(&net, &admin);
        std::thread::sleep(Duration::from_millis(300));
        let second = scrape(&net, &admin);
        let settled =
            delivered(&first) == delivered(&second) && drops(&first, "1") == drops(&second, "1");
        if settled || Instant::now() >= deadline {
            break second;
        }
    };
    // Every message delivered on shard 0 went to shard 1's inbox, which took the first
    // INBOX_CAPACITY and dropped the rest.
    assert_eq!(
        drops(&samples, "1"),
        delivered(&samples) - INBOX_CAPACITY as f64,
        "{samples:?}"
    );
    assert_eq!(drops(&samples, "0"), 0.0);
    assert_eq!(sum(&samples, "setowire_shard_stalled", &on("1")), 1.0);
}
