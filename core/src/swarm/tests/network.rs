//! The engine on an imperfect network: loss, reordering, duplication and NATs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{connected_to, data_from, Swarm};
use crate::simnet::{Link, NatConfig};
use crate::swarm::config::EngineConfig;
use crate::swarm::engine::{DIAL_HELLOS, DIAL_INTERVAL};
use crate::swarm::event::Event;
use crate::swarm::stats::DropReason;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const WAN: Link = Link {
    latency: Duration::from_millis(30),
    ..Link::PERFECT
};

/// A public hub (engine 0) and two peers, 1 and 2, each alone behind its own NAT
/// (public IPs 198.51.100.1 and .2, private 192.168.1.2:4000 and 192.168.2.2:4000).
fn behind_nats(first: NatConfig, second: NatConfig) -> Swarm {
    let config = EngineConfig::default();
    let mut net = Swarm::empty(0);
    net.net.set_default_link(WAN).unwrap();
    net.add_public(&config);
    let nat1 = net.net.add_nat(ip("198.51.100.1"), first).unwrap();
    let nat2 = net.net.add_nat(ip("198.51.100.2"), second).unwrap();
    net.add_behind(nat1, addr("192.168.1.2:4000"), &config);
    net.add_behind(nat2, addr("192.168.2.2:4000"), &config);
    net
}

/// Both peers join the hub, which introduces them to each other; then they have time to
/// dial each other until their dials give up. Peer 2 is further from the hub than peer 1,
/// so peer 1 learns of peer 2 first and its first HELLOs arrive before peer 2 has sent any.
fn introduce_through_the_hub(net: &mut Swarm) {
    let far = Link {
        latency: Duration::from_millis(200),
        ..WAN
    };
    let hub = net.addr(0).ip();
    net.net.set_link(hub, ip("198.51.100.2"), far).unwrap();
    net.connect(1, 0);
    net.connect(2, 0);
    net.advance(Duration::from_secs(6));
}

fn knows(net: &mut Swarm, i: usize, j: usize) -> bool {
    let peer = net.id8(j);
    net.engine(i).peer(&peer).is_some()
}

#[test]
fn handshake_completes_through_20_percent_loss() {
    // A seed whose first HELLO (or its HELLO_ACK) is lost, so only the repeats can connect.
    let mut net = Swarm::empty(3);
    let lossy = Link {
        loss: 0.2,
        ..Link::PERFECT
    };
    net.net.set_default_link(lossy).unwrap();
    net.add_public(&EngineConfig::default());
    net.add_public(&EngineConfig::default());
    net.connect(0, 1);
    assert_eq!(net.engine(0).peer_count(), 0, "the first exchange was lost");
    // Enough for all the HELLOs of a dial.
    net.advance(DIAL_INTERVAL * u32::from(DIAL_HELLOS));
    assert_eq!(connected_to(&net.take_events(0)), vec![net.id8(1)]);
    assert_eq!(connected_to(&net.take_events(1)), vec![net.id8(0)]);
    assert_eq!(net.engine(0).stats().handshakes, 1);
    assert_eq!(net.engine(1).stats().handshakes, 1);
    assert!(net.net.counters().lost > 0);
}

#[test]
fn peers_behind_full_cone_nats_connect_by_dialling_each_other() {
    let mut net = behind_nats(NatConfig::FULL_CONE, NatConfig::FULL_CONE);
    // Full-cone NATs preserve the port: each peer's public endpoint is its NAT's IP and its
    // own port, which is what they dial.
    let (public1, public2) = (addr("198.51.100.1:4000"), addr("198.51.100.2:4000"));
    let now = net.now();
    assert!(net.engine(1).dial(now, public2));
    assert!(net.engine(2).dial(now, public1));
    net.settle();
    assert!(net.take_events(1).contains(&Event::Connected {
        peer: net.id8(2),
        addr: public2
    }));
    assert!(net.take_events(2).contains(&Event::Connected {
        peer: net.id8(1),
        addr: public1
    }));
    assert_eq!(net.engine(1).stats().handshakes, 1);
    assert_eq!(net.engine(2).stats().handshakes, 1);
}

#[test]
fn peers_behind_port_restricted_nats_punch_through_after_the_hub_introduces_them() {
    let mut net = behind_nats(
        NatConfig::PORT_RESTRICTED_CONE,
        NatConfig::PORT_RESTRICTED_CONE,
    );
    introduce_through_the_hub(&mut net);
    assert!(knows(&mut net, 1, 2) && knows(&mut net, 2, 1));
    assert_eq!(connected_to(&net.take_events(1)), [net.id8(0), net.id8(2)]);
    assert_eq!(connected_to(&net.take_events(2)), [net.id8(0), net.id8(1)]);
    assert!(
        net.net.counters().nat_filtered > 0,
        "peer 1's first HELLOs are filtered; peer 2's open the way"
    );
}

#[test]
fn symmetric_and_port_restricted_nats_get_no_direct_session() {
    let mut net = behind_nats(NatConfig::SYMMETRIC, NatConfig::PORT_RESTRICTED_CONE);
    introduce_through_the_hub(&mut net);
    // Each side's HELLOs reach the other's NAT from, or at, a port that NAT was never
    // opened for.
    assert!(!knows(&mut net, 1, 2) && !knows(&mut net, 2, 1));
    assert_eq!(connected_to(&net.take_events(1)), [net.id8(0)]);
    assert_eq!(connected_to(&net.take_events(2)), [net.id8(0)]);
    assert!(net.net.counters().nat_filtered >= 2 * u64::from(DIAL_HELLOS));
    // The hub still has both.
    assert_eq!(net.engine(0).peer_count(), 2);
}

