//! The node's container image on a real Docker engine: `setowire-node:latest` as
//! deploy/docker/build-offline.sh builds it (scripts/test.sh does, before the tests), run on
//! its defaults, serving py-setowire 0.1.0 peers that run in containers of their own, on a
//! bridge network each test creates and removes. Ports are published on 127.0.0.1 only.
//!
//! Needs Docker (Debian's docker.io, its daemon running): without it the tests fail, they
//! are never skipped. Run with `cargo test -p setowire-node --test container -- --nocapture`
//! to see the times measured.

mod prometheus;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::docker::{docker_ok, node_image, Container, ContainerPeer, Network};
use support::peer::{broadcast_reaches, ControlPeer};
use support::process::LineProcess;
use support::venv;
use support::{is_event, TIMEOUT};

/// The node's UDP port in the image (the built-in default).
const UDP_PORT: u16 = 49737;
/// Bound on `docker run` → healthy: the check runs every 2 s.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// A shutdown takes at most two seconds (GOAWAY, the last snapshot); `docker stop` waits
/// longer than that before it kills.
const DRAIN: Duration = Duration::from_secs(2);
const STOP_GRACE_SECS: &str = "10";
/// py-setowire drops a silent peer after 60 s, so a disconnect seen well before that is the
/// node's GOAWAY.
const PY_PEER_TIMEOUT: Duration = Duration::from_secs(60);

/// `docker run -d` of the node's image on `net` with `run_args`; waits until healthy and
/// returns the container with the time that took.
fn start_node(net: &Network, run_args: &[&str]) -> (Container, Duration) {
    let image = node_image();
    let started = Instant::now();
    let node = Container::start(net, "node", run_args, &image, &[]);
    let healthy_after = node.wait_healthy(started, HEALTHY_WITHIN);
    (node, healthy_after)
}

/// A py-setowire peer in a container that dials the node; returns it and the node's id8
/// (from the peer's connection event for the node's address).
fn peer_of(net: &Network, label: &str, node_ip: &str) -> (ContainerPeer, String) {
    let mut peer = ContainerPeer::spawn(net, label);
    let node_addr = format!("{node_ip}:{UDP_PORT}");
    peer.dial(&node_addr);
    let ev = peer.wait_event(TIMEOUT, |e| {
        is_event(e, "connection") && e["addr"] == node_addr.as_str()
    });
    let node_id8 = ev["peer"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        node_id8.len(),
        16,
        "connection event without a peer id: {ev}"
    );
    (peer, node_id8)
}

/// The py-setowire driver on the host itself (the host's network, so that it can reach a
/// port published on 127.0.0.1).
fn host_peer_command() -> Command {
    let mut cmd = Command::new(venv::python());
    cmd.arg("-I").arg("-u").arg(venv::driver_script());
    cmd
}

