//! `Frame::parse` on arbitrary bytes. Every frame it accepts is meant to round-trip: it
//! re-encodes to `encoded_len` bytes that parse to an equal frame (tests/frame_codec.rs), and
//! so do the datagrams nested in a BATCH.
#![no_main]

use libfuzzer_sys::fuzz_target;
use setowire_core::proto::frame::{classify, Frame};

/// BATCH frames inside BATCH frames are followed this deep; the parser itself never recurses.
const MAX_DEPTH: usize = 4;

fuzz_target!(|datagram: &[u8]| check(datagram, 0));

fn check(datagram: &[u8], depth: usize) {
    let _ = classify(datagram);
    let Ok(frame) = Frame::parse(datagram) else {
        return;
    };
    assert_eq!(frame.kind().type_byte(), datagram[0]);
    let encoded = frame.to_vec().expect("a parsed frame re-encodes");
    assert_eq!(encoded.len(), frame.encoded_len());
    assert_eq!(Frame::parse(&encoded), Ok(frame));
    if let Frame::Batch(list) = frame {
        if depth < MAX_DEPTH {
            list.datagrams().for_each(|inner| check(inner, depth + 1));
        }
    }
}