/// A public hub (engine 0) and two peers, 1 and 2, behind one NAT (public IP 198.51.100.1,
/// private 192.168.1.2:4000 and 192.168.1.3:4000), which does not hairpin; `announced`
/// LAN addresses are noted at the hub, each as if announced from `from`.
fn behind_one_nat(from: &str, announced: bool) -> Swarm {
    let config = EngineConfig::default();
    let mut net = Swarm::empty(0);
    net.net.set_default_link(WAN).unwrap();
    net.add_public(&config);
    let nat = net
        .net
        .add_nat(ip("198.51.100.1"), NatConfig::PORT_RESTRICTED_CONE)
        .unwrap();
    net.add_behind(nat, addr("192.168.1.2:4000"), &config);
    net.add_behind(nat, addr("192.168.1.3:4000"), &config);
    if announced {
        let now = net.now();
        for i in [1, 2] {
            let (id8, lan) = (net.id8(i), net.addr(i));
            net.engine(0).lan_addrs.note(id8, ip(from), lan, now);
        }
    }
    net.connect(1, 0);
    net.connect(2, 0);
    net.advance(Duration::from_secs(6));
    net
}

#[test]
fn peers_behind_one_nat_are_introduced_at_their_lan_addresses() {
    let mut net = behind_one_nat("198.51.100.1", true);
    assert!(knows(&mut net, 1, 2) && knows(&mut net, 2, 1));
    let (lan1, lan2) = (net.addr(1), net.addr(2));
    assert!(net.take_events(1).contains(&Event::Connected {
        peer: net.id8(2),
        addr: lan2
    }));
    assert!(net.take_events(2).contains(&Event::Connected {
        peer: net.id8(1),
        addr: lan1
    }));
}

#[test]
fn peers_behind_one_nat_without_lan_addresses_do_not_meet() {
    // Introduced at their public addresses only: the NAT does not hairpin.
    let mut net = behind_one_nat("198.51.100.1", false);
    assert!(!knows(&mut net, 1, 2) && !knows(&mut net, 2, 1));
    assert!(net.net.counters().unroutable > 0);
}

#[test]
fn a_lan_address_announced_from_another_ip_is_not_given_out() {
    let mut net = behind_one_nat("198.51.100.9", true);
    assert!(!knows(&mut net, 1, 2) && !knows(&mut net, 2, 1));
}

#[test]
fn pings_keep_a_nat_mapping_and_the_session_through_it_alive() {
    let config = EngineConfig::default();
    let mut net = Swarm::empty(0);
    net.net.set_default_link(WAN).unwrap();
    net.add_public(&config);
    let nat = NatConfig {
        mapping_timeout: Duration::from_secs(5),
        ..NatConfig::PORT_RESTRICTED_CONE
    };
    let nat = net.net.add_nat(ip("198.51.100.1"), nat).unwrap();
    net.add_behind(nat, addr("192.168.1.2:4000"), &config);
    net.connect(1, 0);
    net.advance(Duration::from_secs(30));
    let inside = net.id8(1);
    net.engine(0).send(&inside, b"still there?").unwrap();
    net.settle();
    assert_eq!(
        data_from(&net.take_events(1)),
        [(net.id8(0), b"still there?".to_vec())]
    );
    assert_eq!(net.net.counters().nat_filtered, 0);
}

#[test]
fn reordered_data_is_delivered_in_order() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    net.take_events(1);
    let jittery = Link {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(20),
        ..Link::PERFECT
    };
    net.net.set_default_link(jittery).unwrap();
    let peer = net.id8(1);
    let sent: Vec<Vec<u8>> = (0..30u8).map(|i| vec![b'm', i]).collect();
    let mut held = 0;
    for payload in &sent {
        // One datagram each: what is queued for a peer at once leaves as one BATCH.
        net.engine(0).send(&peer, payload).unwrap();
        net.advance(Duration::from_millis(2));
        let holding = net.engine(1).peers.values().map(|p| p.jitter.held_len());
        held = held.max(holding.sum());
    }
    assert!(held > 0, "some DATA overtook other DATA and waited for it");
    net.advance(Duration::from_millis(100));
    let expected: Vec<_> = sent.into_iter().map(|p| (net.id8(0), p)).collect();
    assert_eq!(data_from(&net.take_events(1)), expected);
}

#[test]
fn duplicated_datagrams_are_dropped_as_replays() {
    let mut net = Swarm::new(2, EngineConfig::default());
    net.connect(0, 1);
    net.take_events(1);
    let doubling = Link {
        duplicate: 1.0,
        ..Link::PERFECT
    };
    net.net.set_default_link(doubling).unwrap();
    let peer = net.id8(1);
    for i in 0..10u8 {
        net.engine(0).send(&peer, &[b'd', i]).unwrap();
    }
    net.settle();
    assert_eq!(data_from(&net.take_events(1)).len(), 10);
    assert_eq!(net.engine(1).stats().drops(DropReason::Replay), 10);
}
