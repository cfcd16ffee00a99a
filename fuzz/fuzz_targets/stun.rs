//! `stun::answer` on arbitrary bytes: never panics, an answer fits the buffer it was written
//! to, and it is never more than three times the request (a forged source must not make the
//! node an amplifier).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use setowire_core::discovery::stun::{answer, MAX_RESPONSE};

fuzz_target!(|request: &[u8]| {
    // Both families: the XOR-MAPPED-ADDRESS of an IPv6 source is longer.
    let sources: [SocketAddr; 2] = [
        "198.51.100.7:40000".parse().unwrap(),
        "[2001:db8::1]:5".parse().unwrap(),
    ];
    for src in sources {
        let mut out = [0u8; MAX_RESPONSE];
        if let Ok(Some(n)) = answer(request, src, &mut out) {
            assert!(n <= MAX_RESPONSE);
            assert!(n <= 3 * request.len(), "{n} B answer to {} B", request.len());
        }
    }
});
