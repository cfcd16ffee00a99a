//! De-duplication of flooded DATA payloads.
//!
//! Every node re-floods what it receives to its mesh, so the same payload reaches a node along
//! several paths. A payload is recognised by py-setowire's 64-bit content hash and remembered in
//! a Bloom filter of two generations: the current one takes inserts, the previous one is still
//! consulted, and they rotate on a timer. One filter serves all the shards of a node, without
//! a lock; memory is fixed at construction and nothing is allocated after it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Two Bloom generations of five minutes each, as py-setowire rotates its filter.
pub const ROTATE_EVERY: Duration = Duration::from_secs(300);

/// Bit positions set per hash; py-setowire uses 5 as well.
const PROBES: u32 = 5;
/// Smallest generation, in bits.
const MIN_BITS: usize = 1024;

/// A two-generation Bloom filter of content hashes, shared by every shard of a node.
///
/// Exactly once across shards: the kernel spreads a node's peers over its shards, so one
/// payload can reach two shards from two peers at the same moment. The filter is blocked —
/// all of a hash's bits sit in one 64-bit word — so recording a hash is one `fetch_or`, and
/// of two shards racing on the same hash exactly one sees a bit it set itself and delivers.
///
/// A hash counts as seen while it is in either generation, so it is remembered for at least
/// `rotate_every` and at most twice that. Besides the timer, a generation is also rotated early
/// once it holds `bits / 16` hashes: past that its false-positive rate climbs quickly, and a
/// saturated filter would call every new payload a duplicate — a flood of unique payloads must
/// only shorten the memory, never silence the node. At `bits / 16` (four hashes per word on
/// average) a full generation answers about 0.2 % of new hashes as seen.
#[derive(Debug)]
pub struct SeenFilter {
    generations: [Box<[AtomicU64]>; 2],
    /// Which generation takes inserts (0 or 1); the other one is only consulted.
    current: AtomicUsize,
    /// `words - 1`; the word count is a power of two.
    word_mask: u64,
    inserted: AtomicUsize,
    max_inserted: usize,
    /// Held by the one caller clearing a generation.
    rotating: AtomicBool,
    /// Milliseconds since `start` of the last rotation.
    rotated_at: AtomicU64,
    rotate_every: u64,
    start: Instant,
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
        let generation = || (0..words).map(|_| AtomicU64::new(0)).collect();
        Self {
            generations: [generation(), generation()],
            current: AtomicUsize::new(0),
            word_mask: words as u64 - 1,
            inserted: AtomicUsize::new(0),
            max_inserted: bits / 16,
            rotating: AtomicBool::new(false),
            rotated_at: AtomicU64::new(0),
            rotate_every: millis(rotate_every),
            start: now,
        }
    }

    /// True when `hash` was (probably) seen before; otherwise records it and returns false.
    /// Of concurrent callers with the same new hash, exactly one gets false.
    pub fn check_and_insert(&self, now: Instant, hash: u64) -> bool {
        let now_ms = millis(now.saturating_duration_since(self.start));
        self.rotate_if_due(now_ms);
        let (word, bits) = self.place(hash);
        let current = self.current.load(Ordering::Acquire);
        let previous = &self.generations[current ^ 1][word];
        if previous.load(Ordering::Relaxed) & bits == bits {
            return true;
        }
        let before = self.generations[current][word].fetch_or(bits, Ordering::AcqRel);
        if before & bits == bits {
            return true;
        }
        if self.inserted.fetch_add(1, Ordering::Relaxed) + 1 >= self.max_inserted {
            self.rotate(now_ms, false);
        }
        false
    }

    /// Bytes the filter takes (fixed at construction).
    pub fn memory(&self) -> usize {
        2 * self.generations[0].len() * std::mem::size_of::<AtomicU64>()
    }

    /// The word a hash lives in and its bits there, from a mixed copy of it: the content
    /// hash's two FNV lanes are weak in their low bits for short inputs.
    fn place(&self, hash: u64) -> (usize, u64) {
        let mixed = mix64(hash);
        let word = ((mixed >> 32) & self.word_mask) as usize;
        let bits = (0..PROBES).fold(0u64, |bits, i| bits | 1 << ((mixed >> (6 * i)) & 63));
        (word, bits)
    }

    fn rotate_if_due(&self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.rotated_at.load(Ordering::Relaxed));
        if elapsed < self.rotate_every {
            return;
        }
        // Both generations older than the window: forget everything.
        let forget_all = elapsed >= self.rotate_every.saturating_mul(2);
        self.rotate(now_ms, forget_all);
    }

    /// Clears the older generation and makes it the current one; one caller at a time, the
    /// others go on with the generations as they are. Inserts racing with the clear land in
    /// the generation that stays, so nothing just recorded is lost.
    fn rotate(&self, now_ms: u64, forget_all: bool) {
        if self
            .rotating
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let current = self.current.load(Ordering::Acquire);
        let older = current ^ 1;
        clear(&self.generations[older]);
        if forget_all {
            clear(&self.generations[current]);
        }
        self.current.store(older, Ordering::Release);
        self.inserted.store(0, Ordering::Relaxed);
        self.rotated_at.store(now_ms, Ordering::Relaxed);
        self.rotating.store(false, Ordering::Release);
    }
}

