//! The engine's protocol behaviour on a perfect network: handshakes, data, flooding,
//! store and fetch, introductions, and what it refuses.

use std::net::SocketAddr;
use std::time::Duration;

use super::{connected_to, data_from, Swarm};
use crate::proto::frame::{Endpoint, Frame, FrameKind, Handshake};
use crate::proto::identity::{Id8, Identity};
use crate::simnet::Link;
use crate::swarm::config::EngineConfig;
use crate::swarm::event::{DisconnectReason, Event};
use crate::swarm::stats::DropReason;

#[test]
fn handshake_connects_both_sides_once_despite_repeated_hellos() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    // The dialer keeps repeating HELLO for a while; nothing more may happen.
    net.advance(Duration::from_secs(3));
    assert_eq!(connected_to(&net.take_events(0)), vec![net.id8(1)]);
    assert_eq!(connected_to(&net.take_events(1)), vec![net.id8(0)]);
    assert_eq!(net.engine(0).stats().handshakes, 1);
    assert_eq!(net.engine(1).stats().handshakes, 1);
    // HELLO is answered with HELLO_ACK, never with another HELLO.
    assert!(net.engine(1).stats().frames(FrameKind::Hello) <= 8);
    assert_eq!(net.engine(0).stats().frames(FrameKind::Hello), 0);
}

#[test]
fn data_small_and_fragmented_arrives_in_order() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    let peer = net.id8(1);
    let small: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 10 + i as usize]).collect();
    for payload in &small {
        net.engine(0).send(&peer, payload).unwrap();
    }
    let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    net.engine(0).send(&peer, &big).unwrap();
    net.settle();
    let received = data_from(&net.take_events(1));
    let mut expected: Vec<(Id8, Vec<u8>)> = small.into_iter().map(|p| (net.id8(0), p)).collect();
    expected.push((net.id8(0), big));
    assert_eq!(received, expected);
}

#[test]
fn duplicate_content_is_delivered_once() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    let peer = net.id8(1);
    net.engine(0).send(&peer, b"same").unwrap();
    net.engine(0).send(&peer, b"same").unwrap();
    net.settle();
    assert_eq!(data_from(&net.take_events(1)).len(), 1);
    assert_eq!(net.engine(1).stats().drops(DropReason::Duplicate), 1);
}

#[test]
fn own_broadcast_flooded_back_is_not_delivered() {
    let config = EngineConfig {
        follow_introductions: false,
        ..EngineConfig::default()
    };
    let mut net = Swarm::new(3, config);
    net.connect(0, 1);
    net.connect(0, 2);
    net.connect(1, 2);
    // The direct path to 2 is the slow one: 2 gets the broadcast from 1 first, and floods it
    // on to everyone but 1 — back to 0 too.
    let slow = Link {
        latency: Duration::from_millis(50),
        ..Link::PERFECT
    };
    net.net
        .set_link(net.addr(0).ip(), net.addr(2).ip(), slow)
        .unwrap();
    net.take_events(0);
    assert_eq!(net.engine(0).broadcast(b"mine"), 2);
    net.advance(Duration::from_millis(200));
    assert_eq!(
        data_from(&net.take_events(2)),
        vec![(net.id8(1), b"mine".to_vec())]
    );
    assert!(
        data_from(&net.take_events(0)).is_empty(),
        "its own data came back as data"
    );
    assert_eq!(net.engine(0).stats().drops(DropReason::Duplicate), 1);
}

#[test]
fn replayed_data_is_dropped() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    net.take_events(1);
    let peer = net.id8(1);
    net.engine(0).send(&peer, b"once").unwrap();
    let mut captured = Vec::new();
    net.engine(0)
        .drain_transmits(|_, bytes| captured.push(bytes.to_vec()));
    let (now, src) = (net.now(), net.addr(0));
    net.engine(1).handle_datagram(now, src, &captured[0]);
    net.engine(1).handle_datagram(now, src, &captured[0]);
    net.settle();
    assert_eq!(data_from(&net.take_events(1)).len(), 1);
    assert_eq!(net.engine(1).stats().drops(DropReason::Replay), 1);
}

#[test]
fn introductions_connect_two_peers_that_only_know_the_hub() {
    let mut net = Swarm::new(3, EngineConfig::default());
    net.connect(1, 0);
    net.connect(2, 0);
    net.advance(Duration::from_millis(500));
    let peers_of_1: Vec<Id8> = net
        .engine(1)
        .peers()
        .map(|p| p.id[..8].try_into().unwrap())
        .collect();
    assert!(
        peers_of_1.contains(&net.id8(2)),
        "peer 1 knows {peers_of_1:?}"
    );
    assert_eq!(net.engine(2).peer_count(), 2);
}

