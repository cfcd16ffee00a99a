//! De-duplication of flooded DATA payloads.
//!
//! Every node re-floods what it receives to its mesh, so the same payload reaches a node along
//! several paths. A payload is recognised by py-setowire's 64-bit content hash and remembered in
//! a Bloom filter of two generations: the current one takes inserts, the previous one is still
//! consulted, and they rotate on a timer. Memory is fixed at construction and nothing is
//! allocated after it.

use std::time::{Duration, Instant};

const FNV_OFFSET: u32 = 0x811C_9DC5;
const FNV_PRIME: u32 = 0x0100_0193;

/// py-setowire's 64-bit content hash: two FNV-1a-32 lanes, `a` over the bytes at even indices
/// and `b` over those at odd indices, returned as `(a << 32) | b`.
///
/// Its 16-digit lowercase hex form is py-setowire's `xor_hash` string, and its big-endian bytes
/// are what IHAVE frames carry, so it must match bit for bit.
pub fn content_hash(payload: &[u8]) -> u64 {
    let mut a = FNV_OFFSET;
    let mut b = FNV_OFFSET;
    let mut pairs = payload.chunks_exact(2);
    for pair in &mut pairs {
        a = (a ^ u32::from(pair[0])).wrapping_mul(FNV_PRIME);
        b = (b ^ u32::from(pair[1])).wrapping_mul(FNV_PRIME);
    }
    if let [last] = pairs.remainder() {
        a = (a ^ u32::from(*last)).wrapping_mul(FNV_PRIME);
    }
    (u64::from(a) << 32) | u64::from(b)
}

/// Bit positions set per hash; py-setowire uses 5 as well.
const PROBES: u64 = 5;
/// Smallest generation, in bits.
const MIN_BITS: usize = 1024;

/// A two-generation Bloom filter of content hashes.
///
/// A hash counts as seen while it is in either generation, so it is remembered for at least
/// `rotate_every` and at most twice that. Besides the timer, a generation is also rotated early
/// once it holds `bits / 16` hashes: past that its false-positive rate climbs quickly, and a
/// saturated filter would call every new payload a duplicate — a flood of unique payloads must
/// only shorten the memory, never silence the node. At `bits / 16` the rate of a full generation
/// is about 0.15 % (about 0.3 % across both).
#[derive(Debug, Clone)]
pub struct SeenFilter {
    current: Vec<u64>,
    previous: Vec<u64>,
    /// `bits - 1`; `bits` is a power of two.
    mask: u64,
    inserted: usize,
    max_inserted: usize,
    rotate_every: Duration,
    rotated_at: Instant,
}

impl SeenFilter {
    /// A filter whose generations hold `bits_per_generation` bits each (rounded up to a power
    /// of two, at least 1024). py-setowire rotates every 5 minutes.
    pub fn new(bits_per_generation: usize, rotate_every: Duration, now: Instant) -> Self {
        let bits = bits_per_generation
            .max(MIN_BITS)
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        let words = bits / 64;
        Self {
            current: vec![0; words],
            previous: vec![0; words],
            mask: bits as u64 - 1,
            inserted: 0,
            max_inserted: bits / 16,
            rotate_every,
            rotated_at: now,
        }
    }

    /// True when `hash` was (probably) seen before; otherwise records it and returns false.
    pub fn check_and_insert(&mut self, now: Instant, hash: u64) -> bool {
        self.rotate_if_due(now);
        let probes = Probes::new(hash, self.mask);
        if probes.clone().all(|bit| test(&self.current, bit))
            || probes.clone().all(|bit| test(&self.previous, bit))
        {
            return true;
        }
        for bit in probes {
            set(&mut self.current, bit);
        }
        self.inserted += 1;
        if self.inserted >= self.max_inserted {
            self.rotate(now);
        }
        false
    }

    fn rotate_if_due(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.rotated_at);
        if elapsed < self.rotate_every {
            return;
        }
        if elapsed >= self.rotate_every.saturating_mul(2) {
            // Both generations are older than the window: forget everything.
            self.previous.fill(0);
            self.current.fill(0);
            self.inserted = 0;
            self.rotated_at = now;
        } else {
            self.rotate(now);
        }
    }

    fn rotate(&mut self, now: Instant) {
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.fill(0);
        self.inserted = 0;
        self.rotated_at = now;
    }
}

/// Bit indices of one hash by double hashing (Kirsch–Mitzenmacher) over a mixed copy of it.
///
/// The content hash is mixed first because its two FNV lanes are weak in their low bits for
/// short inputs, and the masks below take exactly the low bits.
#[derive(Clone)]
struct Probes {
    h1: u64,
    h2: u64,
    i: u64,
    mask: u64,
}

impl Probes {
    fn new(hash: u64, mask: u64) -> Self {
        let mixed = mix64(hash);
        Self {
            h1: mixed,
            h2: mixed.rotate_left(32) | 1,
            i: 0,
            mask,
        }
    }
}

impl Iterator for Probes {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.i == PROBES {
            return None;
        }
        let bit = self.h1.wrapping_add(self.i.wrapping_mul(self.h2)) & self.mask;
        self.i += 1;
        Some(bit)
    }
}

