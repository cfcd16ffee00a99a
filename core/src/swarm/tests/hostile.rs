//! An attacker on the simulated network: forged sources, forged control frames, floods of
//! handshakes and fragments. What the hub (engine 0) and the peers it introduces send toward
//! a forged address must stay within three times what was sent from it, and a live session
//! must not be hurt by frames anyone can forge from its address.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{data_from, Swarm};
use crate::proto::frame::{encode_batch, Endpoint, Fragment, Frame, Handshake, PexEntry};
use crate::proto::identity::Identity;
use crate::swarm::config::EngineConfig;
use crate::swarm::stats::DropReason;

/// The forged source: an address no host has, which the attacker wants flooded.
fn victim() -> SocketAddr {
    "198.51.100.7:5000".parse().unwrap()
}

fn hello(identity: &Identity) -> Vec<u8> {
    Frame::Hello(Handshake {
        id8: identity.id8(),
        public_key: *identity.public_key(),
    })
    .to_vec()
    .unwrap()
}

fn ping(identity: &Identity) -> Vec<u8> {
    Frame::Ping {
        timestamp_ms: 1,
        id: *identity.id(),
    }
    .to_vec()
    .unwrap()
}

/// A hub with `peers` engines connected to it, the victim's IP watched.
fn hub_with_peers(peers: usize, config: EngineConfig) -> Swarm {
    let mut net = Swarm::new(1 + peers, config);
    for i in 1..=peers {
        net.connect(i, 0);
    }
    net.advance(Duration::from_secs(2));
    net.net.watch(victim().ip());
    net
}

/// Sends `bytes` to the hub as if from `src`; returns how many bytes that was.
fn forge(net: &mut Swarm, src: SocketAddr, bytes: Vec<u8>) -> u64 {
    let len = bytes.len() as u64;
    let hub = net.addr(0);
    net.net.inject(src, hub, bytes);
    len
}

/// A forged session from the victim's address, kept alive with a forged PING a second (as
/// an attacker would), for `secs` seconds; `extra` is forged once after the HELLO. Returns
/// (bytes forged, bytes sent toward the victim) at 10 s and at the end.
fn forged_session(net: &mut Swarm, secs: u64, extra: Option<Vec<u8>>) -> Vec<(u64, u64)> {
    let attacker = Identity::from_seed(b"attacker");
    let mut forged = forge(net, victim(), hello(&attacker));
    net.advance(Duration::from_millis(100));
    if let Some(extra) = extra {
        forged += forge(net, victim(), extra);
    }
    let mut marks = Vec::new();
    for second in 1..=secs {
        net.advance(Duration::from_secs(1));
        forged += forge(net, victim(), ping(&attacker));
        if second == 10 || second == secs {
            net.advance(Duration::from_millis(500));
            marks.push((forged, net.net.bytes_sent_to(victim().ip())));
        }
    }
    marks
}

fn assert_within_three_times(marks: &[(u64, u64)], what: &str) {
    for &(forged, reflected) in marks {
        eprintln!(
            "{what}: {forged} B forged, {reflected} B toward the victim ({:.2}x)",
            reflected as f64 / forged as f64
        );
        assert!(
            reflected <= 3 * forged,
            "{what}: {reflected} > 3 x {forged}"
        );
    }
}

fn long_keys_config() -> EngineConfig {
    EngineConfig {
        store_max_value: 1 << 20,
        ..EngineConfig::default()
    }
}

#[test]
fn a_forged_hello_reflects_at_most_three_times() {
    let mut net = hub_with_peers(
        4,
        EngineConfig {
            gossip_fanout: 0,
            ..long_keys_config()
        },
    );
    // 64 long keys make the HAVE summary a newcomer is owed 16 KB.
    for n in 0..64 {
        let key = format!("{n:03}{}", "k".repeat(250));
        net.engine(0).store(&key, vec![n; 10]);
    }
    net.settle();
    let marks = forged_session(&mut net, 60, None);
    assert_within_three_times(&marks, "HELLO + PINGs");
    assert!(net.engine(0).stats().drops(DropReason::AddressBudget) > 0);
}

#[test]
fn a_forged_want_of_a_large_value_reflects_at_most_three_times() {
    let mut net = hub_with_peers(2, long_keys_config());
    net.engine(0).store("big", vec![7; 1 << 20]);
    net.settle();
    let want = Frame::Want { key: "big" }.to_vec().unwrap();
    let marks = forged_session(&mut net, 12, Some(want));
    assert_within_three_times(&marks, "HELLO + WANT 1 MiB");
}

