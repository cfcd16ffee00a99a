use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::*;

/// A host that reports what it receives, sends what it is told to, and can echo.
#[derive(Default)]
struct Probe {
    outbox: Vec<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Seen>,
    wake_at: Option<Instant>,
    /// Sends every datagram back where it came from.
    echo: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Datagram {
        at: Instant,
        src: SocketAddr,
        bytes: Vec<u8>,
    },
    Woke(Instant),
}

impl Probe {
    fn echo() -> Self {
        Self {
            echo: true,
            ..Self::default()
        }
    }

    fn send(&mut self, dst: SocketAddr, bytes: &[u8]) {
        self.outbox.push((dst, bytes.to_vec()));
    }
}

impl SimHost for Probe {
    type Event = Seen;

    fn handle_datagram(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) {
        if self.echo {
            self.send(src, datagram);
        }
        self.events.push_back(Seen::Datagram {
            at: now,
            src,
            bytes: datagram.to_vec(),
        });
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.wake_at = None;
        self.events.push_back(Seen::Woke(now));
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.wake_at
    }

    fn drain_transmits(&mut self, sink: &mut dyn FnMut(SocketAddr, &[u8])) {
        for (dst, bytes) in self.outbox.drain(..) {
            sink(dst, &bytes);
        }
    }

