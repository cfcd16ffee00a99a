//! Values stored at this node by others: each expires after a TTL, and together they are
//! capped in bytes and in entries per source IP.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::id::NodeId;

/// Keyed by key hashes and IPs that others choose: ahash with random keys.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Bytes charged per entry beyond its value: the key, bookkeeping and the table slot.
pub const ENTRY_OVERHEAD: usize = 96;
/// A full store looks for expired entries at most this often.
const SWEEP_WHEN_FULL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    pub ttl: Duration,
    /// Bytes of all entries (values plus [`ENTRY_OVERHEAD`] each).
    pub max_bytes: usize,
    /// Entries whose latest STORE came from one IP.
    pub max_per_ip: usize,
    /// Largest value, as JSON text.
    pub max_value: usize,
}

/// Why a STORE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("value too large")]
    TooLarge,
    #[error("the source IP holds its maximum of entries")]
    PerIpFull,
    #[error("the store is full")]
    Full,
}

#[derive(Debug)]
struct Entry {
    /// JSON text.
    value: Box<str>,
    source: IpAddr,
    expires: Instant,
}

impl Entry {
    fn cost(&self) -> usize {
        self.value.len() + ENTRY_OVERHEAD
    }
}

pub struct Storage {
    limits: StorageLimits,
    entries: HashMap<NodeId, Entry>,
    per_ip: HashMap<IpAddr, usize>,
    bytes: usize,
    last_sweep: Option<Instant>,
    expired: u64,
}

impl Storage {
    pub fn new(limits: StorageLimits) -> Self {
        Self {
            limits,
            entries: HashMap::default(),
            per_ip: HashMap::default(),
            bytes: 0,
            last_sweep: None,
            expired: 0,
        }
    }

    pub fn limits(&self) -> &StorageLimits {
        &self.limits
    }

    /// Stores (or replaces) `key` → `value` (JSON text) for `source`, valid for the TTL.
    pub fn put(
        &mut self,
        key: NodeId,
        value: &str,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), Rejected> {
        if value.len() > self.limits.max_value {
            return Err(Rejected::TooLarge);
        }
        let cost = value.len() + ENTRY_OVERHEAD;
        if let Err(e) = self.check_room(&key, cost, source) {
            if self.sweep_if_due(now) == 0 {
                return Err(e);
            }
            self.check_room(&key, cost, source)?;
        }
        let entry = Entry {
            value: value.into(),
            source,
            expires: now + self.limits.ttl,
        };
        if let Some(old) = self.entries.insert(key, entry) {
            self.bytes -= old.cost();
            self.release(old.source);
        }
        self.bytes += cost;
        *self.per_ip.entry(source).or_default() += 1;
        Ok(())
    }

    fn check_room(&self, key: &NodeId, cost: usize, source: IpAddr) -> Result<(), Rejected> {
        let old = self.entries.get(key);
        let freed = old.map_or(0, Entry::cost);
        let same_source = old.is_some_and(|e| e.source == source);
        if !same_source && self.per_ip.get(&source).copied().unwrap_or(0) >= self.limits.max_per_ip
        {
            return Err(Rejected::PerIpFull);
        }
        if self.bytes - freed + cost > self.limits.max_bytes {
            return Err(Rejected::Full);
        }
        Ok(())
    }

    fn release(&mut self, source: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&source);
            }
        }
    }

    /// The value under `key` (JSON text), unless it expired.
    pub fn get(&self, key: &NodeId, now: Instant) -> Option<&str> {
        self.entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| &*e.value)
    }

    /// Forgets expired entries; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.last_sweep = Some(now);
        let mut gone = Vec::new();
        self.entries.retain(|_, e| {
            if e.expires > now {
                return true;
            }
            gone.push((e.source, e.cost()));
            false
        });
        for (source, cost) in &gone {
            self.bytes -= cost;
            self.release(*source);
        }
        self.expired += gone.len() as u64;
        gone.len()
    }

    fn sweep_if_due(&mut self, now: Instant) -> usize {
        if self
            .last_sweep
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_WHEN_FULL)
        {
            return 0;
        }
        self.expire(now)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes charged against [`StorageLimits::max_bytes`].
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Entries held for `ip`.
    pub fn entries_of(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Entries dropped by expiry so far.
    pub fn expired_total(&self) -> u64 {
        self.expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: StorageLimits = StorageLimits {
        ttl: Duration::from_secs(60),
        max_bytes: 10 * (ENTRY_OVERHEAD + 10),
        max_per_ip: 4,
        max_value: 10,
    };

    fn key(n: u8) -> NodeId {
        NodeId([n; 20])
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn values_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        s.put(key(1), "\"v\"", ip(1), t0).unwrap();
        assert_eq!(s.get(&key(1), t0 + Duration::from_secs(59)), Some("\"v\""));
        assert_eq!(s.get(&key(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(s.expire(t0 + Duration::from_secs(59)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(61)), 1);
        assert!(s.is_empty());
        assert_eq!(
            (s.bytes(), s.entries_of(ip(1)), s.expired_total()),
            (0, 0, 1)
        );
        // A new STORE restarts the clock.
        s.put(key(1), "1", ip(1), t0).unwrap();
        s.put(key(1), "2", ip(1), t0 + Duration::from_secs(50))
            .unwrap();
        assert_eq!(s.get(&key(1), t0 + Duration::from_secs(100)), Some("2"));
    }

    #[test]
    fn caps_value_size_per_ip_and_total() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        assert_eq!(
            s.put(key(1), &"x".repeat(11), ip(1), t0),
            Err(Rejected::TooLarge)
        );
        for n in 0..4 {
            s.put(key(n), "1234567890", ip(1), t0).unwrap();
        }
        assert_eq!(s.put(key(9), "1", ip(1), t0), Err(Rejected::PerIpFull));
        // Replacing its own entry is fine; taking over another IP's counts against the taker.
        s.put(key(0), "abc", ip(1), t0).unwrap();
        for n in 4..10 {
            s.put(key(n), "1234567890", ip(n), t0).unwrap();
        }
        assert_eq!(s.put(key(20), "1", ip(20), t0), Err(Rejected::Full));
        assert!(s.bytes() <= LIMITS.max_bytes);
        assert_eq!(s.len(), 10);
        // Expired entries make room again.
        let later = t0 + Duration::from_secs(61);
        s.put(key(20), "1", ip(20), later).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.entries_of(ip(1)), 0);
    }

    #[test]
    fn overwrite_moves_the_entry_to_the_new_source() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        s.put(key(1), "1", ip(1), t0).unwrap();
        s.put(key(1), "2", ip(2), t0).unwrap();
        assert_eq!((s.entries_of(ip(1)), s.entries_of(ip(2))), (0, 1));
        assert_eq!(s.bytes(), ENTRY_OVERHEAD + 1);
    }
}
