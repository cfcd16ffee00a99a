//! The JSON DHT on arbitrary bytes, one datagram per line from a few sources with time
//! passing between them: parsing never panics, `Dht::handle_datagram` reports a datagram
//! that does not parse as malformed with the same error, an unverified source address gets
//! at most `AMPLIFICATION_FACTOR` times the bytes it sent, and the requests in flight stay
//! within `max_pending`.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use setowire_core::dht::message::{Message, MessageRef};
use setowire_core::dht::rpc::AMPLIFICATION_FACTOR;
use setowire_core::dht::{Dht, DhtConfig, NodeId, Outcome};

const SOURCES: [&str; 3] = [
    "198.51.100.1:6881",
    "198.51.100.2:6881",
    "[2001:db8::3]:6881",
];

fuzz_target!(|input: &[u8]| {
    let mut now = Instant::now();
    let mut rng = StdRng::seed_from_u64(0);
    let id = NodeId::random(&mut rng);
    let mut dht = Dht::new(DhtConfig::default(), id, now, rng);
    // Lines make several datagrams of one input, so a STORE can meet a later FIND_VALUE.
    for (i, datagram) in input.split(|&b| b == b'\n').enumerate() {
        let src: SocketAddr = SOURCES[i % SOURCES.len()].parse().unwrap();
        let parsed = MessageRef::parse(datagram);
        assert_eq!(
            Message::parse(datagram),
            parsed.clone().map(MessageRef::into_owned)
        );
        let verified = dht.is_verified(src, now);
        let outcome = dht.handle_datagram(now, src, datagram);
        if let Err(e) = parsed {
            assert_eq!(outcome, Outcome::Malformed(e));
        }
        let mut to_src = 0;
        dht.drain_transmits(|dst, bytes| {
            if dst == src {
                to_src += bytes.len();
            }
        });
        if !verified {
            assert!(
                to_src <= AMPLIFICATION_FACTOR * datagram.len(),
                "{to_src} bytes sent for {} received",
                datagram.len()
            );
        }
        assert!(dht.pending_requests() <= dht.config().max_pending);
        now += Duration::from_millis(250);
        dht.handle_timeout(now);
        dht.drain_transmits(|_, _| {});
    }
});