    fn poll_event(&mut self) -> Option<Seen> {
        self.events.pop_front()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(seed: u64) -> SimNet<Probe> {
    SimNet::new(
        Instant::now(),
        SimConfig {
            seed,
            ..SimConfig::default()
        },
    )
}

/// Two public probes, A at 10.0.0.1:1 and B at 10.0.0.2:1, and a default link.
fn pair(seed: u64, link: Link) -> (SimNet<Probe>, HostId, HostId) {
    let mut net = net(seed);
    net.set_default_link(link).unwrap();
    let a = net.add_host(addr("10.0.0.1:1"), Probe::default()).unwrap();
    let b = net.add_host(addr("10.0.0.2:1"), Probe::default()).unwrap();
    (net, a, b)
}

/// Sends `count` numbered datagrams from `from` to `to` at once.
fn burst(net: &mut SimNet<Probe>, from: HostId, to: HostId, count: u16) {
    let dst = net.addr(to);
    for i in 0..count {
        net.host_mut(from).send(dst, &i.to_be_bytes());
    }
}

/// The numbers of the datagrams the host received, in arrival order.
fn received(net: &mut SimNet<Probe>, id: HostId) -> Vec<u16> {
    net.take_events(id)
        .into_iter()
        .filter_map(|e| match e {
            Seen::Datagram { bytes, .. } => Some(u16::from_be_bytes(bytes[..2].try_into().ok()?)),
            Seen::Woke(_) => None,
        })
        .collect()
}

/// Where each datagram the host received came from.
fn sources(net: &mut SimNet<Probe>, id: HostId) -> Vec<SocketAddr> {
    net.take_events(id)
        .into_iter()
        .filter_map(|e| match e {
            Seen::Datagram { src, .. } => Some(src),
            Seen::Woke(_) => None,
        })
        .collect()
}

/// Every datagram sent, and every duplicate, is in exactly one outcome.
fn assert_accounted(counters: Counters) {
    let outcomes = counters.delivered
        + counters.lost
        + counters.nat_filtered
        + counters.nat_ports_exhausted
        + counters.unroutable
        + counters.wire_full
        + counters.in_flight;
    assert_eq!(
        counters.sent + counters.duplicated,
        outcomes,
        "{counters:?}"
    );
}

// ---- links ---------------------------------------------------------------------------

#[test]
fn loss_drops_the_configured_share_and_repeats_exactly_with_the_seed() {
    let run = |seed| {
        let lossy = Link {
            loss: 0.2,
            ..Link::PERFECT
        };
        let (mut net, a, b) = pair(seed, lossy);
        burst(&mut net, a, b, 10_000);
        net.settle().unwrap();
        assert_eq!(received(&mut net, b).len() as u64, net.counters().delivered);
        net.counters()
    };
    let counters = run(1);
    assert_accounted(counters);
    assert_eq!(counters.sent, 10_000);
    assert_eq!(counters.delivered + counters.lost, 10_000);
    assert_eq!(counters.lost, 1977);
    assert_eq!(run(1), counters, "same seed, same run");
    assert_ne!(run(2).lost, counters.lost, "another seed, other losses");
}

#[test]
fn latency_and_jitter_delay_delivery_on_the_virtual_clock() {
    let link = Link {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        ..Link::PERFECT
    };
    let (mut net, a, b) = pair(1, link);
    let start = net.now();
    burst(&mut net, a, b, 100);
    net.run_for(Duration::from_millis(29)).unwrap();
    assert!(
        received(&mut net, b).is_empty(),
        "nothing before the latency"
    );
    assert_eq!(net.counters().in_flight, 100);
    assert_accounted(net.counters());
    net.run_for(Duration::from_millis(11)).unwrap();
    let arrivals: Vec<Duration> = net
        .take_events(b)
        .into_iter()
        .map(|e| match e {
            Seen::Datagram { at, .. } => at - start,
            Seen::Woke(_) => unreachable!("the probe set no timeout"),
        })
        .collect();
    assert_eq!(arrivals.len(), 100);
    assert!(arrivals
        .iter()
        .all(|at| (Duration::from_millis(30)..=Duration::from_millis(40)).contains(at)));
    assert!(arrivals.windows(2).all(|w| w[0] <= w[1]), "in time order");
    assert_eq!(net.elapsed(), Duration::from_millis(40));
}

#[test]
fn settle_stops_the_clock_at_the_last_arrival() {
    let link = Link {
        latency: Duration::from_millis(25),
        ..Link::PERFECT
    };
    let (mut net, a, b) = pair(1, link);
    *net.host_mut(b) = Probe::echo();
    burst(&mut net, a, b, 1);
    net.settle().unwrap();
    assert_eq!(net.elapsed(), Duration::from_millis(50), "there and back");
    assert_eq!(received(&mut net, a), [0]);
}

#[test]
fn jitter_reorders_and_a_steady_link_does_not() {
    let jittery = Link {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(10),
        ..Link::PERFECT
    };
    let steady = Link {
        latency: Duration::from_millis(20),
        ..Link::PERFECT
    };
    for (link, reordered) in [(jittery, true), (steady, false)] {
        let (mut net, a, b) = pair(1, link);
        burst(&mut net, a, b, 50);
        net.settle().unwrap();
        let order = received(&mut net, b);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<u16>>(), "all arrive");
        assert_eq!(order != sorted, reordered, "{link:?}");
    }
}

#[test]
fn duplication_delivers_extra_copies() {
    let always = Link {
        duplicate: 1.0,
        ..Link::PERFECT
    };
    let (mut net, a, b) = pair(1, always);
    burst(&mut net, a, b, 10);
    net.settle().unwrap();
    let mut order = received(&mut net, b);
    order.sort_unstable();
    let twice: Vec<u16> = (0..10).flat_map(|i| [i, i]).collect();
    assert_eq!(order, twice);
    assert_eq!(net.counters().duplicated, 10);

    let sometimes = Link {
        duplicate: 0.3,
        ..Link::PERFECT
    };
    let (mut net, a, b) = pair(1, sometimes);
    burst(&mut net, a, b, 1000);
    net.settle().unwrap();
    let counters = net.counters();
    assert_eq!(counters.duplicated, 301);
    assert_eq!(counters.delivered, 1000 + counters.duplicated);
    assert_accounted(counters);
}

#[test]
fn a_link_set_for_a_pair_overrides_the_default_both_ways() {
    let (mut net, a, b) = pair(1, Link::PERFECT);
    let c = net.add_host(addr("10.0.0.3:1"), Probe::default()).unwrap();
    let dead = Link {
        loss: 1.0,
        ..Link::PERFECT
    };
    net.set_link(ip("10.0.0.2"), ip("10.0.0.1"), dead).unwrap();
    burst(&mut net, a, b, 5);
    burst(&mut net, b, a, 5);
    burst(&mut net, a, c, 5);
    net.settle().unwrap();
    assert_eq!(net.counters().lost, 10);
    assert_eq!(received(&mut net, c).len(), 5);
    let bad = Link {
        duplicate: 2.0,
        ..Link::PERFECT
    };
    assert_eq!(
        net.set_link(ip("10.0.0.1"), ip("10.0.0.3"), bad),
        Err(SimError::InvalidProbability(2.0))
    );
}

// ---- time and bounds -----------------------------------------------------------------

#[test]
fn timeouts_fire_at_their_deadline_and_run_until_reaches_its_deadline() {
    let (mut net, a, _) = pair(1, Link::PERFECT);
    let wake = net.now() + Duration::from_millis(1234);
    net.host_mut(a).wake_at = Some(wake);
    net.run_for(Duration::from_secs(5)).unwrap();
    assert_eq!(net.take_events(a), [Seen::Woke(wake)]);
    assert_eq!(net.elapsed(), Duration::from_secs(5));
}

#[test]
fn settle_takes_a_timeout_due_now_but_none_later() {
    let (mut net, a, b) = pair(1, Link::PERFECT);
    let now = net.now();
    net.host_mut(a).wake_at = Some(now);
    net.host_mut(b).wake_at = Some(now + Duration::from_millis(1));
    net.settle().unwrap();
    assert_eq!(
        net.take_events(a),
        [Seen::Woke(now)],
        "nothing was in flight"
    );
    assert!(net.take_events(b).is_empty());
    assert_eq!(net.elapsed(), Duration::ZERO);
}

#[test]
fn settle_gives_up_after_the_step_bound() {
    let mut net = SimNet::new(
        Instant::now(),
        SimConfig {
            max_steps: 100,
            ..SimConfig::default()
        },
    );
    let a = net.add_host(addr("10.0.0.1:1"), Probe::echo()).unwrap();
    let b = net.add_host(addr("10.0.0.2:1"), Probe::echo()).unwrap();
    burst(&mut net, a, b, 1);
    assert_eq!(net.settle(), Err(SimError::StepLimit(100)));
    assert_eq!(net.counters().delivered, 100);
}

#[test]
fn datagrams_in_flight_and_events_kept_are_capped() {
    let mut net = SimNet::new(
        Instant::now(),
        SimConfig {
            max_in_flight: 4,
            max_events_per_host: 3,
            ..SimConfig::default()
        },
    );
    let a = net.add_host(addr("10.0.0.1:1"), Probe::default()).unwrap();
    let b = net.add_host(addr("10.0.0.2:1"), Probe::default()).unwrap();
    burst(&mut net, a, b, 10);
    net.settle().unwrap();
    let counters = net.counters();
    assert_eq!((counters.wire_full, counters.delivered), (6, 4));
    assert_accounted(counters);
    assert_eq!(received(&mut net, b), [0, 1, 2]);
    assert_eq!(net.counters().events_dropped, 1);
}

// ---- topology ------------------------------------------------------------------------

#[test]
fn addresses_are_unique_and_removed_hosts_are_unreachable() {
    let (mut net, a, b) = pair(1, Link::PERFECT);
    assert_eq!(
        net.add_host(addr("10.0.0.1:1"), Probe::default()).err(),
        Some(SimError::AddressInUse(addr("10.0.0.1:1")))
    );
    assert_eq!(
        net.add_nat(ip("10.0.0.2"), NatConfig::FULL_CONE).err(),
        Some(SimError::IpInUse(ip("10.0.0.2")))
    );
    net.add_nat(ip("198.51.100.1"), NatConfig::FULL_CONE)
        .unwrap();
    assert_eq!(
        net.add_host(addr("198.51.100.1:1"), Probe::default()).err(),
        Some(SimError::IpInUse(ip("198.51.100.1")))
    );
    burst(&mut net, a, b, 1);
    assert!(net.remove_host(b).is_some());
    assert!(net.remove_host(b).is_none());
    net.settle().unwrap();
    assert_eq!(net.counters().unroutable, 1);
}

// ---- NATs ----------------------------------------------------------------------------

/// A host behind a NAT of `config`, and three public hosts: a server it contacts, a second
/// socket on the server's IP, and a third party elsewhere.
struct NatScene {
    net: SimNet<Probe>,
    inside: HostId,
    server: HostId,
    server_other_port: HostId,
    third_party: HostId,
}

impl NatScene {
    fn new(config: NatConfig) -> Self {
        let mut net = net(1);
        let nat = net.add_nat(ip("198.51.100.1"), config).unwrap();
        let inside = net
            .add_host_behind(nat, addr("192.168.1.2:4000"), Probe::default())
            .unwrap();
        let server = net
            .add_host(addr("203.0.113.1:1000"), Probe::echo())
            .unwrap();
        let server_other_port = net
            .add_host(addr("203.0.113.1:2000"), Probe::default())
            .unwrap();
        let third_party = net
            .add_host(addr("203.0.113.2:1000"), Probe::default())
            .unwrap();
        NatScene {
            net,
            inside,
            server,
            server_other_port,
            third_party,
        }
    }

