//! What a hostile test measures, how it reports the figure and how it checks the target.
//!
//! Every test prints one line `hostile | <attack> | <figure> | target <target> | pass/FAIL`
//! on stderr (`cargo test --test hostile -- --nocapture` shows them all). With
//! `HOSTILE_MEASURE_ONLY=1` a test only prints its line and never fails on its target,
//! so the figures of every attack, defended or not, can be taken in one run:
//!
//! ```text
//! HOSTILE_MEASURE_ONLY=1 cargo test -p setowire-node --test hostile -- \
//!     --include-ignored --nocapture 2>&1 | grep '^hostile |'
//! ```

use std::fmt;

/// Datagrams and UDP payload bytes (the IP and UDP headers are left out on both sides).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub datagrams: u64,
    pub bytes: u64,
}

impl Traffic {
    pub fn add(&mut self, bytes: usize) {
        self.datagrams += 1;
        self.bytes += bytes as u64;
    }

    /// What was sent after `earlier` was taken (a one-time setup left out).
    pub fn since(&self, earlier: Traffic) -> Traffic {
        Traffic {
            datagrams: self.datagrams - earlier.datagrams,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

impl std::ops::AddAssign for Traffic {
    fn add_assign(&mut self, other: Traffic) {
        self.datagrams += other.datagrams;
        self.bytes += other.bytes;
    }
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} B in {} datagrams", self.bytes, self.datagrams)
    }
}

/// True when the run only takes figures (`HOSTILE_MEASURE_ONLY=1`).
pub fn measure_only() -> bool {
    // Not SETOWIRE_*: the node takes those as config keys and refuses unknown ones.
    std::env::var("HOSTILE_MEASURE_ONLY").is_ok_and(|v| v == "1")
}

/// Prints the test's table line and, unless only measuring, fails the test when `ok` is false.
#[track_caller]
pub fn verdict(attack: &str, figure: &str, target: &str, ok: bool) {
    let mark = if ok { "pass" } else { "FAIL" };
    eprintln!("hostile | {attack} | {figure} | target {target} | {mark}");
    if !ok && !measure_only() {
        panic!("{attack}: {figure}, but the target is {target}");
    }
}

/// Bytes that reached the victim against the bytes the attacker sent for them.
pub struct Amplification {
    pub attacker: Traffic,
    pub victim: Traffic,
    /// Where the victim's bytes came from, e.g. "node 541 B, peers 1312 B".
    pub breakdown: String,
}

impl Amplification {
    pub fn ratio(&self) -> f64 {
        self.victim.bytes as f64 / self.attacker.bytes.max(1) as f64
    }

    /// Reports the figure and checks it against `max`×.
    #[track_caller]
    pub fn at_most(&self, attack: &str, max: f64) {
        assert!(
            self.attacker.bytes > 0,
            "{attack}: the attacker sent nothing, so nothing was measured"
        );
        let figure = format!(
            "attacker sent {} → victim got {} ({}) = {:.1}×",
            self.attacker,
            self.victim,
            self.breakdown,
            self.ratio()
        );
        verdict(attack, &figure, &format!("≤ {max}×"), self.ratio() <= max);
    }
}
