//! The `POST /announce` body parser on arbitrary bytes, with and without the source check:
//! never panics, and what it accepts is well-formed.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use setowire_node::http::bootstrap::parse_announcement;

fuzz_target!(|body: &[u8]| {
    let source: IpAddr = "203.0.113.9".parse().unwrap();
    for check_source in [false, true] {
        if let Ok(a) = parse_announcement(body, source, check_source) {
            assert_eq!(a.id.len(), 40);
            assert!(a.id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
            assert_ne!(a.addr.port(), 0);
        }
    }
});
