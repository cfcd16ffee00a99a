//! Interop test harness: drives real py-setowire 0.1.0 peers (and our own node,
//! which speaks the same JSON-lines control protocol) as subprocesses, each test
//! inside its own network namespace when running as root.
//!
//! Include it from an integration test with `mod support;`.
//!
//! * [`venv`]: provisions `target/interop-venv` with `py-setowire==0.1.0` from PyPI.
//! * [`net::TestNet`]: a fresh network namespace (root) or the host loopback.
//! * [`process::LineProcess`]: a child speaking JSON lines (commands in, events out).
//! * [`peer::ControlPeer`] / [`peer::PyPeer`]: typed helpers on top of it.
//!
//! Not every test binary uses every helper, hence the one crate-wide allow below.
#![allow(dead_code)]

/// Generates `io_uring::NAME` and `mmsg::NAME` tests calling `NAME(backend)` for each NAME,
/// so a suite runs the same on both I/O backends.
#[allow(unused_macros)] // not every test binary runs on the node
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod io_uring {
            $(#[test]
            fn $name() {
                super::$name("io_uring")
            })*
        }
        mod mmsg {
            $(#[test]
            fn $name() {
                super::$name("mmsg")
            })*
        }
    };
}

pub mod dht;
pub mod docker;
pub mod nat_lab;
pub mod net;
pub mod peer;
pub mod process;
pub mod venv;

use std::time::Duration;

/// Default bound for waiting on a single event.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Deterministic pseudo-random bytes (xorshift64*), distinct per `seed`.
///
/// py-setowire drops a payload whose content it has already delivered (Bloom
/// filter, 5 min), so every payload a test sends should be distinct.
pub fn pattern_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Decodes the hex string held in `ev[field]`, failing the test if it is absent.
#[track_caller]
pub fn ev_hex(ev: &serde_json::Value, field: &str) -> Vec<u8> {
    let s = ev
        .get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("event has no string field {field:?}: {ev}"));
    hex::decode(s).unwrap_or_else(|e| panic!("field {field:?} is not hex ({e}): {ev}"))
}

/// `ev["event"] == name`.
pub fn is_event(ev: &serde_json::Value, name: &str) -> bool {
    ev.get("event").and_then(|v| v.as_str()) == Some(name)
}