    /// The inside host contacts `to`; returns the public endpoint `to` saw it from.
    fn contact(&mut self, to: HostId) -> SocketAddr {
        burst(&mut self.net, self.inside, to, 1);
        self.net.settle().unwrap();
        *sources(&mut self.net, to)
            .last()
            .expect("the datagram arrived")
    }

    /// Whether a datagram from `from` to `external` reaches the inside host.
    fn gets_in(&mut self, from: HostId, external: SocketAddr) -> bool {
        self.net.take_events(self.inside);
        self.net.host_mut(from).send(external, &[0, 0]);
        self.net.settle().unwrap();
        !received(&mut self.net, self.inside).is_empty()
    }
}

#[test]
fn nothing_gets_in_before_the_inside_host_sends() {
    let mut scene = NatScene::new(NatConfig::FULL_CONE);
    assert!(!scene.gets_in(scene.third_party, addr("198.51.100.1:4000")));
    assert_eq!(scene.net.counters().nat_filtered, 1);
}

#[test]
fn a_full_cone_nat_lets_a_third_party_in_after_one_outbound_datagram() {
    let mut scene = NatScene::new(NatConfig::FULL_CONE);
    let external = scene.contact(scene.server);
    assert_eq!(external, addr("198.51.100.1:4000"), "port preserved");
    assert_eq!(
        received(&mut scene.net, scene.inside),
        [0],
        "the echo came back"
    );
    assert!(scene.gets_in(scene.third_party, external));
    assert!(scene.gets_in(scene.server_other_port, external));
}

#[test]
fn a_restricted_cone_nat_lets_in_only_the_ip_contacted() {
    let mut scene = NatScene::new(NatConfig::RESTRICTED_CONE);
    let external = scene.contact(scene.server);
    assert!(scene.gets_in(scene.server_other_port, external));
    assert!(!scene.gets_in(scene.third_party, external));
}

#[test]
fn a_port_restricted_cone_nat_lets_in_only_the_endpoint_contacted() {
    let mut scene = NatScene::new(NatConfig::PORT_RESTRICTED_CONE);
    let external = scene.contact(scene.server);
    assert!(scene.gets_in(scene.server, external));
    assert!(!scene.gets_in(scene.server_other_port, external));
    assert!(!scene.gets_in(scene.third_party, external));
    assert_eq!(scene.net.counters().nat_filtered, 2);
    // The same external port is used for every destination.
    assert_eq!(scene.contact(scene.third_party), external);
}

#[test]
fn a_symmetric_nat_maps_each_destination_to_its_own_port() {
    let mut scene = NatScene::new(NatConfig::SYMMETRIC);
    let to_server = scene.contact(scene.server);
    let to_other_port = scene.contact(scene.server_other_port);
    let to_third_party = scene.contact(scene.third_party);
    assert_eq!(to_server.ip(), ip("198.51.100.1"));
    assert_ne!(to_server.port(), 4000, "ports are random");
    assert_ne!(to_server, to_other_port);
    assert_ne!(to_server, to_third_party);
    assert_ne!(to_other_port, to_third_party);
    // Each mapping lets in only the endpoint it was made for.
    assert!(!scene.gets_in(scene.third_party, to_server));
    assert!(scene.gets_in(scene.third_party, to_third_party));
    assert_accounted(scene.net.counters());
}

#[test]
fn an_idle_mapping_expires_and_outbound_traffic_keeps_one_alive() {
    let timeout = Duration::from_secs(30);
    let mut scene = NatScene::new(NatConfig {
        mapping_timeout: timeout,
        ..NatConfig::PORT_RESTRICTED_CONE
    });
    let external = scene.contact(scene.server);
    scene.net.run_for(timeout - Duration::from_secs(1)).unwrap();
    assert!(scene.gets_in(scene.server, external), "still mapped");
    scene.net.run_for(Duration::from_secs(1)).unwrap();
    assert!(!scene.gets_in(scene.server, external), "expired");
    // Sending again maps the port anew (preserved) and refreshes it.
    for _ in 0..3 {
        assert_eq!(scene.contact(scene.server), external);
        scene.net.run_for(timeout - Duration::from_secs(1)).unwrap();
    }
    assert!(scene.gets_in(scene.server, external));
}

#[test]
fn hosts_behind_one_nat_talk_directly_but_are_unreachable_from_outside() {
    let mut net = net(1);
    let nat = net
        .add_nat(ip("198.51.100.1"), NatConfig::FULL_CONE)
        .unwrap();
    let a = net
        .add_host_behind(nat, addr("192.168.1.2:4000"), Probe::default())
        .unwrap();
    let b = net
        .add_host_behind(nat, addr("192.168.1.3:4000"), Probe::default())
        .unwrap();
    let outside = net
        .add_host(addr("203.0.113.1:1000"), Probe::default())
        .unwrap();
    burst(&mut net, a, b, 1);
    net.settle().unwrap();
    assert_eq!(sources(&mut net, b), [addr("192.168.1.2:4000")]);
    // A private address is not routed from outside, nor is the NAT's own public address
    // from inside (no hairpinning).
    burst(&mut net, outside, b, 1);
    net.host_mut(a).send(addr("198.51.100.1:4000"), &[0, 0]);
    net.settle().unwrap();
    assert_eq!(net.counters().unroutable, 2);
    assert!(received(&mut net, b).is_empty());
    assert_accounted(net.counters());
}
