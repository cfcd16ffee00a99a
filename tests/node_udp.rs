//! The node's UDP face without a session: PING gets PONG over IPv4, IPv6 and a dual-stack
//! socket, traffic from one address without a session is rate-limited, and a node refuses a
//! port another process holds.

#[macro_use]
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use setowire_core::proto::frame::Frame;
use support::net::TestNet;
use support::peer::{node_command, spawn_node_on};
use support::process::LineProcess;

on_both_backends!(
    ping_gets_pong_on_ipv4_ipv6_and_dual_stack,
    unauthenticated_traffic_is_limited_per_source_ip,
);

/// PING: 0x03 ‖ u64 timestamp ‖ 20-byte id.
fn ping() -> Vec<u8> {
    let mut ping = vec![0x03];
    ping.extend(1u64.to_be_bytes());
    ping.extend([0x5a; 20]);
    ping
}

/// Sends `count` PINGs to `to` from `from` and counts the PONGs that come back within `wait`.
fn pongs(net: &TestNet, from: &str, to: SocketAddr, count: usize, wait: Duration) -> usize {
    // The client runs inside the test's namespace, like the node.
    net.run_inside(|| pong_count(from, to, count, wait))
}

fn pong_count(from: &str, to: SocketAddr, count: usize, wait: Duration) -> usize {
    let socket = UdpSocket::bind(from).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    for _ in 0..count {
        socket.send_to(&ping(), to).unwrap();
    }
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    let mut replies = 0;
    while Instant::now() < deadline {
        if let Ok((len, src)) = socket.recv_from(&mut buf) {
            assert_eq!(src.port(), to.port());
            // Replies to one address are coalesced into BATCH datagrams.
            replies += count_pongs(&buf[..len]);
        }
    }
    replies
}

fn count_pongs(datagram: &[u8]) -> usize {
    match Frame::parse(datagram) {
        Ok(Frame::Pong { .. }) => 1,
        Ok(Frame::Batch(entries)) => entries.datagrams().map(count_pongs).sum(),
        _ => 0,
    }
}

fn ping_gets_pong_on_ipv4_ipv6_and_dual_stack(backend: &str) {
    let net = TestNet::new();
    for (listen, client, target_ip) in [
        ("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1"),
        ("[::1]:0", "[::1]:0", "::1"),
        ("[::]:0", "127.0.0.1:0", "127.0.0.1"),
        ("[::]:0", "[::1]:0", "::1"),
    ] {
        let node = spawn_node_on(&net, listen, &["--shards", "2", "--io-backend", backend]);
        let target = SocketAddr::new(target_ip.parse().unwrap(), node.port);
        let got = pongs(&net, client, target, 5, Duration::from_millis(500));
        assert_eq!(got, 5, "node on {listen}, client {client}");
    }
}

fn unauthenticated_traffic_is_limited_per_source_ip(backend: &str) {
    let net = TestNet::new();
    let node = spawn_node_on(
        &net,
        "127.0.0.1:0",
        &[
            "--shards",
            "1",
            "--io-backend",
            backend,
            "--unauth-rate-per-ip",
            "10",
            "--unauth-burst-per-ip",
            "50",
        ],
    );
    let target: SocketAddr = format!("127.0.0.1:{}", node.port).parse().unwrap();
    let got = pongs(&net, "127.0.0.1:0", target, 500, Duration::from_millis(500));
    // The burst, plus what the rate refills while the test runs (well under a second).
    assert!((50..=70).contains(&got), "{got} PONGs for 500 PINGs");
    // Another source address has its own allowance.
    let other = pongs(&net, "127.0.0.2:0", target, 20, Duration::from_millis(300));
    assert_eq!(other, 20);
}

/// A loopback port free when asked, for a test that needs a fixed one.
fn free_port(net: &TestNet) -> u16 {
    net.run_inside(|| {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    })
}

/// Starts a node on `listen` and expects it to refuse at once, naming the address.
fn assert_refused(net: &TestNet, listen: &str) {
    let cmd = node_command(net, listen, &["--shards", "2"]);
    let mut node = LineProcess::spawn_command("refused node", cmd);
    let status = node.wait_exit(Duration::from_secs(5));
    let stderr = node.stderr_text();
    assert!(!status.success(), "{status:?}\n{stderr}");
    assert!(
        stderr.contains(&format!("UDP {listen} is held by another process")),
        "{stderr}"
    );
}

#[test]
fn a_second_node_on_the_same_port_refuses_and_the_first_keeps_serving() {
    let net = TestNet::new();
    let listen = format!("127.0.0.1:{}", free_port(&net));
    // Its two shards share the port between them.
    let node = spawn_node_on(&net, &listen, &["--shards", "2"]);
    assert_refused(&net, &listen);
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), node.port);
    assert_eq!(
        pongs(&net, "127.0.0.1:0", target, 5, Duration::from_millis(500)),
        5
    );
}

#[test]
fn a_port_held_by_a_plain_socket_is_refused() {
    let net = TestNet::new();
    let holder = net.run_inside(|| UdpSocket::bind("127.0.0.1:0").unwrap());
    let listen = holder.local_addr().unwrap().to_string();
    assert_refused(&net, &listen);
}

#[test]
fn sighup_reads_the_configuration_and_the_node_keeps_serving() {
    let net = TestNet::new();
    let mut node = spawn_node_on(&net, "127.0.0.1:0", &[]);
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, libc::SIGHUP) }, 0);
    let target = SocketAddr::new("127.0.0.1".parse().unwrap(), node.port);
    assert_eq!(
        pongs(&net, "127.0.0.1:0", target, 5, Duration::from_millis(500)),
        5
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node
        .stderr_text()
        .contains("SIGHUP: configuration read again")
    {
        assert!(
            Instant::now() < deadline,
            "no SIGHUP line: {}",
            node.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, libc::SIGTERM) }, 0);
    assert!(node.wait_exit(Duration::from_secs(5)).success());
}
