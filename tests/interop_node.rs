//! setowire-node against real py-setowire 0.1.0 peers (from PyPI), both directions: the node
//! runs as its own process (`--control stdio`), the Python peers through the test driver,
//! all inside a network namespace made for the test.

#[macro_use]
mod support;

use support::net::TestNet;
use support::peer::{connect, spawn_node, ControlPeer, PyPeer};
use support::{is_event, pattern_bytes, TIMEOUT};

on_both_backends!(
    handshake_in_both_directions,
    data_small_and_fragmented_in_both_directions,
    store_and_fetch_in_both_directions,
    goaway_in_both_directions,
    node_introduces_python_peers_to_each_other,
    python_data_reaches_the_other_python_peer,
    python_sender_is_not_throttled_by_its_send_window,
);

fn node(net: &TestNet, backend: &str) -> ControlPeer {
    spawn_node(net, &["--shards", "2", "--io-backend", backend])
}

/// A namespace with our node and `count` py-setowire peers, each connected to the node
/// (the Python peer dials) but not yet to each other.
fn node_with_python_peers(backend: &str, count: usize) -> (TestNet, ControlPeer, Vec<ControlPeer>) {
    let net = TestNet::new();
    let mut node = node(&net, backend);
    let peers = (0..count)
        .map(|_| {
            let mut py = PyPeer::spawn(&net, &[]).into_inner();
            connect(&mut py, &mut node);
            py
        })
        .collect();
    (net, node, peers)
}

fn handshake_in_both_directions(backend: &str) {
    let net = TestNet::new();
    let mut node = node(&net, backend);
    let mut dialled = PyPeer::spawn(&net, &[]).into_inner();
    let mut dialler = PyPeer::spawn(&net, &[]).into_inner();
    connect(&mut node, &mut dialled);
    connect(&mut dialler, &mut node);
    let listed: Vec<String> = node.peers().into_iter().map(|p| p.id).collect();
    assert!(
        listed.contains(&dialled.id8) && listed.contains(&dialler.id8),
        "{listed:?}"
    );
}

fn data_small_and_fragmented_in_both_directions(backend: &str) {
    let net = TestNet::new();
    let mut node = node(&net, backend);
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    connect(&mut node, &mut py);
    for (seed, len) in [(1, 5), (2, 1200), (3, 1201), (4, 5000)] {
        let to_py = pattern_bytes(seed, len);
        node.broadcast(&to_py);
        py.wait_data_eq(&node.id8, &to_py);
        let to_node = pattern_bytes(100 + seed, len);
        py.broadcast(&to_node);
        node.wait_data_eq(&py.id8, &to_node);
    }
}

fn store_and_fetch_in_both_directions(backend: &str) {
    let (_net, mut node, mut peers) = node_with_python_peers(backend, 1);
    let py = &mut peers[0];
    for (key, len) in [("small-from-node", 100), ("large-from-node", 9000)] {
        let value = pattern_bytes(len as u64, len);
        node.store(key, &value);
        assert_eq!(py.fetch(key, 10_000), Ok(value), "{key}");
    }
    for (key, len) in [("small-from-py", 300), ("large-from-py", 9000)] {
        let value = pattern_bytes(7 + len as u64, len);
        py.store(key, &value);
        assert_eq!(node.fetch(key, 10_000), Ok(value), "{key}");
    }
}

fn goaway_in_both_directions(backend: &str) {
    let net = TestNet::new();
    let mut node = node(&net, backend);
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    connect(&mut node, &mut py);
    // py-setowire's own GOAWAY is one byte, which it drops itself; the node accepts it.
    let py_id = py.id8.clone();
    assert!(py.quit().success());
    node.wait_disconnect(&py_id);

    // The node's GOAWAY (0x0A 0x00) makes a py-setowire peer emit disconnect at once.
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    connect(&mut node, &mut py);
    let node_id = node.id8.clone();
    assert!(node.quit().success());
    py.wait_disconnect(&node_id);
}

fn node_introduces_python_peers_to_each_other(backend: &str) {
    let (_net, _node, mut peers) = node_with_python_peers(backend, 2);
    let [a, b] = &mut peers[..] else {
        unreachable!()
    };
    // Neither was told about the other: only the node's introductions can connect them.
    a.wait_connection(&b.id8);
    b.wait_connection(&a.id8);
    // Introductions are not application data on either side.
    for peer in [&mut *a, &mut *b] {
        peer.assert_no_event(std::time::Duration::from_millis(300), |e| {
            is_event(e, "data") && e["hex"].as_str().is_some_and(|h| h.starts_with("7b"))
        });
    }
    // And the direct path carries data.
    let payload = pattern_bytes(42, 64);
    let b_id = b.id8.clone();
    a.send_to(&b_id, &payload);
    b.wait_data_eq(&a.id8, &payload);
}

fn python_data_reaches_the_other_python_peer(backend: &str) {
    let (_net, mut node, mut peers) = node_with_python_peers(backend, 2);
    let [a, b] = &mut peers[..] else {
        unreachable!()
    };
    let payload = pattern_bytes(9, 200);
    a.broadcast(&payload);
    node.wait_data_eq(&a.id8, &payload);
    // b hears it from the node's flood or from a directly, whichever comes first: py-setowire
    // de-duplicates by content. (The flood itself is tested in-process, deterministically.)
    b.wait_event(TIMEOUT, |e| {
        is_event(e, "data") && e["hex"] == hex::encode(&payload).as_str()
    });
}

fn python_sender_is_not_throttled_by_its_send_window(backend: &str) {
    // py-setowire stops after 16 DATA frames in flight until DATA or a PONG comes back (one
    // PONG a second): without the node's acknowledgements 100 messages would take ~40 s.
    let (_net, mut node, mut peers) = node_with_python_peers(backend, 1);
    let py = &mut peers[0];
    let started = std::time::Instant::now();
    let payloads: Vec<Vec<u8>> = (0..100).map(|i| pattern_bytes(1000 + i, 100)).collect();
    for payload in &payloads {
        py.broadcast(payload);
    }
    for payload in &payloads {
        node.wait_data_eq(&py.id8, payload);
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "100 messages took {took:?}"
    );
}