#[test]
fn relay_requests_need_a_session_and_pay_for_what_they_cause() {
    let mut net = hub_with_peers(2, EngineConfig::default());
    let attacker = Identity::from_seed(b"attacker");
    let request = |to| {
        Frame::RelayReq {
            from: attacker.id8(),
            to,
            endpoint: Endpoint {
                ip: "198.51.100.7",
                port: 5000,
            },
        }
        .to_vec()
        .unwrap()
    };
    let target = net.id8(1);
    let mut forged = 0;
    for _ in 0..20 {
        forged += forge(&mut net, victim(), request(target));
    }
    net.advance(Duration::from_secs(3));
    assert_eq!(
        net.net.bytes_sent_to(victim().ip()),
        0,
        "no session, no answer"
    );
    forged += forge(&mut net, victim(), hello(&attacker));
    for _ in 0..20 {
        forged += forge(&mut net, victim(), request(target));
        net.advance(Duration::from_millis(100));
    }
    net.advance(Duration::from_secs(3));
    assert_within_three_times(
        &[(forged, net.net.bytes_sent_to(victim().ip()))],
        "RELAY_REQ",
    );
}

#[test]
fn pex_naming_victims_costs_the_one_who_sent_it() {
    let mut net = hub_with_peers(2, EngineConfig::default());
    let attacker_addr = net.addr(2);
    let ports: Vec<u16> = (6000..6016).collect();
    let ids: Vec<[u8; 8]> = (0..16u8).map(|n| [0xee, n, 1, 2, 3, 4, 5, 6]).collect();
    let mut forged = 0;
    for _ in 0..10 {
        let entries = ids.iter().zip(&ports).map(|(id, port)| PexEntry {
            id,
            endpoint: Endpoint {
                ip: "198.51.100.7",
                port: *port,
            },
        });
        let mut buf = vec![0; 2048];
        let len = crate::proto::frame::encode_pex(entries, &mut buf).unwrap();
        buf.truncate(len);
        forged += forge(&mut net, attacker_addr, buf);
        net.advance(Duration::from_secs(1));
    }
    net.advance(Duration::from_secs(3));
    // The attacker's session paid its handshake and PINGs too, but count only the PEX.
    let reflected = net.net.bytes_sent_to(victim().ip());
    assert_within_three_times(&[(forged, reflected)], "PEX naming the victim");
}

#[test]
fn a_forged_goaway_does_not_end_a_session_that_keeps_talking() {
    let mut net = hub_with_peers(1, EngineConfig::default());
    let peer_addr = net.addr(1);
    forge(&mut net, peer_addr, vec![0x0a, 0x00]);
    net.advance(Duration::from_secs(10));
    assert_eq!(net.engine(0).peer_count(), 1);
    let peer = net.id8(1);
    net.take_events(1);
    net.engine(0).send(&peer, b"still here").unwrap();
    net.settle();
    assert_eq!(data_from(&net.take_events(1)).len(), 1);
}

#[test]
fn a_hello_with_a_new_key_does_not_replace_a_live_session() {
    let mut net = hub_with_peers(2, EngineConfig::default());
    let (peer_addr, peer) = (net.addr(1), net.id8(1));
    forge(&mut net, peer_addr, hello(&Identity::from_seed(b"usurper")));
    // Another session's key from this address is refused too.
    let other = Identity::from_seed(&[3; 4]);
    forge(&mut net, peer_addr, hello(&other));
    net.advance(Duration::from_secs(5));
    assert!(net.engine(0).peer(&peer).is_some(), "the session survives");
    assert_eq!(net.engine(0).peer_count(), 2);
    assert_eq!(net.engine(0).stats().drops(DropReason::KeyChangeRefused), 2);
    net.take_events(1);
    net.engine(0).send(&peer, b"to the real one").unwrap();
    net.settle();
    assert_eq!(data_from(&net.take_events(1)).len(), 1);
}

/// PONGs naming another identity from a live peer's address (what a restarted peer would
/// send) neither keep it alive nor cost it its session while it keeps talking.
#[test]
fn pongs_naming_another_identity_do_not_replace_a_live_session() {
    let mut net = hub_with_peers(1, EngineConfig::default());
    let (peer_addr, peer) = (net.addr(1), net.id8(1));
    let usurper = Identity::from_seed(b"usurper");
    let pong = Frame::Pong { id: *usurper.id() }.to_vec().unwrap();
    for _ in 0..10 {
        forge(&mut net, peer_addr, pong.clone());
        net.advance(Duration::from_secs(1));
    }
    assert!(net.engine(0).peer(&peer).is_some(), "the session survives");
    assert_eq!(net.engine(0).peer_count(), 1);
    net.take_events(1);
    net.engine(0).send(&peer, b"to the real one").unwrap();
    net.settle();
    assert_eq!(data_from(&net.take_events(1)).len(), 1);
}