#[test]
fn hub_floods_data_to_its_mesh_except_the_sender() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            // Keep the spokes from meeting each other so that data can only come via the hub.
            follow_introductions: false,
            ..EngineConfig::default()
        },
    );
    net.connect(1, 0);
    net.connect(2, 0);
    let hub = net.id8(0);
    net.engine(1).send(&hub, b"via the hub").unwrap();
    net.settle();
    assert_eq!(
        data_from(&net.take_events(2)),
        vec![(hub, b"via the hub".to_vec())]
    );
    assert!(
        data_from(&net.take_events(1)).is_empty(),
        "the sender must not get its own data back"
    );
}

#[test]
fn seed_only_hub_does_not_flood() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            follow_introductions: false,
            flood: false,
            ..EngineConfig::default()
        },
    );
    net.connect(1, 0);
    net.connect(2, 0);
    let hub = net.id8(0);
    net.engine(1).send(&hub, b"stays here").unwrap();
    net.settle();
    assert_eq!(data_from(&net.take_events(0)).len(), 1);
    assert!(data_from(&net.take_events(2)).is_empty());
}

#[test]
fn store_and_fetch_small_and_multi_piece_values() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    let big: Vec<u8> = (0..9000u32).map(|i| (i * 7 % 256) as u8).collect();
    assert!(net.engine(0).store("small", b"tiny value".to_vec()));
    assert!(net.engine(0).store("big", big.clone()));
    let now = net.now();
    net.engine(1).fetch(now, "small");
    net.engine(1).fetch(now, "big");
    net.settle();
    let fetched: Vec<(String, Vec<u8>)> = net
        .take_events(1)
        .into_iter()
        .filter_map(|e| match e {
            Event::Fetched { key, value } => Some((key, value)),
            _ => None,
        })
        .collect();
    assert!(fetched.contains(&("small".to_owned(), b"tiny value".to_vec())));
    assert!(fetched.contains(&("big".to_owned(), big)));
}

#[test]
fn fetch_of_a_missing_key_fails_after_the_timeout() {
    let mut net = Swarm::new(
        2,
        EngineConfig {
            fetch_timeout: Duration::from_secs(2),
            ..EngineConfig::default()
        },
    );
    net.connect(0, 1);
    let now = net.now();
    net.engine(1).fetch(now, "nobody-has-it");
    net.advance(Duration::from_secs(3));
    assert!(net.take_events(1).contains(&Event::FetchFailed {
        key: "nobody-has-it".to_owned()
    }));
}

#[test]
fn store_forward_keeps_a_value_after_its_owner_left() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            store_forward: true,
            follow_introductions: false,
            ..EngineConfig::default()
        },
    );
    net.connect(1, 0);
    net.engine(1).store("kept", b"still here".to_vec());
    net.settle();
    let hub = net.id8(0);
    net.engine(1).disconnect(&hub);
    net.settle();
    // The hub ends the session once the peer that said GOAWAY stays silent.
    net.remove(1);
    net.advance(Duration::from_secs(4));
    assert_eq!(net.engine(0).peer_count(), 0);
    net.connect(2, 0);
    let now = net.now();
    net.engine(2).fetch(now, "kept");
    net.settle();
    assert!(net.take_events(2).contains(&Event::Fetched {
        key: "kept".to_owned(),
        value: b"still here".to_vec()
    }));
}

#[test]
fn goaway_disconnects_and_silence_times_out() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            peer_timeout: Duration::from_secs(5),
            follow_introductions: false,
            ..EngineConfig::default()
        },
    );
    net.connect(0, 1);
    net.connect(0, 2);
    let (id0, id1) = (net.id8(0), net.id8(1));
    net.engine(1).disconnect(&id0);
    net.settle();
    // Node 1 said GOAWAY and is silent from then on: after the grace, node 0 lets it go.
    net.remove(1);
    net.advance(Duration::from_secs(4));
    assert!(net.take_events(0).contains(&Event::Disconnected {
        peer: id1,
        reason: DisconnectReason::Goaway
    }));
    // Node 2 goes silent: remove it from the network, node 0 must time it out.
    let gone = net.remove(2);
    net.advance(Duration::from_secs(7));
    assert!(net.take_events(0).contains(&Event::Disconnected {
        peer: gone.identity().id8(),
        reason: DisconnectReason::Timeout
    }));
    assert_eq!(net.engine(0).peer_count(), 0);
}