/// `GET path` on the host side of a port the container publishes: (status, body).
fn get_published(node: &Container, port: &str, path: &str) -> (u16, String) {
    let addr = node.published(port);
    assert!(addr.ip().is_loopback(), "published on {addr}");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (status, body) = prometheus::http_exchange(addr.port(), request.as_bytes())
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The container's log without terminal colour codes (`docker logs` of the pretty format may
/// carry them), so that `key=value` fields can be matched.
fn plain_logs(node: &Container) -> String {
    let mut out = String::new();
    let logs = node.logs();
    let mut chars = logs.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            // CSI: parameters up to the final byte, a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn serves_py_peers_on_its_defaults_and_drains_on_docker_stop() {
    let net = Network::create();
    let (node, healthy_after) = start_node(
        &net,
        &["-p", "127.0.0.1::49737/udp", "-p", "127.0.0.1::8737/tcp"],
    );
    eprintln!("docker run -> healthy: {healthy_after:?}");
    // The defaults: the node runs as the image's unprivileged user and keeps its identity
    // in the state volume.
    assert_eq!(node.inspect("{{.Config.User}}"), "10001:10001");
    let logs = plain_logs(&node);
    assert!(
        logs.contains("/var/lib/setowire-node/identity.key"),
        "no key file in the state directory:\n{logs}"
    );
    // HTTP bootstrap on its default 0.0.0.0:8737, through the published port.
    let (status, body) = get_published(&node, "8737/tcp", "/peers");
    assert_eq!(status, 200, "GET /peers: {body}");

    let node_ip = node.ip();
    let (mut a, node_seen_by_a) = peer_of(&net, "py-a", &node_ip);
    let (mut b, node_seen_by_b) = peer_of(&net, "py-b", &node_ip);
    assert_eq!(node_seen_by_a, node_seen_by_b);
    broadcast_reaches(&mut a, &mut b, 1);
    broadcast_reaches(&mut b, &mut a, 2);
    // A peer on the host reaches the node through the published UDP port (on loopback).
    let udp = node.published("49737/udp");
    assert!(udp.ip().is_loopback(), "published on {udp}");
    let mut host_peer =
        ControlPeer::from_process(LineProcess::spawn_command("py-host", host_peer_command()));
    host_peer.dial(&udp.to_string());
    host_peer.wait_connection(&node_seen_by_a);
    broadcast_reaches(&mut a, &mut host_peer, 3);

    let stop_started = Instant::now();
    docker_ok(&["stop", "-t", STOP_GRACE_SECS, &node.name]);
    let stop_took = stop_started.elapsed();
    eprintln!("docker stop -> exited: {stop_took:?}");
    assert_eq!(node.inspect("{{.State.ExitCode}}"), "0", "{}", node.logs());
    assert!(
        stop_took < DRAIN + Duration::from_secs(3),
        "docker stop took {stop_took:?}: not drained within {DRAIN:?}"
    );
    for peer in [&mut *a, &mut *b, &mut host_peer] {
        peer.wait_disconnect(&node_seen_by_a);
        let seen_after = stop_started.elapsed();
        assert!(
            seen_after < PY_PEER_TIMEOUT / 4,
            "{}: disconnect {seen_after:?} after docker stop: a timeout, not GOAWAY",
            peer.label()
        );
    }
    let logs = plain_logs(&node);
    assert!(
        logs.contains("shutting down: GOAWAY to every peer") && logs.contains("stopped"),
        "the node did not say it drained:\n{logs}"
    );
}

#[test]
fn io_uring_refused_by_seccomp_falls_back_to_mmsg() {
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/container/seccomp-no-io-uring.json"
    );
    let net = Network::create();
    // /metrics is on the admin listener: published here, so the node wants a token.
    let (node, _) = start_node(
        &net,
        &[
            "--security-opt",
            &format!("seccomp={profile}"),
            "-e",
            "SETOWIRE_ADMIN_LISTEN=0.0.0.0:9737",
            "-e",
            "SETOWIRE_ADMIN_TOKEN=container-test-token",
            "-p",
            "127.0.0.1::9737/tcp",
        ],
    );
    let logs = plain_logs(&node);
    assert!(
        logs.contains("io_uring unavailable, using recvmmsg/sendmmsg"),
        "no fallback in the log:\n{logs}"
    );
    let (status, metrics) = get_published(&node, "9737/tcp", "/metrics");
    assert_eq!(status, 200);
    let backend_lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("setowire_io_backend{"))
        .collect();
    assert!(
        backend_lines.contains(&r#"setowire_io_backend{backend="mmsg"} 1"#),
        "{backend_lines:?}"
    );
    assert!(
        backend_lines.contains(&r#"setowire_io_backend{backend="io_uring"} 0"#),
        "{backend_lines:?}"
    );
    // And it serves on mmsg.
    let node_ip = node.ip();
    let (mut a, _) = peer_of(&net, "py-a", &node_ip);
    let (mut b, _) = peer_of(&net, "py-b", &node_ip);
    broadcast_reaches(&mut a, &mut b, 4);
}

#[test]
fn the_image_is_small_unprivileged_and_declares_its_ports_volume_and_checks() {
    let image = node_image();
    let inspect = |format: &str| docker_ok(&["image", "inspect", "--format", format, &image]);
    let size: u64 = inspect("{{.Size}}").parse().expect("image size");
    eprintln!("image size: {size} bytes");
    assert!(size <= 60 * 1000 * 1000, "{size} bytes");
    assert_eq!(inspect("{{.Config.User}}"), "10001:10001");
    let ports = inspect("{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}");
    let mut ports: Vec<&str> = ports.split_whitespace().collect();
    ports.sort_unstable();
    assert_eq!(ports, ["49737/udp", "8737/tcp", "9737/tcp"]);
    assert_eq!(
        inspect("{{range $v, $_ := .Config.Volumes}}{{$v}}{{end}}"),
        "/var/lib/setowire-node"
    );
    assert_eq!(inspect("{{.Config.StopSignal}}"), "SIGTERM");
    assert_eq!(
        inspect("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/usr/local/bin/setowire-node","health"]"#
    );
    assert!(
        inspect("{{json .Config.Env}}").contains("SETOWIRE_STATE_DIR=/var/lib/setowire-node"),
        "no state_dir in the image's environment"
    );
}