#[test]
fn a_batch_of_hellos_opens_one_session_and_handshakes_are_rate_limited_per_ip() {
    let config = EngineConfig::default();
    let burst = config.handshake_rate.burst as u64;
    let mut net = hub_with_peers(0, config);
    // 47 HELLOs with fresh keys in one BATCH: one address, so one session; the others are
    // key changes of a session that is talking, refused before any Diffie-Hellman.
    let hellos: Vec<Vec<u8>> = (0..47u8)
        .map(|n| hello(&Identity::from_seed(&[n, 9, 9, 9])))
        .collect();
    let mut buf = vec![0; 4096];
    let len = encode_batch(hellos.iter().map(Vec::as_slice), &mut buf).unwrap();
    buf.truncate(len);
    forge(&mut net, "203.0.113.5:7000".parse().unwrap(), buf);
    net.settle();
    assert_eq!(net.engine(0).stats().handshakes, 1);
    assert_eq!(
        net.engine(0).stats().drops(DropReason::KeyChangeRefused),
        46
    );
    // 600 HELLOs from 600 ports of one IP within a second: the burst, and no more.
    for port in 0..600u16 {
        let identity = Identity::from_seed(&port.to_be_bytes());
        let src = SocketAddr::new("203.0.113.6".parse().unwrap(), 10_000 + port);
        forge(&mut net, src, hello(&identity));
    }
    net.settle();
    let stats = net.engine(0).stats();
    eprintln!(
        "600 HELLOs from one IP: {} sessions, {} over the rate",
        stats.handshakes - 1,
        stats.drops(DropReason::HandshakeRate)
    );
    assert!(stats.handshakes - 1 <= burst + 2, "{}", stats.handshakes);
    assert!(stats.drops(DropReason::HandshakeRate) >= 600 - burst - 2);
}

#[test]
fn a_full_table_of_forged_idle_sessions_makes_room_for_newcomers() {
    let config = EngineConfig {
        max_peers: 10,
        gossip_fanout: 0,
        ..EngineConfig::default()
    };
    let mut net = Swarm::new(4, config);
    let forgers: Vec<(Identity, SocketAddr)> = (0..10u8)
        .map(|n| {
            let addr = SocketAddr::new(IpAddr::from([203, 0, 113, n + 1]), 7000);
            (Identity::from_seed(&[n, 7, 7, 7]), addr)
        })
        .collect();
    for (identity, addr) in &forgers {
        forge(&mut net, *addr, hello(identity));
    }
    // Kept alive with forged PINGs, they never carry application data.
    for _ in 0..12 {
        for (identity, addr) in &forgers {
            forge(&mut net, *addr, ping(identity));
        }
        net.advance(Duration::from_secs(1));
    }
    assert_eq!(net.engine(0).peer_count(), 10);
    for newcomer in 1..=3 {
        net.connect(newcomer, 0);
        let id = net.id8(newcomer);
        assert!(
            net.engine(0).peer(&id).is_some(),
            "newcomer {newcomer} got in"
        );
    }
    assert_eq!(net.engine(0).peer_count(), 10);
    assert_eq!(net.engine(0).stats().peers_displaced, 3);
}

#[test]
fn reassembly_memory_counts_slot_tables_and_is_capped() {
    let cap = 256 << 10;
    let config = EngineConfig {
        max_fragment_bytes: cap,
        ..EngineConfig::default()
    };
    let mut net = hub_with_peers(0, config);
    for n in 0..200u16 {
        let identity = Identity::from_seed(&n.to_be_bytes());
        let src = SocketAddr::new(IpAddr::from([10, 1, (n >> 8) as u8, n as u8]), 7000);
        forge(&mut net, src, hello(&identity));
        for frag in 0..8u8 {
            let fragment = Frame::Frag(Fragment {
                frag_id: [frag; 8],
                index: 0,
                total: 256,
                piece: b"x",
            });
            forge(&mut net, src, fragment.to_vec().unwrap());
        }
    }
    net.settle();
    let engine = net.engine(0);
    let held = engine.limits().reassembly_memory();
    eprintln!("1 600 one-byte FRAGs of 256-piece values: {held} B held, cap {cap}");
    assert!(held <= cap);
    assert!(engine.stats().drops(DropReason::ReassemblyMemory) > 0);
}

#[test]
fn an_honest_peer_fetches_a_large_value_within_its_credit() {
    let mut net = Swarm::new(2, long_keys_config());
    net.engine(0).store("large", vec![5; 200 << 10]);
    net.settle();
    net.connect(1, 0);
    let now = net.now();
    net.engine(1).fetch(now, "large");
    net.advance(Duration::from_secs(3));
    let fetched = net.take_events(1).into_iter().any(|e| {
        matches!(e, crate::swarm::event::Event::Fetched { ref key, ref value }
            if key == "large" && value.len() == 200 << 10)
    });
    assert!(fetched, "200 KiB fetched within 3 s");
    assert!(net.engine(0).stats().credit_probes > 0);
}
