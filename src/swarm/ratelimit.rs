//! Token buckets: per source IP for traffic from addresses without a session (HELLO, PING,
//! DHT, STUN all cost the node work before anything is proven), and per session for peers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// A rate in events per second with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f32,
    pub burst: f32,
}

/// A token bucket; starts full.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f32,
    last: Instant,
}

impl TokenBucket {
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
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
    fn is_idle(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f32();
        self.tokens + elapsed * rate.per_second >= rate.burst
    }
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
}

impl IpLimiter {
    pub fn new(rate: Rate, capacity: usize, now: Instant) -> Self {
        Self {
            rate,
            buckets: HashMap::default(),
            capacity: capacity.max(1),
            overflow: TokenBucket::full(rate, now),
        }
    }

    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            return bucket.allow(self.rate, now);
        }
        if self.buckets.len() >= self.capacity {
            self.sweep(now);
        }
        if self.buckets.len() >= self.capacity {
            return self.overflow.allow(self.rate, now);
        }
        let mut bucket = TokenBucket::full(self.rate, now);
        let allowed = bucket.allow(self.rate, now);
        self.buckets.insert(ip, bucket);
        allowed
    }

    /// Forgets sources whose bucket has refilled: they behave like new ones.
    pub fn sweep(&mut self, now: Instant) {
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
        let mut b = TokenBucket::full(RATE, t0);
        assert_eq!((0..25).filter(|_| b.allow(RATE, t0)).count(), 20);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| b.allow(RATE, t1)).count(), 5);
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
