//! Bandwidth caps on piped bodies: bytes per second for each IP taking part in a transfer
//! (its sender and its receiver) and for the node as a whole.
//!
//! Each cap is a token bucket of one second's worth of bytes. A transfer takes what it
//! passes on from every bucket it is under, into debt if need be, and then waits until the
//! deepest debt is paid back: a fast sender is slowed to the cap rather than cut off, and
//! the node never holds more than the frame in hand.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct BandwidthConfig {
    /// Bytes per second for one IP.
    pub per_ip: u64,
    /// Bytes per second for the node.
    pub total: u64,
    /// IPs tracked at once; the least recently active one is forgotten first.
    pub tracked_ips: usize,
}

/// One cap: up to a second's worth of bytes in hand, refilled at `rate` bytes per second.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Bytes that may pass now; negative: the debt to wait for.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u64, now: Instant) -> Self {
        Bucket {
            tokens: rate as f64,
            at: now,
        }
    }

    /// Takes `bytes`; returns how long to wait until the bucket is out of debt.
    fn take(&mut self, rate: u64, bytes: u64, now: Instant) -> Duration {
        let rate = rate.max(1) as f64;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate) - bytes as f64;
        self.at = now;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }
}

struct Buckets {
    total: Bucket,
    per_ip: LruCache<IpAddr, Bucket>,
}

pub(crate) struct Bandwidth {
    config: BandwidthConfig,
    buckets: Mutex<Buckets>,
}

impl Bandwidth {
    pub(crate) fn new(config: BandwidthConfig) -> Self {
        let tracked = NonZeroUsize::new(config.tracked_ips).unwrap_or(NonZeroUsize::MIN);
        Bandwidth {
            config,
            buckets: Mutex::new(Buckets {
                total: Bucket::full(config.total, Instant::now()),
                per_ip: LruCache::new(tracked),
            }),
        }
    }

    /// Charges `bytes` to the node and to each of `ips` (an IP named twice pays once);
    /// returns how long the transfer must pause before passing on more.
    pub(crate) fn charge(&self, ips: &[IpAddr], bytes: u64, now: Instant) -> Duration {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = buckets.total.take(self.config.total, bytes, now);
        for (i, ip) in ips.iter().enumerate() {
            if ips[..i].contains(ip) {
                continue;
            }
            let per_ip = self.config.per_ip;
            let bucket = buckets
                .per_ip
                .get_or_insert_mut(*ip, || Bucket::full(per_ip, now));
            wait = wait.max(bucket.take(per_ip, bytes, now));
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bandwidth(per_ip: u64, total: u64) -> Bandwidth {
        Bandwidth::new(BandwidthConfig {
            per_ip,
            total,
            tracked_ips: 16,
        })
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn a_second_of_bytes_passes_then_the_rate_holds() {
        let caps = bandwidth(1000, 1_000_000);
        let t0 = Instant::now();
        assert_eq!(caps.charge(&[A, B], 1000, t0), Duration::ZERO);
        // 500 bytes over: half a second of debt.
        assert_eq!(caps.charge(&[A], 500, t0), Duration::from_millis(500));
        // Half a second later the debt is paid; B had its own bucket, drained by the first.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(caps.charge(&[B], 0, t1), Duration::ZERO);
        assert_eq!(caps.charge(&[A], 250, t1), Duration::from_millis(250));
        // A sender that is also its receiver pays once.
        let c: IpAddr = "127.0.0.4".parse().unwrap();
        assert_eq!(caps.charge(&[c, c], 1000, t0), Duration::ZERO);
    }

    #[test]
    fn the_node_wide_cap_binds_every_ip() {
        let caps = bandwidth(1_000_000, 2000);
        let t0 = Instant::now();
        assert_eq!(caps.charge(&[A], 2000, t0), Duration::ZERO);
        assert_eq!(caps.charge(&[B], 1000, t0), Duration::from_millis(500));
        // Idle time refills at most a second's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(caps.charge(&[A], 2000, later), Duration::ZERO);
        assert_eq!(caps.charge(&[A], 2000, later), Duration::from_secs(1));
    }
}