/// The SplitMix64 finaliser.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn test(words: &[u64], bit: u64) -> bool {
    words
        .get((bit / 64) as usize)
        .is_some_and(|w| w & (1 << (bit % 64)) != 0)
}

fn set(words: &mut [u64], bit: u64) {
    if let Some(w) = words.get_mut((bit / 64) as usize) {
        *w |= 1 << (bit % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values were produced by py-setowire 0.1.0's `framing.xor_hash` under
    /// CPython 3.11 (its hex string, parsed as a u64).
    #[test]
    fn content_hash_matches_py_setowire() {
        let zeros = [0u8; 1200];
        let ramp: Vec<u8> = (0..=255).collect();
        let cases: [(&[u8], u64); 7] = [
            (b"", 0x811c9dc5811c9dc5),
            (b"a", 0xe40c292c811c9dc5),
            (b"ab", 0xe40c292ce70c2de5),
            (b"hello world", 0x50394e51775fb6ef),
            (&ramp, 0xdb140ac5b90c57c5),
            (&zeros, 0x2a4f29a52a4f29a5),
            (br#"{"_gossip": true}"#, 0xb09ed78767f25599),
        ];
        for (input, expected) in cases {
            assert_eq!(
                content_hash(input),
                expected,
                "input of {} bytes",
                input.len()
            );
        }
    }

    #[test]
    fn hex_form_is_the_python_string() {
        assert_eq!(
            format!("{:016x}", content_hash(b"hello world")),
            "50394e51775fb6ef"
        );
        assert_eq!(
            content_hash(b"a").to_be_bytes()[..4],
            [0xe4, 0x0c, 0x29, 0x2c]
        );
    }

    #[test]
    fn sizes_round_up_to_a_power_of_two() {
        let now = Instant::now();
        let f = SeenFilter::new(0, Duration::from_secs(1), now);
        assert_eq!(f.mask + 1, 1024);
        let f = SeenFilter::new(5000, Duration::from_secs(1), now);
        assert_eq!(f.mask + 1, 8192);
        assert_eq!(f.current.len(), 128);
    }

    #[test]
    fn second_sighting_is_a_duplicate() {
        let now = Instant::now();
        let mut f = SeenFilter::new(1 << 16, Duration::from_secs(300), now);
        let h = content_hash(b"payload");
        assert!(!f.check_and_insert(now, h));
        assert!(f.check_and_insert(now, h));
        assert!(f.check_and_insert(now + Duration::from_secs(1), h));
        assert!(!f.check_and_insert(now, content_hash(b"other")));
    }

    #[test]
    fn remembered_for_one_rotation_then_forgotten() {
        let t0 = Instant::now();
        let period = Duration::from_secs(300);
        let mut f = SeenFilter::new(1 << 16, period, t0);
        let h = 0x0123_4567_89ab_cdef;
        assert!(!f.check_and_insert(t0, h));
        // After one rotation it sits in the previous generation: still seen.
        assert!(f.check_and_insert(t0 + period, h));
        // After the second rotation it is gone.
        assert!(!f.check_and_insert(t0 + period * 2, h));
        assert!(f.check_and_insert(t0 + period * 2, h));
    }

    #[test]
    fn a_long_silence_forgets_both_generations() {
        let t0 = Instant::now();
        let period = Duration::from_secs(10);
        let mut f = SeenFilter::new(1 << 12, period, t0);
        let h = 42;
        assert!(!f.check_and_insert(t0 + period - Duration::from_millis(1), h));
        assert!(!f.check_and_insert(t0 + period * 3, h));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut f = SeenFilter::new(1 << 12, Duration::from_secs(10), t0);
        assert!(!f.check_and_insert(t0 - Duration::from_secs(50), 7));
        assert!(f.check_and_insert(t0 - Duration::from_secs(60), 7));
    }

    #[test]
    fn false_positive_rate_stays_low_under_a_flood() {
        let now = Instant::now();
        let bits = 1 << 16;
        let mut f = SeenFilter::new(bits, Duration::from_secs(3600), now);
        // Ten times the early-rotation threshold of unique hashes.
        let n = bits / 16 * 10;
        let mut false_positives = 0;
        for i in 0..n as u64 {
            if f.check_and_insert(now, content_hash(&i.to_le_bytes())) {
                false_positives += 1;
            }
        }
        // Expected ~0.3 %; allow 1 %.
        assert!(false_positives * 100 < n, "{false_positives} of {n}");
        // Recent hashes are still remembered.
        assert!(f.check_and_insert(now, content_hash(&(n as u64 - 1).to_le_bytes())));
    }

    #[test]
    fn probes_stay_in_range() {
        for mask in [1023u64, (1 << 20) - 1] {
            for h in [0, u64::MAX, 0x8000_0000_0000_0000, 12345] {
                let probes: Vec<u64> = Probes::new(h, mask).collect();
                assert_eq!(probes.len(), PROBES as usize);
                assert!(probes.iter().all(|&b| b <= mask));
            }
        }
    }
}
