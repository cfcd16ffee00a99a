//! Token buckets: per source IP for traffic from addresses without a session (HELLO, PING,
//! DHT, STUN all cost the node work before anything is proven), and per session for peers.

mod prefix;
mod shared;

pub use prefix::{SourceGroup, SourceGrouping, DEFAULT_IPV6_PREFIX};
pub use shared::SharedIpLimiter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A rate in events per second with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f32,
    pub burst: f32,
}

/// Turns `Instant`s into nanoseconds since a fixed start, which buckets store and subtract in
/// an instruction or two (subtracting `Instant`s is a branchy library call). The last
/// conversion is remembered because a shard hands the same `now` to every datagram of a
/// batch, so most conversions are a comparison.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    at: Instant,
    nanos: u64,
}

impl Clock {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            at: start,
            nanos: 0,
        }
    }

    /// Nanoseconds from the start to `now`; 0 for instants before the start.
    pub fn nanos(&mut self, now: Instant) -> u64 {
        if now != self.at {
            self.at = now;
            // u64 nanoseconds last 584 years.
            self.nanos = now.saturating_duration_since(self.start).as_nanos() as u64;
        }
        self.nanos
    }
}

/// A token bucket; starts full. Times are [`Clock`] nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f32,
    last: u64,
}

impl TokenBucket {
    pub fn full(rate: Rate, now: u64) -> Self {
        Self {
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, rate: Rate, now: u64) -> bool {
        let elapsed = secs_since(self.last, now);
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// True when the bucket has refilled completely: it then holds no state worth keeping.
    fn is_idle(&self, rate: Rate, now: u64) -> bool {
        self.tokens + secs_since(self.last, now) * rate.per_second >= rate.burst
    }
}

/// Seconds from `last` to `now`, 0 when `now` is earlier, to f32 precision like the tokens.
fn secs_since(last: u64, now: u64) -> f32 {
    now.saturating_sub(last) as f32 / 1e9
}

/// One bucket per source IP in a bounded table. When the table is full of active sources,
/// newcomers share one overflow bucket, so a flood from many addresses is limited as a whole
/// instead of growing the table.
pub struct IpLimiter {
    rate: Rate,
    /// Keyed with a random seed (sources are chosen by whoever sends to us) and fast: this
    /// lookup happens for every datagram from an address without a session.
    buckets: HashMap<IpAddr, TokenBucket, ahash::RandomState>,
    capacity: usize,
    overflow: TokenBucket,
    clock: Clock,
}

impl IpLimiter {
    pub fn new(rate: Rate, capacity: usize, now: Instant) -> Self {
        Self {
            rate,
            buckets: HashMap::default(),
            capacity: capacity.max(1),
            overflow: TokenBucket::full(rate, 0),
            clock: Clock::new(now),
        }
    }

    // Runs for every datagram without a session: inlined into its caller, which spares a
    // call frame per datagram (measured).
    #[inline(always)]
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let now = self.clock.nanos(now);
        match self.buckets.get_mut(&ip) {
            Some(bucket) => bucket.allow(self.rate, now),
            None => self.allow_new(ip, now),
        }
    }

    /// [`IpLimiter::allow`] for a source without a bucket. Kept apart (and out of line) so
    /// that the lookup of a known source, which is most of them, stays a small function.
    #[inline(never)]
    fn allow_new(&mut self, ip: IpAddr, now: u64) -> bool {
        if self.buckets.len() >= self.capacity {
            self.sweep_at(now);
        }
        if self.buckets.len() >= self.capacity {
            return self.overflow.allow(self.rate, now);
        }
        let mut bucket = TokenBucket::full(self.rate, now);
        let allowed = bucket.allow(self.rate, now);
        self.buckets.insert(ip, bucket);
        allowed
    }

    /// Limits every source to `rate` from now on. The buckets are refilled to the new burst:
    /// a bucket holds tokens of the old rate, which do not carry over.
    pub fn set_rate(&mut self, rate: Rate) {
        self.rate = rate;
        self.buckets.clear();
        self.overflow = TokenBucket::full(rate, 0);
    }

    /// Forgets sources whose bucket has refilled: they behave like new ones.
    pub fn sweep(&mut self, now: Instant) {
        let now = self.clock.nanos(now);
        self.sweep_at(now);
    }

    fn sweep_at(&mut self, now: u64) {
        let rate = self.rate;
        self.buckets.retain(|_, b| !b.is_idle(rate, now));
    }

    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RATE: Rate = Rate {
        per_second: 10.0,
        burst: 20.0,
    };

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut clock = Clock::new(t0);
        let mut b = TokenBucket::full(RATE, clock.nanos(t0));
        assert_eq!(
            (0..25).filter(|_| b.allow(RATE, clock.nanos(t0))).count(),
            20
        );
        let t1 = clock.nanos(t0 + Duration::from_millis(500));
        assert_eq!((0..25).filter(|_| b.allow(RATE, t1)).count(), 5);
    }

    #[test]
    fn clock_counts_nanoseconds_from_its_start() {
        let t0 = Instant::now();
        let mut clock = Clock::new(t0);
        assert_eq!(clock.nanos(t0), 0);
        assert_eq!(clock.nanos(t0 + Duration::from_micros(1500)), 1_500_000);
        assert_eq!(clock.nanos(t0 + Duration::from_secs(3)), 3_000_000_000);
        // Earlier instants saturate, as `saturating_duration_since` does.
        if let Some(before) = t0.checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.nanos(before), 0);
        }
        assert_eq!(clock.nanos(t0 + Duration::from_secs(3)), 3_000_000_000);
    }

    #[test]
    fn limiter_is_per_ip_and_bounded() {
        let t0 = Instant::now();
        let mut l = IpLimiter::new(RATE, 4, t0);
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        assert_eq!((0..30).filter(|_| l.allow(ip(1), t0)).count(), 20);
        assert!(l.allow(ip(2), t0), "another source has its own bucket");
        for n in 3..=200 {
            l.allow(ip(n), t0);
        }
        assert!(l.tracked() <= 4);
        // Newcomers beyond the table share the overflow bucket.
        let overflow_allowed = (0..100)
            .filter(|n| l.allow(ip(201 + (n % 50) as u8), t0))
            .count();
        assert!(overflow_allowed <= 20, "{overflow_allowed}");
    }

    #[test]
    fn a_new_rate_applies_to_known_and_new_sources() {
        let t0 = Instant::now();
        let mut l = IpLimiter::new(RATE, 4, t0);
        let ip = |n: u8| IpAddr::from([127, 0, 0, n]);
        assert!(l.allow(ip(1), t0));
        l.set_rate(Rate {
            per_second: 1.0,
            burst: 2.0,
        });
        assert_eq!((0..10).filter(|_| l.allow(ip(1), t0)).count(), 2);
        assert_eq!((0..10).filter(|_| l.allow(ip(2), t0)).count(), 2);
    }

    #[test]
    fn idle_sources_are_swept() {
        let t0 = Instant::now();
        let mut l = IpLimiter::new(RATE, 4, t0);
        for n in 1..=4 {
            l.allow(IpAddr::from([127, 0, 0, n]), t0);
        }
        assert_eq!(l.tracked(), 4);
        l.sweep(t0 + Duration::from_secs(1));
        assert_eq!(l.tracked(), 0);
    }
}