/// A peer restarted on its old address with a new identity answers the node's PINGs with
/// PONGs naming the new one: they must not keep the old session alive, and the node must
/// get a session with the new process without waiting for the old one to time out.
#[test]
fn a_peer_restarted_with_a_new_identity_on_its_address_gets_a_new_session() {
    let config = EngineConfig::default();
    let mut net = Swarm::new(2, config.clone());
    net.connect(0, 1);
    // The session has lived a while: its address has earned the credit a dial costs.
    net.advance(Duration::from_secs(5));
    let (addr, old) = (net.addr(1), net.id8(1));
    net.remove(1);
    let engine = net.next_engine(&config);
    let host = net
        .net
        .add_host(addr, engine)
        .expect("the address is free again");
    let restarted = net.push(host);
    let new = net.id8(restarted);
    assert_ne!(new, old);
    net.take_events(0);
    // Well within the 60 s peer timeout: two silent ping intervals, then a dial.
    net.advance(Duration::from_secs(5));
    let events = net.take_events(0);
    assert!(
        events.contains(&Event::Disconnected {
            peer: old,
            reason: DisconnectReason::Replaced
        }),
        "{events:?}"
    );
    assert_eq!(connected_to(&events), vec![new]);
    assert!(net.engine(0).peer(&old).is_none());
    assert_eq!(net.engine(0).peer_count(), 1);
    assert_eq!(connected_to(&net.take_events(restarted)), vec![net.id8(0)]);
}

/// A peer restarted on its address with the same identity (and no memory of its sessions)
/// answers the node's PINGs but sends none of its own: the node offers it a handshake again,
/// and both sides have a session that carries data.
#[test]
fn a_peer_restarted_with_its_identity_but_no_sessions_gets_a_session_again() {
    let config = EngineConfig::default();
    let mut net = Swarm::new(2, config.clone());
    net.connect(0, 1);
    net.advance(Duration::from_secs(5));
    let (addr, id1) = (net.addr(1), net.id8(1));
    let identity = net.remove(1).identity().clone();
    // As a node does, the new process counts its sends on from where the old one stopped.
    let restarted_config = EngineConfig {
        first_send_counter: 1 << 40,
        ..config
    };
    let now = net.now();
    let engine = crate::swarm::engine::Engine::with_rng(
        identity,
        restarted_config,
        now,
        rand::SeedableRng::seed_from_u64(99),
    );
    let host = net
        .net
        .add_host(addr, engine)
        .expect("the address is free again");
    let restarted = net.push(host);
    assert_eq!(net.id8(restarted), id1);
    assert_eq!(net.engine(restarted).peer_count(), 0);
    // Three intervals without its PINGs, then a dial.
    net.advance(Duration::from_secs(6));
    assert_eq!(
        connected_to(&net.take_events(restarted)),
        vec![net.id8(0)],
        "the restarted peer got a session"
    );
    assert!(net.engine(0).peer(&id1).is_some());
    net.take_events(0);
    net.engine(0).send(&id1, b"to the restarted one").unwrap();
    let id0 = net.id8(0);
    net.engine(restarted)
        .send(&id0, b"from the restarted one")
        .unwrap();
    net.settle();
    assert_eq!(
        data_from(&net.take_events(restarted)),
        vec![(net.id8(0), b"to the restarted one".to_vec())]
    );
    assert_eq!(
        data_from(&net.take_events(0)),
        vec![(id1, b"from the restarted one".to_vec())]
    );
}

#[test]
fn hello_with_an_id_that_is_not_its_key_hash_is_dropped() {
    let mut net = Swarm::new(1, EngineConfig::default());
    let stranger = Identity::from_seed(b"stranger");
    let mut forged = Handshake {
        id8: stranger.id8(),
        public_key: *stranger.public_key(),
    };
    forged.id8[0] ^= 1;
    let hello = Frame::Hello(forged).to_vec().unwrap();
    let now = net.now();
    net.engine(0)
        .handle_datagram(now, "127.9.9.9:1".parse().unwrap(), &hello);
    assert_eq!(net.engine(0).peer_count(), 0);
    assert_eq!(net.engine(0).stats().drops(DropReason::BadHandshakeId), 1);
    assert!(
        !net.engine(0).has_transmits(),
        "a forged HELLO gets no answer"
    );
}

#[test]
fn own_hello_is_refused() {
    let mut net = Swarm::new(1, EngineConfig::default());
    let me = net.engine(0).identity().clone();
    let hello = Frame::Hello(Handshake {
        id8: me.id8(),
        public_key: *me.public_key(),
    })
    .to_vec()
    .unwrap();
    let (now, addr) = (net.now(), net.addr(0));
    net.engine(0).handle_datagram(now, addr, &hello);
    assert_eq!(net.engine(0).peer_count(), 0);
    assert_eq!(net.engine(0).stats().drops(DropReason::SelfConnection), 1);
}

#[test]
fn full_peer_table_refuses_new_handshakes() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            max_peers: 1,
            follow_introductions: false,
            ..EngineConfig::default()
        },
    );
    net.connect(1, 0);
    net.connect(2, 0);
    assert_eq!(net.engine(0).peer_count(), 1);
    assert!(net.engine(0).stats().drops(DropReason::PeerTableFull) >= 1);
}