fn clear(words: &[AtomicU64]) {
    for w in words {
        w.store(0, Ordering::Relaxed);
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The SplitMix64 finaliser.
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
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
        assert_eq!(f.memory(), 2 * 1024 / 8);
        let f = SeenFilter::new(5000, Duration::from_secs(1), now);
        assert_eq!(f.word_mask + 1, 8192 / 64);
        assert_eq!(f.memory(), 2 * 8192 / 8);
    }

    #[test]
    fn second_sighting_is_a_duplicate() {
        let now = Instant::now();
        let f = SeenFilter::new(1 << 16, Duration::from_secs(300), now);
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
        let f = SeenFilter::new(1 << 16, period, t0);
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
        let f = SeenFilter::new(1 << 12, period, t0);
        let h = 42;
        assert!(!f.check_and_insert(t0 + period - Duration::from_millis(1), h));
        assert!(!f.check_and_insert(t0 + period * 3, h));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let f = SeenFilter::new(1 << 12, Duration::from_secs(10), t0);
        assert!(!f.check_and_insert(t0 - Duration::from_secs(50), 7));
        assert!(f.check_and_insert(t0 - Duration::from_secs(60), 7));
    }

    #[test]
    fn false_positive_rate_stays_low_under_a_flood() {
        let now = Instant::now();
        let bits = 1 << 16;
        let f = SeenFilter::new(bits, Duration::from_secs(3600), now);
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
    fn a_hash_sets_up_to_five_bits_of_one_word() {
        let f = SeenFilter::new(1 << 20, Duration::from_secs(1), Instant::now());
        for h in [0, u64::MAX, 0x8000_0000_0000_0000, 12345] {
            let (word, bits) = f.place(h);
            assert!(word as u64 <= f.word_mask);
            assert!((1..=PROBES).contains(&bits.count_ones()));
        }
    }

    /// Shards racing on the same payloads: each one is new to exactly one of them.
    #[test]
    fn concurrent_inserts_deliver_each_hash_once() {
        let now = Instant::now();
        let f = SeenFilter::new(1 << 20, Duration::from_secs(300), now);
        let n = 20_000u64;
        let threads = 4;
        let firsts: Vec<Vec<u64>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let f = &f;
                    scope.spawn(move || {
                        // Each thread walks the hashes from a different starting point.
                        (0..n)
                            .map(|i| (i + t * n / threads) % n)
                            .filter(|i| !f.check_and_insert(now, content_hash(&i.to_le_bytes())))
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = firsts.into_iter().flatten().collect();
        let firsts = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), firsts, "a hash was new to two threads");
        // The rest are false positives of the filter, well under 1 %.
        assert!(firsts as u64 * 100 > n * 99, "{firsts} of {n}");
    }
}
