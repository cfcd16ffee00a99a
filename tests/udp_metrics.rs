//! What the node's UDP path does wrong, as its metrics tell, over real loopback sockets on
//! both I/O backends: datagrams longer than the receive buffers are dropped unread and
//! counted, and datagrams the kernel refuses to send are counted by kind.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use admin::prom::{sum, Sample};
use admin::{node_with_admin, scrape};
use setowire_core::proto::frame::Frame;
use support::net::TestNet;

on_both_backends!(
    oversized_datagrams_are_dropped_unread_and_counted,
    refused_sends_are_counted_by_kind,
);

/// The node's receive buffers hold this much payload (`MAX_DATAGRAM` in src/io).
const RECEIVE_BUFFER: usize = 2048;
/// The longest UDP payload IPv4 carries.
const LARGEST_DATAGRAM: usize = 65_507;

/// A PING frame, `len` bytes long: padded past its own length when `len` asks for it.
fn ping(len: usize) -> Vec<u8> {
    let frame = Frame::Ping {
        timestamp_ms: 1,
        id: [0x5a; 20],
    };
    let mut out = vec![0u8; len.max(frame.encoded_len())];
    frame.encode(&mut out).unwrap();
    out
}

/// Scrapes until `done` holds for the samples, or fails after 10 s showing the last ones.
fn scrape_until(
    net: &TestNet,
    admin: &str,
    what: &str,
    done: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let samples = scrape(net, admin);
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never showed: {samples:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn oversized_datagrams_are_dropped_unread_and_counted(backend: &str) {
    let net = TestNet::new();
    let (node, admin) = node_with_admin(&net, &["--shards", "1", "--io-backend", backend]);
    let target = SocketAddr::from(([127, 0, 0, 1], node.port));
    // PINGs one byte too long for the buffers and as long as a datagram gets, then a
    // real one: only the last may be answered, and only it may count as a frame.
    let replies = net.run_inside(|| {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        for len in [RECEIVE_BUFFER + 1, LARGEST_DATAGRAM, 0] {
            socket.send_to(&ping(len), target).unwrap();
        }
        let mut replies = 0;
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok((_, from)) = socket.recv_from(&mut buf) {
                assert_eq!(from, target);
                replies += 1;
            }
        }
        replies
    });
    assert_eq!(replies, 1, "{backend}: one PONG, for the PING that fit");
    let samples = scrape_until(&net, &admin, "the truncated datagrams", |s| {
        sum(s, "setowire_udp_truncated_datagrams_total", &[]) >= 2.0
    });
    let on_shard = [("shard", "0")];
    assert_eq!(
        sum(
            &samples,
            "setowire_udp_truncated_datagrams_total",
            &on_shard
        ),
        2.0,
        "{backend}"
    );
    assert_eq!(
        sum(&samples, "setowire_io_backend", &[("backend", backend)]),
        1.0
    );
    let pings = [("shard", "0"), ("type", "ping")];
    assert_eq!(
        sum(&samples, "setowire_frames_received_total", &pings),
        1.0,
        "{backend}: the cut datagrams were not parsed"
    );
    assert_eq!(sum(&samples, "setowire_drops_total", &[]), 0.0, "{backend}");
    assert_eq!(
        sum(&samples, "setowire_udp_receive_errors_total", &[]),
        0.0,
        "{backend}"
    );
}

fn refused_sends_are_counted_by_kind(backend: &str) {
    let net = TestNet::new();
    let (mut node, admin) = node_with_admin(&net, &["--shards", "1", "--io-backend", backend]);
    // Dialling sends HELLOs. The kernel refuses the loopback broadcast address to a socket
    // without SO_BROADCAST (EACCES), and an IPv4 socket cannot reach an IPv6 address.
    node.dial("127.255.255.255:9");
    node.dial("[::1]:9");
    let kind = |k: &'static str| [("shard", "0"), ("kind", k)];
    let samples = scrape_until(&net, &admin, "the refused HELLOs", |s| {
        sum(s, "setowire_udp_send_errors_total", &kind("denied")) >= 1.0
            && sum(s, "setowire_udp_send_errors_total", &kind("unreachable")) >= 1.0
    });
    for other in ["would_block", "too_large", "other"] {
        assert_eq!(
            sum(&samples, "setowire_udp_send_errors_total", &kind(other)),
            0.0,
            "{backend}: {other}"
        );
    }
}
