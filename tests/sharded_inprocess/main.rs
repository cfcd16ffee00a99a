//! A node of several shards (engines sharing one address, a peer index, a value store and
//! inboxes, as in the real runtime) and peers around it, stepped in one process on the core
//! crate's simulated network ([`setowire_core::simnet`]), in virtual time. Which shard a
//! peer's datagrams reach is chosen per peer, as the kernel's SO_REUSEPORT hash would.
//!
//! [`sharded_node`] makes the node one host of that network; [`world`] puts it and its
//! peers on it.

mod sharded_node;
mod world;

use std::time::Duration;

use setowire_core::proto::frame::{Endpoint, Frame};
use setowire_core::simnet::Link;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::event::Event;
use setowire_core::swarm::node_view::NodeView;

use world::World;

fn quiet_peers() -> EngineConfig {
    EngineConfig {
        follow_introductions: false,
        ..EngineConfig::default()
    }
}

#[test]
fn peers_on_different_shards_are_introduced_to_each_other() {
    let mut w = World::new(2, &[0, 1], EngineConfig::default(), EngineConfig::default());
    w.join(0);
    w.join(1);
    w.advance(Duration::from_millis(200));
    assert_eq!(w.node().shard(0).peer_count(), 1);
    assert_eq!(w.node().shard(1).peer_count(), 1);
    let id1 = w.id8(1);
    assert!(
        w.peer(0).peer(&id1).is_some(),
        "peer 0 met peer 1 across shards"
    );
    assert_eq!(w.node().shared().peer_count(), 2);
}

#[test]
fn data_is_flooded_across_shards() {
    let mut w = World::new(2, &[0, 1, 1], EngineConfig::default(), quiet_peers());
    for i in 0..3 {
        w.join(i);
    }
    let node = w.node().shard(0).identity().id8();
    w.peer(0).send(&node, b"from shard 0").unwrap();
    w.settle();
    assert_eq!(w.take_data_at_peer(1), vec![b"from shard 0".to_vec()]);
    assert_eq!(w.take_data_at_peer(2), vec![b"from shard 0".to_vec()]);
    let delivered: usize = w
        .take_node_events()
        .iter()
        .filter(|e| matches!(e, Event::Data { .. }))
        .count();
    assert_eq!(
        delivered, 1,
        "the node surfaces the data once, on the shard it arrived at"
    );
}

#[test]
fn a_dial_answered_on_another_shard_connects() {
    let mut w = World::new(2, &[1], EngineConfig::default(), quiet_peers());
    let (now, peer) = (w.now(), w.peer_addr(0));
    // Shard 0 dials, but the peer's answers reach shard 1.
    assert!(w.node().shard_mut(0).dial(now, peer));
    w.settle();
    assert_eq!(w.node().shard(1).peer_count(), 1);
    assert_eq!(w.node().shard(0).peer_count(), 0);
    assert_eq!(w.peer(0).peer_count(), 1);
}

#[test]
fn relay_request_for_a_peer_on_another_shard() {
    let mut w = World::new(2, &[0, 1], EngineConfig::default(), quiet_peers());
    w.join(0);
    let (from, to) = (w.id8(1), w.id8(0));
    let request = Frame::RelayReq {
        from,
        to,
        endpoint: Endpoint {
            ip: "127.0.1.2",
            port: 5000,
        },
    }
    .to_vec()
    .unwrap();
    let (now, src, target) = (w.now(), w.peer_addr(1), w.peer_addr(0));
    // Peer 1's request lands on shard 1, the target lives on shard 0. It is handed to the
    // shard directly, past the network, to see what the shard sends. Without a session
    // nothing is sent.
    let shard = w.node().shard_mut(1);
    shard.handle_datagram(now, src, &request);
    assert_eq!(shard.stats().relay_forwards, 0);
    let mut sent = Vec::new();
    shard.drain_transmits(|dst, _| sent.push(dst));
    assert!(sent.is_empty(), "{sent:?}");
    // With a session whose PINGs have paid for both RELAY_FWDs and the HELLOs they cause.
    w.join(1);
    w.advance(Duration::from_secs(5));
    let now = w.now();
    let shard = w.node().shard_mut(1);
    shard.handle_datagram(now, src, &request);
    assert_eq!(shard.stats().relay_forwards, 1);
    let mut sent = Vec::new();
    shard.drain_transmits(|dst, _| sent.push(dst));
    assert!(sent.contains(&target) && sent.contains(&src), "{sent:?}");
}

