//! The shard's demultiplexer in-process: DHT JSON and STUN are taken off the port, answered
//! and counted; Setowire frames are left to the engine; both services are rate-limited per
//! source IP with the engine's unauthenticated-traffic budget.

use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use setowire_core::dht::{Dht, DhtConfig, NodeId};
use setowire_core::proto::identity::Identity;
use setowire_core::ratelimit::Rate;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::stats::DropReason;
use setowire_node::discovery::dht::{Demux, SharedDht};
use setowire_node::io::{BackendKind, DatagramIo, IoStats};

/// Collects what the demultiplexer hands to the socket.
#[derive(Default)]
struct Sent(Vec<(SocketAddr, Vec<u8>)>);

impl DatagramIo for Sent {
    fn kind(&self) -> BackendKind {
        BackendKind::Mmsg
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok("127.0.0.1:1".parse().unwrap())
    }
    fn recv_batch(
        &mut self,
        _: std::time::Duration,
        _: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> std::io::Result<usize> {
        Ok(0)
    }
    fn queue_send(&mut self, dst: SocketAddr, data: &[u8]) {
        self.0.push((dst, data.to_vec()));
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
}

fn setup(rate: Rate) -> (Engine, Demux, std::sync::Arc<SharedDht>, Instant) {
    let now = Instant::now();
    let config = EngineConfig {
        unauth_rate: rate,
        ..EngineConfig::default()
    };
    let engine = Engine::new(Identity::generate(), config, now);
    let mut rng = StdRng::seed_from_u64(1);
    let dht = Dht::new(DhtConfig::default(), NodeId::random(&mut rng), now, rng);
    let shared = SharedDht::new(dht, now);
    let demux = Demux::new(std::sync::Arc::clone(&shared), true);
    (engine, demux, shared, now)
}

fn stun_request(tx: u8) -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    m.extend([tx; 12]);
    m
}

const GENEROUS: Rate = Rate {
    per_second: 1e9,
    burst: 1e9,
};

#[test]
fn dht_and_stun_are_answered_and_setowire_is_left_to_the_engine() {
    let (mut engine, mut demux, shared, now) = setup(GENEROUS);
    let src: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let ping =
        br#"{"type": 1, "from": "0101010101010101010101010101010101010101", "rpcId": "01020304"}"#;
    assert!(demux.take(&mut engine, now, src, ping));
    assert!(demux.take(&mut engine, now, src, &stun_request(9)));
    // A Setowire PING (0x03) and a datagram starting with 0x00 without the cookie.
    assert!(!demux.take(&mut engine, now, src, &[0x03; 29]));
    assert!(!demux.take(&mut engine, now, src, &[0x00; 24]));
    let mut io = Sent::default();
    demux.flush(&mut io);
    // PONG and our PING back for the DHT, one Binding response for STUN.
    assert_eq!(io.0.len(), 3, "{:?}", io.0);
    assert!(io.0.iter().all(|(dst, _)| *dst == src));
    assert_eq!(io.0.iter().filter(|(_, d)| d[0] == b'{').count(), 2);
    let stun = &io.0.iter().find(|(_, d)| d[0] == 0x01).unwrap().1;
    assert_eq!(&stun[..2], &[0x01, 0x01]);
    assert_eq!(&stun[8..20], &[9; 12]);
    assert_eq!(engine.stats().stun_responses, 1);
    assert_eq!(shared.lock().stats().pings, 1);
}

#[test]
fn malformed_dht_and_stun_are_counted_drops() {
    let (mut engine, mut demux, shared, now) = setup(GENEROUS);
    let src: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..2000 {
        let len = rng.gen_range(1..2048);
        let mut d: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        d[0] = b'{';
        assert!(demux.take(&mut engine, now, src, &d));
    }
    for len in 20..200 {
        let mut d = stun_request(1);
        d.resize(len, 0xEE);
        // Length field says 0 or a lie: never a valid message unless the length is exact.
        assert!(demux.take(&mut engine, now, src, &d));
    }
    let mut io = Sent::default();
    demux.flush(&mut io);
    assert_eq!(engine.stats().drops(DropReason::Dht), 2000);
    assert_eq!(engine.stats().drops(DropReason::Stun), 179);
    assert_eq!(engine.stats().stun_responses, 1);
    assert_eq!(io.0.len(), 1);
    let dht = shared.lock();
    assert_eq!(dht.stats().malformed + dht.stats().too_large, 2000);
    assert!(dht.table().is_empty() && dht.storage().is_empty());
}

#[test]
fn both_services_share_the_per_ip_budget() {
    let rate = Rate {
        per_second: 1.0,
        burst: 10.0,
    };
    let (mut engine, mut demux, _shared, now) = setup(rate);
    let src: SocketAddr = "192.0.2.7:5000".parse().unwrap();
    let ping =
        br#"{"type": 1, "rpcId": "01020304", "from": "0101010101010101010101010101010101010101"}"#;
    for i in 0..100u8 {
        if i % 2 == 0 {
            demux.take(&mut engine, now, src, ping);
        } else {
            demux.take(&mut engine, now, src, &stun_request(i));
        }
    }
    assert_eq!(engine.stats().drops(DropReason::RateLimited), 90);
    // Another source has its own budget.
    let other: SocketAddr = "192.0.2.8:5000".parse().unwrap();
    demux.take(&mut engine, now, other, &stun_request(1));
    assert_eq!(engine.stats().drops(DropReason::RateLimited), 90);
}
