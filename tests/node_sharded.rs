//! The sharded node with real py-setowire peers that land on different shards: flooding,
//! relay introductions, PEX and store-and-forward cross shards; SIGTERM says GOAWAY.

#[macro_use]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::net::TestNet;
use support::peer::{connect, spawn_node, ControlPeer, PyPeer};
use support::{is_event, pattern_bytes, TIMEOUT};

on_both_backends!(
    data_is_flooded_to_a_peer_on_the_other_shard,
    relay_request_introduces_peers_on_different_shards,
    pex_introduces_peers_on_different_shards,
    a_value_outlives_the_peer_that_stored_it,
    sigterm_says_goaway_to_every_peer_and_exits_cleanly,
);

/// Broadcasts of the exactly-once test; each reaches the node twice, on both shards.
const MESSAGES: usize = 10_000;

/// A sender and a relayer sit on different shards of the node and know each other. Every
/// broadcast of the sender reaches the node twice at nearly the same moment: straight on one
/// shard, and flooded on by the relayer on the other. The node delivers each exactly once.
#[test]
fn data_reaching_both_shards_at_once_is_delivered_once() {
    let net = TestNet::new();
    let mut node = quiet_node(&net, "mmsg", &[]);
    let quiet_peer = || spawn_node(&net, &["--shards", "1", "--gossip-fanout", "0"]);
    let (mut sender, mut relayer) = peers_of_both_shards(&mut node, quiet_peer);
    connect(&mut sender, &mut relayer);
    let message = |i: usize| format!("exactly once {i:05}").into_bytes();
    for i in 0..MESSAGES {
        sender.broadcast(&message(i));
        // 2 000 a second: within the node's per-session rate, so none is refused.
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let last = message(MESSAGES - 1);
    node.wait_data_eq(&sender.id8, &last);
    relayer.wait_data_eq(&sender.id8, &last);
    // Late copies, from the relayer, have time to arrive.
    std::thread::sleep(Duration::from_secs(1));
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for e in node.events_so_far() {
        if is_event(&e, "data") {
            *delivered
                .entry(e["hex"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let twice: Vec<_> = delivered.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(delivered.len(), MESSAGES, "every broadcast was delivered");
}

/// Spawns py-setowire peers that dial the node until one sits on each of its two shards;
/// returns (peer on shard 0, peer on shard 1). Others are stopped.
fn peers_on_both_shards(net: &TestNet, node: &mut ControlPeer) -> (ControlPeer, ControlPeer) {
    peers_of_both_shards(node, || PyPeer::spawn(net, &[]).into_inner())
}

/// Peers made by `spawn` dial the node until one sits on each of its two shards; returns
/// (peer on shard 0, peer on shard 1). Others are stopped.
fn peers_of_both_shards(
    node: &mut ControlPeer,
    mut spawn: impl FnMut() -> ControlPeer,
) -> (ControlPeer, ControlPeer) {
    let mut found: [Option<ControlPeer>; 2] = [None, None];
    for _ in 0..24 {
        let mut peer = spawn();
        connect(&mut peer, node);
        let shard = node
            .peers()
            .into_iter()
            .find(|p| p.id == peer.id8)
            .and_then(|p| p.shard)
            .expect("the node lists the shard of each peer") as usize;
        if found[shard].is_none() {
            found[shard] = Some(peer);
        }
        if let [Some(_), Some(_)] = &found {
            let [a, b] = found;
            return (a.unwrap(), b.unwrap());
        }
    }
    panic!("24 peers all landed on one shard");
}

/// A two-shard node that introduces nobody on its own, so only what a test does connects
/// peers to each other.
fn quiet_node(net: &TestNet, backend: &str, extra: &[&str]) -> ControlPeer {
    let mut args = vec![
        "--shards",
        "2",
        "--io-backend",
        backend,
        "--gossip-fanout",
        "0",
    ];
    args.extend_from_slice(extra);
    spawn_node(net, &args)
}

fn data_is_flooded_to_a_peer_on_the_other_shard(backend: &str) {
    let net = TestNet::new();
    let mut node = quiet_node(&net, backend, &[]);
    let (mut a, mut b) = peers_on_both_shards(&net, &mut node);
    let payload = pattern_bytes(77, 300);
    a.send_to(&node.id8.clone(), &payload);
    // b knows only the node: the data can reach it only by the node's flood.
    b.wait_data_eq(&node.id8, &payload);
}

fn relay_request_introduces_peers_on_different_shards(backend: &str) {
    let net = TestNet::new();
    let mut node = quiet_node(&net, backend, &[]);
    let (mut a, mut b) = peers_on_both_shards(&net, &mut node);
    // RELAY_REQ: 0x21 ‖ from id8 ‖ to id8 ‖ iplen ‖ ip ‖ port, sent straight to the relay.
    let mut request = vec![0x21];
    request.extend(hex::decode(&a.id8).unwrap());
    request.extend(hex::decode(&b.id8).unwrap());
    request.push(9);
    request.extend(b"127.0.0.1");
    request.extend(a.port.to_be_bytes());
    let node_addr = node.addr();
    a.send_raw(&node_addr, &request);
    a.wait_connection(&b.id8);
    b.wait_connection(&a.id8);
}

fn pex_introduces_peers_on_different_shards(backend: &str) {
    let net = TestNet::new();
    let mut node = quiet_node(&net, backend, &["--pex-interval-secs", "1"]);
    let (mut a, mut b) = peers_on_both_shards(&net, &mut node);
    a.wait_connection(&b.id8);
    b.wait_connection(&a.id8);
}

fn a_value_outlives_the_peer_that_stored_it(backend: &str) {
    let net = TestNet::new();
    let mut node = quiet_node(&net, backend, &[]);
    let (mut owner, mut fetcher) = peers_on_both_shards(&net, &mut node);
    let value = pattern_bytes(5, 9000);
    owner.store("left-behind", &value);
    // The node fetches what its peers announce and keeps it.
    node.wait_event(TIMEOUT, |e| {
        is_event(e, "sync") && e["key"] == "left-behind"
    });
    assert!(owner.quit().success());
    assert_eq!(fetcher.fetch("left-behind", 10_000), Ok(value));
}

fn sigterm_says_goaway_to_every_peer_and_exits_cleanly(backend: &str) {
    let net = TestNet::new();
    let mut node = quiet_node(&net, backend, &[]);
    let (mut a, mut b) = peers_on_both_shards(&net, &mut node);
    // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, libc::SIGTERM) }, 0);
    a.wait_disconnect(&node.id8);
    b.wait_disconnect(&node.id8);
    let status = node.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}