#[test]
fn store_and_forward_across_shards_after_the_owner_left() {
    let node = EngineConfig {
        store_forward: true,
        ..EngineConfig::default()
    };
    let mut w = World::new(2, &[0, 1], node, quiet_peers());
    w.join(0);
    w.peer(0).store("kept", b"value".to_vec());
    w.settle();
    let hub = w.node().shard(0).identity().id8();
    w.peer(0).disconnect(&hub);
    w.settle();
    w.join(1);
    let now = w.now();
    w.peer(1).fetch(now, "kept");
    w.settle();
    assert!(w.take_peer_events(1).contains(&Event::Fetched {
        key: "kept".into(),
        value: b"value".to_vec()
    }));
}

#[test]
fn a_fetch_on_one_shard_is_answered_by_a_peer_on_another() {
    let node = EngineConfig {
        store_forward: false,
        ..EngineConfig::default()
    };
    let mut w = World::new(2, &[1], node, quiet_peers());
    w.join(0);
    w.peer(0).store("remote", b"held on shard 1".to_vec());
    w.settle();
    let now = w.now();
    w.node().shard_mut(0).fetch(now, "remote");
    w.settle();
    assert!(w.take_node_events().contains(&Event::Fetched {
        key: "remote".into(),
        value: b"held on shard 1".to_vec()
    }));
}

// ---- on an imperfect network -----------------------------------------------------------

/// Every path loses one datagram in twenty and delays each by 20 to 80 ms, so datagrams
/// sent close together overtake each other.
const LOSSY: Link = Link {
    loss: 0.05,
    latency: Duration::from_millis(20),
    jitter: Duration::from_millis(60),
    duplicate: 0.0,
};

/// A node of two shards and a peer per entry of `peer_shards`, all on [`LOSSY`] links, each
/// peer given time to connect through the losses.
fn lossy_world(peer_shards: &[usize], node: EngineConfig, peer: EngineConfig) -> World {
    let mut w = World::new(2, peer_shards, node, peer);
    w.net.set_default_link(LOSSY).unwrap();
    let now = w.now();
    for i in 0..peer_shards.len() {
        w.peer(i).dial(now, World::node_addr());
    }
    w.advance(Duration::from_secs(5));
    assert_eq!(w.node().shared().peer_count(), peer_shards.len());
    w
}

#[test]
fn a_broadcast_under_loss_and_jitter_reaches_every_peer_exactly_once() {
    let peer_shards = [0, 1, 0, 1, 0, 1];
    let mut w = lossy_world(
        &peer_shards,
        EngineConfig::default(),
        EngineConfig::default(),
    );
    for i in 0..peer_shards.len() {
        w.take_peer_events(i);
    }
    w.take_node_events();
    // Peer 0 sends to every session it has, the node's and those of the peers it was
    // introduced to; each copy that gets through is flooded on, so a loss on one path is
    // made up by another and the copies that meet are dropped as seen.
    assert!(w.peer(0).broadcast(b"to all") > 1, "peer 0 met other peers");
    w.advance(Duration::from_secs(1));
    assert!(w.net.counters().lost > 0);
    // Peer 0 itself is left out: a sender keeps no record of what it sent, so a copy
    // flooded back to it by a peer that got it from the node is delivered to it.
    for i in 1..peer_shards.len() {
        assert_eq!(w.take_data_at_peer(i), [b"to all".to_vec()], "peer {i}");
    }
    let at_node = w.take_node_events();
    let delivered = at_node.iter().filter(|e| matches!(e, Event::Data { .. }));
    assert_eq!(delivered.count(), 1, "the node surfaces the data once");
}

#[test]
fn under_loss_and_jitter_a_value_stored_through_one_shard_is_fetched_through_the_other() {
    let node = EngineConfig {
        store_forward: true,
        ..EngineConfig::default()
    };
    // Peers that know only the node: what answers peer 1 is the node's store.
    let mut w = lossy_world(&[0, 1], node, quiet_peers());
    // Peer 0 announces the value until the node has fetched it through shard 0 (a HAVE,
    // WANT or CHUNK may be lost); shard 1 sees it in the store they share.
    let mut announced = 0;
    while w.node().shard(1).stored("shared").is_none() {
        assert!(announced < 5, "the node never got the value");
        w.peer(0).store("shared", b"one store".to_vec());
        w.advance(Duration::from_secs(1));
        announced += 1;
    }
    // Peer 1 asks the node's shard 1, again when a WANT or its CHUNK is lost.
    let fetched = (0..5).find_map(|_| {
        let now = w.now();
        w.peer(1)
            .fetch_within(now, "shared", Duration::from_secs(1));
        w.advance(Duration::from_secs(2));
        w.take_peer_events(1).into_iter().find_map(|e| match e {
            Event::Fetched { key, value } if key == "shared" => Some(value),
            _ => None,
        })
    });
    assert_eq!(fetched, Some(b"one store".to_vec()));
}
