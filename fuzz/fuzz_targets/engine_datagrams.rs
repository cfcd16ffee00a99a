//! Two engines on a simulated network, connected, then driven by an arbitrary sequence of
//! operations: raw datagrams into either engine from the other's address or from strangers,
//! messages through the session, dials and the passage of time. Nothing may panic, the
//! network must stay able to make progress, and the peer tables stay within `max_peers`.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use setowire_core::proto::identity::Identity;
use setowire_core::simnet::{HostId, Link, SimConfig, SimNet};
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;

const MAX_PEERS: usize = 3;
/// Addresses that are not hosts: datagrams "from" them are injected, dials to them are lost.
const STRANGERS: [&str; 3] = ["10.0.0.9:4000", "10.0.0.10:4000", "[2001:db8::11]:4000"];

#[derive(Arbitrary, Debug)]
enum Op {
    /// A datagram into one engine; `from` picks the other engine's address or a stranger.
    Datagram {
        to_bob: bool,
        from: u8,
        bytes: Vec<u8>,
    },
    /// A message from one engine to the other through their session.
    Send {
        to_bob: bool,
        payload: Vec<u8>,
    },
    Broadcast {
        from_bob: bool,
        payload: Vec<u8>,
    },
    Dial {
        from_bob: bool,
        stranger: u8,
    },
    /// Lets the network run, in steps of 10 ms: arrivals, pings, PEX, dial retries.
    Advance {
        ticks: u8,
    },
}

fuzz_target!(|ops: Vec<Op>| {
    let start = Instant::now();
    // Small step bound: a run that never settles is a bug, and must not look like a hang.
    let config = SimConfig {
        max_steps: 100_000,
        ..SimConfig::default()
    };
    let mut net = SimNet::new(start, config);
    net.set_default_link(Link {
        latency: Duration::from_millis(5),
        ..Link::PERFECT
    })
    .unwrap();
    let alice = net
        .add_host("10.0.0.1:4000".parse().unwrap(), engine(1, start))
        .unwrap();
    let bob = net
        .add_host("10.0.0.2:4000".parse().unwrap(), engine(2, start))
        .unwrap();
    let now = net.now();
    let bob_addr = net.addr(bob);
    net.host_mut(alice).dial(now, bob_addr);
    net.settle().unwrap();
    assert_eq!(net.host(alice).peer_count(), 1, "the handshake completes");

    for op in ops {
        let now = net.now();
        match op {
            Op::Datagram {
                to_bob,
                from,
                bytes,
            } => {
                let (to, other) = pair(to_bob, alice, bob);
                let src = match usize::from(from) % (STRANGERS.len() + 1) {
                    0 => net.addr(other),
                    i => STRANGERS[i - 1].parse().unwrap(),
                };
                net.host_mut(to).handle_datagram(now, src, &bytes);
            }
            Op::Send { to_bob, payload } => {
                let (to, from) = pair(to_bob, alice, bob);
                let id = net.host(to).identity().id8();
                // Refused once the session is gone or the queue is full: both are fine here.
                let _ = net.host_mut(from).send(&id, &payload);
            }
            Op::Broadcast { from_bob, payload } => {
                net.host_mut(pair(from_bob, alice, bob).0)
                    .broadcast(&payload);
            }
            Op::Dial { from_bob, stranger } => {
                let addr: SocketAddr = STRANGERS[usize::from(stranger) % STRANGERS.len()]
                    .parse()
                    .unwrap();
                net.host_mut(pair(from_bob, alice, bob).0).dial(now, addr);
            }
            Op::Advance { ticks } => {
                net.run_for(Duration::from_millis(10) * u32::from(ticks))
                    .unwrap();
            }
        }
        net.run_for(Duration::ZERO).unwrap();
        for host in [alice, bob] {
            net.take_events(host);
            let engine = net.host(host);
            assert!(engine.peer_count() <= MAX_PEERS);
            assert_eq!(engine.peers().count(), engine.peer_count());
        }
    }
});

/// `(bob, alice)` when `bob_first`, else `(alice, bob)`.
fn pair(bob_first: bool, alice: HostId, bob: HostId) -> (HostId, HostId) {
    if bob_first {
        (bob, alice)
    } else {
        (alice, bob)
    }
}

/// An engine with small tables, so that the fuzzer can reach their limits.
fn engine(seed: u8, now: Instant) -> Engine {
    let config = EngineConfig {
        max_peers: MAX_PEERS,
        max_dials: 4,
        max_wanted: 16,
        max_message: 64 << 10,
        max_fragment_bytes: 256 << 10,
        seen_filter_bits: 1 << 12,
        out_queue_bytes: 256 << 10,
        max_events: 64,
        store_max_entries: 16,
        store_max_bytes: 64 << 10,
        store_max_value: 16 << 10,
        ..EngineConfig::default()
    };
    let identity = Identity::from_seed(&[seed; 4]);
    Engine::with_rng(
        identity,
        config,
        now,
        StdRng::seed_from_u64(u64::from(seed)),
    )
}
