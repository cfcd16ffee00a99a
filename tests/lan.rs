//! LAN multicast discovery (239.0.0.1:45678) between the node and py-setowire 0.1.0, only
//! ever inside a network namespace the test creates: its loopback is made multicast-capable
//! and routes 224.0.0.0/4, so announcements never leave it.

#[macro_use]
mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use setowire_core::dht::id::topic_hash;
use socket2::{Domain, Protocol, Socket, Type};
use support::is_event;
use support::net::TestNet;
use support::peer::{spawn_node, PyPeer};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 0, 0, 1);
const PORT: u16 = 45678;

/// A namespace where multicast works on loopback, or `None` without one (not root, or
/// SETOWIRE_TEST_NETNS=off): multicast is never sent on the host.
fn lan_net() -> Option<TestNet> {
    let net = TestNet::new();
    if !net.is_isolated() {
        eprintln!("LAN tests need a network namespace of their own (root); not run here");
        return None;
    }
    net.run(&["ip", "link", "set", "lo", "multicast", "on"])
        .unwrap();
    net.run(&["ip", "route", "add", "224.0.0.0/4", "dev", "lo"])
        .unwrap();
    Some(net)
}

/// A member of the group on the LAN port, as py-setowire opens it.
fn member() -> UdpSocket {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT).into())
        .unwrap();
    socket
        .join_multicast_v4(&GROUP, &Ipv4Addr::UNSPECIFIED)
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket.into()
}

fn announce(net: &TestNet, text: &str, times: usize) {
    let mut datagram = vec![0x09];
    datagram.extend(text.as_bytes());
    net.run_inside(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..times {
            socket
                .send_to(&datagram, SocketAddr::from((GROUP, PORT)))
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[test]
fn the_node_and_a_py_setowire_peer_find_each_other() {
    let Some(net) = lan_net() else { return };
    let mut py = PyPeer::spawn(&net, &["--lan"]).into_inner();
    let mut node = spawn_node(&net, &["--lan", "--shards", "2"]);
    node.wait_connection(&py.id8);
    py.wait_connection(&node.id8);
}

#[test]
fn the_node_dials_announcers_of_its_topics_only() {
    let Some(net) = lan_net() else { return };
    // A peer without LAN discovery of its own: only the node's dial can connect them.
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    let mut node = spawn_node(&net, &["--lan", "--topic", "0102"]);
    let other_topic = format!("{}:127.0.0.1:{}:{}", py.id40, py.port, topic_hash(&[9]));
    announce(&net, &other_topic, 3);
    node.assert_no_event(Duration::from_secs(2), |e| is_event(e, "connection"));
    let same_topic = format!("{}:127.0.0.1:{}:{}", py.id40, py.port, topic_hash(&[1, 2]));
    announce(&net, &same_topic, 2);
    node.wait_connection(&py.id8);
    py.wait_connection(&node.id8);
}

#[test]
fn the_node_announces_each_topic_every_five_seconds() {
    let Some(net) = lan_net() else { return };
    let node = spawn_node(&net, &["--lan", "--topic", "0102", "--topic", "aa"]);
    let want: Vec<String> = [topic_hash(&[1, 2]), topic_hash(&[0xaa])]
        .iter()
        .map(|th| format!("{}:127.0.0.1:{}:{th}", node.id40, node.port))
        .collect();
    let heard = net.run_inside(|| {
        let socket = member();
        let mut heard: Vec<(Instant, String)> = Vec::new();
        let deadline = Instant::now() + Duration::from_millis(11_500);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                if buf[0] == 0x09 {
                    heard.push((Instant::now(), String::from_utf8_lossy(&buf[1..n]).into()));
                }
            }
        }
        heard
    });
    for text in &want {
        let times: Vec<Instant> = heard
            .iter()
            .filter(|(_, t)| t == text)
            .map(|(at, _)| *at)
            .collect();
        assert!(
            times.len() >= 2,
            "{text} heard {} times in {heard:?}",
            times.len()
        );
        let gap = times[1] - times[0];
        assert!(
            gap > Duration::from_secs(4) && gap < Duration::from_secs(6),
            "{gap:?}"
        );
    }
    assert!(heard.iter().all(|(_, t)| want.contains(t)), "{heard:?}");
}