#[test]
fn ping_from_anyone_gets_a_smaller_pong() {
    let mut net = Swarm::new(1, EngineConfig::default());
    let ping = Frame::Ping {
        timestamp_ms: 1,
        id: [7; 20],
    }
    .to_vec()
    .unwrap();
    let now = net.now();
    net.engine(0)
        .handle_datagram(now, "127.9.9.9:1".parse().unwrap(), &ping);
    let mut replies = Vec::new();
    net.engine(0)
        .drain_transmits(|dst, bytes| replies.push((dst, bytes.to_vec())));
    assert_eq!(replies.len(), 1);
    assert!(replies[0].1.len() < ping.len());
    assert_eq!(
        Frame::parse(&replies[0].1).unwrap(),
        Frame::Pong {
            id: *net.engine(0).identity().id()
        }
    );
}

#[test]
fn relay_request_introduces_both_sides() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            follow_introductions: false,
            ..EngineConfig::default()
        },
    );
    net.connect(1, 0);
    let (requester, target) = (net.id8(2), net.id8(1));
    let request = Frame::RelayReq {
        from: requester,
        to: target,
        endpoint: Endpoint {
            ip: "203.0.113.9",
            port: 9,
        },
    }
    .to_vec()
    .unwrap();
    // Without a session nobody is told anything.
    let (now, src) = (net.now(), net.addr(2));
    net.engine(0).handle_datagram(now, src, &request);
    let mut sent = 0;
    net.engine(0).drain_transmits(|_, _| sent += 1);
    assert_eq!(sent, 0);
    assert_eq!(net.engine(0).stats().drops(DropReason::UnknownPeer), 1);
    // With a session that has sent enough to pay for both RELAY_FWDs and the HELLOs the
    // target will send it (its PINGs pay within a few seconds), both sides are told.
    net.connect(2, 0);
    net.advance(Duration::from_secs(5));
    net.settle();
    let (now, src) = (net.now(), net.addr(2));
    net.engine(0).handle_datagram(now, src, &request);
    let mut sent = Vec::new();
    net.engine(0)
        .drain_transmits(|dst, bytes| sent.push((dst, bytes.to_vec())));
    let to_target = sent
        .iter()
        .find(|(dst, _)| *dst == net.addr(1))
        .expect("FWD to target");
    let src_ip = src.ip().to_string();
    assert_eq!(
        Frame::parse(&to_target.1).unwrap(),
        Frame::RelayFwd {
            from: requester,
            // The observed address, not the one claimed in the request.
            endpoint: Endpoint {
                ip: &src_ip,
                port: src.port()
            },
        }
    );
    assert!(
        sent.iter().any(|(dst, _)| *dst == src),
        "FWD back to the requester"
    );
    assert_eq!(net.engine(0).stats().relay_forwards, 1);
}

#[test]
fn malformed_input_is_counted_never_fatal() {
    let mut net = Swarm::new(1, EngineConfig::default());
    let now = net.now();
    let src: SocketAddr = "127.9.9.9:1".parse().unwrap();
    for datagram in [
        &[][..],
        &[0xFF, 1, 2],
        &[0x13, 3, 0, 9],
        &[0xA1, 1, 2, 3],
        &[0x13, 1, 0, 3, 0x13, 1, 0],
    ] {
        net.engine(0).handle_datagram(now, src, datagram);
    }
    let stats = net.engine(0).stats();
    assert_eq!(stats.datagrams_received, 5);
    assert!(stats.drops(DropReason::Malformed) >= 3);
    assert_eq!(stats.drops(DropReason::UnknownType), 1);
}

#[test]
fn pex_connects_peers_that_only_know_the_hub() {
    let mut net = Swarm::new(
        3,
        EngineConfig {
            // No introductions on connect: only the periodic PEX can bring the spokes together.
            // By the first round each spoke's PINGs have paid for the HELLOs a listing causes.
            gossip_fanout: 0,
            pex_interval: Duration::from_secs(6),
            ..EngineConfig::default()
        },
    );
    net.connect(1, 0);
    net.connect(2, 0);
    net.advance(Duration::from_millis(500));
    assert_eq!(net.engine(1).peer_count(), 1, "no introduction before PEX");
    net.advance(Duration::from_secs(6));
    assert_eq!(net.engine(1).peer_count(), 2);
    assert_eq!(net.engine(2).peer_count(), 2);
    // Nobody was listed to itself, so nobody dialled itself.
    for i in 0..3 {
        assert_eq!(net.engine(i).stats().drops(DropReason::SelfConnection), 0);
    }
}
