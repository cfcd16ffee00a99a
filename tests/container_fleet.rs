//! A fleet in containers: three node containers on a bridge network of the test's own, each
//! given the other two as `bootstrap` by container name (Docker's DNS resolves a name only
//! once its container runs: the nodes start one after the other, and each keeps resolving and
//! dialling the others until it has joined them). py-setowire 0.1.0 peers run in containers
//! of their own and know one node each.
//!
//! Needs Docker (Debian's docker.io, its daemon running) and the image
//! deploy/docker/build-offline.sh builds: without them the test fails, it is never skipped.
//! `cargo test -p setowire-node --test container_fleet -- --nocapture` shows the times.

mod support;

use std::time::{Duration, Instant};

use support::docker::{docker_ok, node_image, unique_name, Container, ContainerPeer, Network};
use support::peer::broadcast_reaches;
use support::{is_event, TIMEOUT};

const UDP_PORT: u16 = 49737;
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);
/// A peer of one node and a peer of another meet directly within this (the bound).
const MEET_WITHIN: Duration = Duration::from_secs(5);

/// The id the node logged at its `n`-th start (0: the first).
fn started_id(node: &Container, n: usize) -> String {
    let logs = node.logs();
    let ids: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("node started"))
        .filter_map(|l| l.split(" id=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    ids.get(n)
        .unwrap_or_else(|| panic!("{}: no start {n} in the log:\n{logs}", node.name))
        .trim_matches('"')
        .to_owned()
}

/// A py-setowire peer in a container that dials `node`; returns once they are connected.
fn peer_of(net: &Network, label: &str, node: &Container) -> ContainerPeer {
    let mut peer = ContainerPeer::spawn(net, label);
    let addr = format!("{}:{UDP_PORT}", node.ip());
    peer.dial(&addr);
    peer.wait_event(TIMEOUT, |e| {
        is_event(e, "connection") && e["addr"] == addr.as_str()
    });
    peer
}

/// Waits until `a` has a session with `b` at `b`'s own container address: a direct one,
/// not through a node.
fn wait_direct(a: &mut ContainerPeer, b: &ContainerPeer, within: Duration) -> Duration {
    let started = Instant::now();
    let prefix = format!("{}:", b.container.ip());
    let id8 = b.id8.clone();
    let found = a.try_wait_event(within, |e| {
        is_event(e, "connection")
            && e["peer"] == id8.as_str()
            && e["addr"]
                .as_str()
                .is_some_and(|addr| addr.starts_with(&prefix))
    });
    assert!(
        found.is_some(),
        "{} and {} did not meet directly within {within:?}",
        a.label(),
        b.label()
    );
    started.elapsed()
}

#[test]
fn a_fleet_of_containers_acts_as_one() {
    let net = Network::create();
    let names: Vec<String> = (1..=3).map(|n| unique_name(&format!("node{n}"))).collect();
    let image = node_image();
    let mut nodes = Vec::new();
    let started = Instant::now();
    for (i, name) in names.iter().enumerate() {
        let mut cmd: Vec<String> = Vec::new();
        for (j, other) in names.iter().enumerate() {
            if j != i {
                cmd.extend(["--bootstrap".into(), format!("{other}:{UDP_PORT}")]);
            }
        }
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        nodes.push(Container::start_as(&net, name, &[], &image, &cmd));
    }
    for node in &nodes {
        node.wait_healthy(started, HEALTHY_WITHIN);
    }
    let ids: Vec<String> = nodes.iter().map(|n| started_id(n, 0)).collect();

    // A peer of node 1 and a peer of node 3 meet directly.
    let mut p1 = peer_of(&net, "py-1", &nodes[0]);
    let joined = Instant::now();
    let mut p3 = peer_of(&net, "py-3", &nodes[2]);
    let met = wait_direct(&mut p1, &p3, MEET_WITHIN);
    println!(
        "fleet | peers of node 1 and node 3 met directly {:?} after the second joined",
        joined.elapsed().min(met)
    );
    broadcast_reaches(&mut p1, &mut p3, 1);

    // Node 1 killed: the peers keep talking, and a newcomer on node 2 meets the peer of node 3.
    docker_ok(&["kill", &nodes[0].name]);
    broadcast_reaches(&mut p3, &mut p1, 2);
    broadcast_reaches(&mut p1, &mut p3, 3);
    let mut p2 = peer_of(&net, "py-2", &nodes[1]);
    let met = wait_direct(&mut p2, &p3, MEET_WITHIN);
    println!("fleet | after node 1 was killed, a peer of node 2 met the peer of node 3 in {met:?}");

    // docker restart keeps the identity (the key is in the state volume).
    let restart = Instant::now();
    docker_ok(&["restart", "-t", "10", &nodes[2].name]);
    nodes[2].wait_healthy(restart, HEALTHY_WITHIN);
    println!(
        "fleet | node 3 restarted and healthy in {:?}",
        restart.elapsed()
    );
    assert_eq!(
        started_id(&nodes[2], 1),
        ids[2],
        "node 3 changed identity on restart"
    );
    // The fleet re-forms around it: a newcomer on node 3 meets the peer of node 2.
    let mut p4 = peer_of(&net, "py-4", &nodes[2]);
    let met = wait_direct(&mut p4, &p2, MEET_WITHIN);
    println!("fleet | after the restart, a peer of node 3 met the peer of node 2 in {met:?}");
}
