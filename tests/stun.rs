//! STUN on the node's UDP port, checked with real clients: aioice's STUN client (Debian's
//! `python3-aioice`, run by the system Python) over IPv4 and IPv6, and py-setowire 0.1.0's
//! own response parser; plus the per-IP rate limit and malformed requests.

#[macro_use]
mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::net::TestNet;
use support::peer::spawn_node_on;
use support::venv;

on_both_backends!(a_stun_client_learns_its_address_over_ipv4_and_ipv6);

/// The interpreter that has Debian's python3-aioice (`.ci/run` installs it).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/stun_check.py")
}

/// Runs the checker inside `net`; returns its JSON lines.
#[track_caller]
fn check(net: &TestNet, python: &std::path::Path, args: &[&str]) -> Vec<Value> {
    let mut cmd: Command = net.command(python);
    cmd.arg("-I").arg(script()).args(args);
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn a_stun_client_learns_its_address_over_ipv4_and_ipv6(backend: &str) {
    let net = TestNet::new();
    for (listen, client_ip) in [
        ("127.0.0.1:0", "127.0.0.1"),
        ("[::1]:0", "::1"),
        ("[::]:0", "127.0.0.1"),
        ("[::]:0", "::1"),
    ] {
        let node = spawn_node_on(&net, listen, &["--shards", "2", "--io-backend", backend]);
        let port = node.port.to_string();
        let lines = check(
            &net,
            SYSTEM_PYTHON.as_ref(),
            &["aioice", client_ip, &port, client_ip],
        );
        assert_eq!(lines.len(), 2, "{lines:?}");
        for (line, fingerprint) in lines.iter().zip([false, true]) {
            assert_eq!(line["class"], "RESPONSE", "{line}");
            assert_eq!(line["same_transaction"], true, "{line}");
            assert_eq!(line["fingerprint"], fingerprint, "{line}");
            // The reflexive address is the client's own: there is no NAT on loopback.
            assert_eq!(line["ip"], line["local"][0], "node on {listen}: {line}");
            assert_eq!(line["port"], line["local"][1], "node on {listen}: {line}");
        }
    }
}

#[test]
fn py_setowire_reads_the_nodes_binding_response() {
    let net = TestNet::new();
    let node = spawn_node_on(&net, "127.0.0.1:0", &["--shards", "1"]);
    let port = node.port.to_string();
    let lines = check(&net, &venv::python(), &["setowire", "127.0.0.1", &port]);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert!(line.get("error").is_none(), "{line}");
    assert_eq!(line["ip"], "127.0.0.1", "{line}");
    assert_eq!(line["port"], line["local"][1], "{line}");
}

fn binding_request(tx: u32) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    m.extend([0u8; 8]);
    m.extend(tx.to_be_bytes());
    m
}

/// Sends `requests` from `from` and counts the datagrams that come back within `wait`.
fn answers(from: &str, to: SocketAddr, requests: &[Vec<u8>], wait: Duration) -> Vec<Vec<u8>> {
    let socket = UdpSocket::bind(from).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    for r in requests {
        socket.send_to(r, to).unwrap();
    }
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

#[test]
fn stun_is_rate_limited_per_source_ip_and_malformed_requests_get_nothing() {
    let net = TestNet::new();
    let node = spawn_node_on(
        &net,
        "127.0.0.1:0",
        &[
            "--shards",
            "1",
            "--unauth-rate-per-ip",
            "10",
            "--unauth-burst-per-ip",
            "50",
        ],
    );
    let to: SocketAddr = format!("127.0.0.1:{}", node.port).parse().unwrap();
    net.run_inside(|| {
        let flood: Vec<Vec<u8>> = (0..500).map(binding_request).collect();
        let got = answers("127.0.0.1:0", to, &flood, Duration::from_millis(500));
        assert!(
            (50..=70).contains(&got.len()),
            "{} answers to 500",
            got.len()
        );
        assert!(got.iter().all(|r| r[..2] == [0x01, 0x01]));

        let mut bad_length = binding_request(1);
        bad_length[3] = 4;
        let mut response = binding_request(2);
        response[1] = 0x01;
        response[0] = 0x01;
        let mut overrun = binding_request(3);
        overrun[3] = 8;
        overrun.extend([0x80, 0x22, 0x00, 0xFF, 0, 0, 0, 0]);
        let malformed = vec![
            bad_length,
            response,
            overrun,
            binding_request(4)[..19].to_vec(),
        ];
        let got = answers("127.0.0.2:0", to, &malformed, Duration::from_millis(300));
        assert!(got.is_empty(), "{got:?}");
        // The same source still gets answers to a good request.
        let got = answers(
            "127.0.0.2:0",
            to,
            &[binding_request(5)],
            Duration::from_millis(300),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0][16..20], 5u32.to_be_bytes());
    });
}
