//! A per-source rate limit shared by every shard of a node without a lock.
//!
//! The kernel spreads one source's datagrams over the shards by port, so a limit kept per
//! shard is really N times the limit. This one is a fixed table of token buckets, each packed
//! into one atomic word and updated with compare-and-swap; a source group (see
//! [`SourceGrouping`]) maps to a slot through a randomly keyed hash. Its memory is fixed at
//! construction (8 bytes a slot), whatever the number of sources: two groups that share a slot
//! share a bucket, which with a random key an attacker cannot arrange, and which only ever
//! makes the limit stricter.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::prefix::SourceGrouping;
use super::Rate;

/// Bucket times are kept in milliseconds in 32 bits: they wrap after 49 days, and an elapsed
/// time that looks negative or enormous just refills the bucket.
const MILLIS_MASK: u64 = u32::MAX as u64;

pub struct SharedIpLimiter {
    rate: Rate,
    grouping: SourceGrouping,
    /// Each slot: the tokens as `f32` bits (high half) and the last update in milliseconds
    /// since `start`, plus one (low half). Zero means a full bucket at any time.
    slots: Box<[AtomicU64]>,
    hasher: ahash::RandomState,
    start: Instant,
}

impl SharedIpLimiter {
    /// A limiter with at least `slots` buckets (rounded up to a power of two).
    pub fn new(rate: Rate, grouping: SourceGrouping, slots: usize, start: Instant) -> Self {
        let slots = slots.max(1).next_power_of_two();
        Self {
            rate,
            grouping,
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            hasher: ahash::RandomState::new(),
            start,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Bytes the table takes.
    pub fn memory(&self) -> usize {
        self.slots.len() * std::mem::size_of::<AtomicU64>()
    }

    /// When the limiter's clock starts: [`SharedIpLimiter::allow_at`] takes milliseconds
    /// from here.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Takes `cost` tokens from the bucket of `ip`'s group if it has them.
    pub fn allow(&self, ip: IpAddr, now: Instant, cost: f32) -> bool {
        let millis = now.saturating_duration_since(self.start).as_millis() as u64;
        self.allow_at(ip, millis, cost)
    }

    /// [`SharedIpLimiter::allow`] at `millis` milliseconds after [`SharedIpLimiter::start`],
    /// for callers that keep that count already (subtracting `Instant`s costs a call).
    pub fn allow_at(&self, ip: IpAddr, millis: u64, cost: f32) -> bool {
        let group = self.grouping.group_of(ip);
        let index = self.hasher.hash_one(group) as usize & (self.slots.len() - 1);
        let slot = &self.slots[index];
        let now_ms = millis & MILLIS_MASK;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let tokens = self.tokens_at(current, now_ms);
            if tokens < cost {
                return false;
            }
            let next = pack(tokens - cost, now_ms);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// The tokens a packed bucket holds at `now_ms`.
    fn tokens_at(&self, packed: u64, now_ms: u64) -> f32 {
        if packed == 0 {
            return self.rate.burst;
        }
        let tokens = f32::from_bits((packed >> 32) as u32);
        let last = (packed & MILLIS_MASK).wrapping_sub(1);
        let elapsed = now_ms.wrapping_sub(last) & MILLIS_MASK;
        if elapsed > MILLIS_MASK / 2 {
            return self.rate.burst;
        }
        (tokens + elapsed as f32 / 1000.0 * self.rate.per_second).min(self.rate.burst)
    }
}

/// Times are stored plus one so that an empty bucket at millisecond 0 is not the zero that
/// means "never used" (after 49 days a bucket may read as full once: harmless).
fn pack(tokens: f32, now_ms: u64) -> u64 {
    (u64::from(tokens.to_bits()) << 32) | ((now_ms + 1) & MILLIS_MASK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    const RATE: Rate = Rate {
        per_second: 100.0,
        burst: 100.0,
    };

    fn limiter() -> SharedIpLimiter {
        SharedIpLimiter::new(RATE, SourceGrouping::default(), 1 << 12, Instant::now())
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate() {
        let l = limiter();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!((0..150).filter(|_| l.allow(ip, t0, 1.0)).count(), 100);
        let t1 = t0 + Duration::from_millis(200);
        assert_eq!((0..150).filter(|_| l.allow(ip, t1, 1.0)).count(), 20);
        // Another source has its own bucket.
        assert!(l.allow("192.0.2.8".parse().unwrap(), t1, 1.0));
    }

    #[test]
    fn costs_are_charged_in_full() {
        let l = limiter();
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!((0..10).filter(|_| l.allow(ip, t0, 30.0)).count(), 3);
    }

    #[test]
    fn an_ipv6_prefix_shares_one_bucket() {
        let l = limiter();
        let t0 = Instant::now();
        let allowed = (0..300u32)
            .filter(|n| {
                let ip: IpAddr = format!("2001:db8:0:1::{:x}", n + 1).parse().unwrap();
                l.allow(ip, t0, 1.0)
            })
            .count();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn shards_on_threads_share_the_limit() {
        let l = Arc::new(limiter());
        let t0 = Instant::now();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || (0..100).filter(|_| l.allow(ip, t0, 1.0)).count())
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn memory_is_fixed() {
        let l = limiter();
        let t0 = Instant::now();
        for n in 0..20_000u32 {
            l.allow(IpAddr::from(n.to_be_bytes()), t0, 1.0);
        }
        assert_eq!(l.memory(), (1 << 12) * 8);
    }
}
