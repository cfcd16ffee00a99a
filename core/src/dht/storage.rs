//! Values stored at this node by others.
//!
//! - Each value expires after one TTL for all.
//! - A key belongs to the source (IPv4 address or IPv6 prefix, see [`SourceGroup`]) that first
//!   stored it until it expires: that source may replace or refresh it, any other is refused.
//!   Otherwise any address that can receive our PING could take over every key it sees.
//! - Together the entries are bounded by the memory they take: key, value text, and the
//!   bookkeeping of the tables that hold them ([`entry_cost`], [`HOLDER_OVERHEAD`]).
//! - A full store is shared fairly: a source below its fair share (the bound over the
//!   number of sources holding entries, itself included) makes room by evicting the oldest
//!   entries of the source holding the most. One source that filled the store cannot lock
//!   the others out; it only loses its oldest entries to them.

use std::collections::{BTreeMap, BTreeSet};
use std::mem::size_of;
use std::time::{Duration, Instant};

use super::id::{NodeId, ID_BYTES};
use crate::ratelimit::SourceGroup;

/// Keyed by key hashes and sources that others choose: ahash with random keys.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// A hash table is given back memory once it holds fewer entries than its capacity over
/// this (see [`hash_slot`]).
const SHRINK_BELOW: usize = 3;

/// Bytes a hash table entry of `size` bytes takes at worst: hashbrown's capacity is 7/8 of
/// its buckets, and the tables here shrink once fewer than a third of that capacity is used,
/// so each entry has at most 24/7 buckets of `size` plus a control byte.
const fn hash_slot(size: usize) -> usize {
    (size + 1) * SHRINK_BELOW * 8 / 7 + 1
}

/// Bytes one element of `size` bytes takes in a B-tree at worst: std's leaf nodes hold 11
/// elements, a parent pointer and two indexes in one allocation and, but for the root, are
/// never less than 5 full; the internal nodes above them add at most a quarter.
const fn btree_slot(size: usize) -> usize {
    (11 * size + 32) / 4 + 1
}

/// Bytes the allocator adds to an allocation at most: rounding to 16 and a 16-byte header.
const ALLOC_SLACK: usize = 31;

/// Bytes every entry takes beyond its key and its value text: its slot in the entry table,
/// its places in the expiry order and in its source's age order, and the allocator's slack
/// on the value.
pub const ENTRY_OVERHEAD: usize = hash_slot(size_of::<(NodeId, Entry)>()) - ID_BYTES
    + 2 * btree_slot(size_of::<(u64, NodeId)>())
    + ALLOC_SLACK;

/// Bytes every source holding entries takes: its slot in the source table, its place in the
/// by-size order, and the first node of its age order (allocated whole).
pub const HOLDER_OVERHEAD: usize = hash_slot(size_of::<(SourceGroup, Holder)>())
    + btree_slot(size_of::<(usize, SourceGroup)>())
    + 11 * size_of::<(u64, NodeId)>()
    + 16
    + ALLOC_SLACK;

/// Bytes an entry whose value text is `value_len` bytes long is charged.
pub const fn entry_cost(value_len: usize) -> usize {
    ID_BYTES + value_len + ENTRY_OVERHEAD
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    pub ttl: Duration,
    /// Bytes of all entries and sources ([`entry_cost`], [`HOLDER_OVERHEAD`]).
    pub max_bytes: usize,
    /// Entries one source (IPv4 address or IPv6 prefix) holds at most.
    pub max_per_ip: usize,
    /// Largest value, as JSON text.
    pub max_value: usize,
}

/// Why a STORE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("value too large")]
    TooLarge,
    #[error("the source holds its maximum of entries")]
    PerIpFull,
    #[error("the store is full and the source holds its fair share")]
    Full,
    #[error("the key belongs to another source until it expires")]
    OwnedByOther,
}

/// What a STORE that was taken did to others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepted {
    /// Entries of the heaviest source evicted to make room (fair share).
    pub evicted: usize,
}

/// One stored entry, as [`Storage::entries`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredEntry<'a> {
    pub key: NodeId,
    /// JSON text.
    pub value: &'a str,
    pub owner: SourceGroup,
    pub expires: Instant,
}

#[derive(Debug)]
struct Entry {
    /// JSON text.
    value: Box<str>,
    owner: SourceGroup,
    /// When it was stored: its place in the age orders.
    seq: u64,
    expires: Instant,
}

/// One source's share of the store.
#[derive(Debug, Default)]
struct Holder {
    /// Charged bytes: its entries' costs and [`HOLDER_OVERHEAD`].
    bytes: usize,
    /// Its entries, oldest first.
    by_age: BTreeMap<u64, NodeId>,
}

pub struct Storage {
    limits: StorageLimits,
    entries: HashMap<NodeId, Entry>,
    holders: HashMap<SourceGroup, Holder>,
    /// (bytes, source) of every holder: the heaviest last.
    by_bytes: BTreeSet<(usize, SourceGroup)>,
    /// Every entry in the order it was stored, which with one TTL for all is the order it
    /// expires in.
    by_age: BTreeMap<u64, NodeId>,
    next_seq: u64,
    bytes: usize,
    expired: u64,
    evicted: u64,
}

impl Storage {
    pub fn new(limits: StorageLimits) -> Self {
        Self {
            limits,
            entries: HashMap::default(),
            holders: HashMap::default(),
            by_bytes: BTreeSet::new(),
            by_age: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            expired: 0,
            evicted: 0,
        }
    }

    pub fn limits(&self) -> &StorageLimits {
        &self.limits
    }

    /// Stores (or, for its owner, replaces) `key` → `value` (JSON text) for `source`, valid
    /// for the TTL from `now`.
    pub fn put(
        &mut self,
        key: NodeId,
        value: &str,
        source: SourceGroup,
        now: Instant,
    ) -> Result<Accepted, Rejected> {
        self.put_for(key, value, source, now, self.limits.ttl)
    }

    /// Puts back an entry an earlier run of the node saved, for what was left of its TTL
    /// (`remaining`, at most the TTL), under the same limits as [`Storage::put`]. Entries are
    /// kept in the order they were stored, which must be the order they expire in: restore
    /// them soonest to expire first, before any new STORE.
    pub fn restore(
        &mut self,
        key: NodeId,
        value: &str,
        source: SourceGroup,
        now: Instant,
        remaining: Duration,
    ) -> Result<Accepted, Rejected> {
        self.put_for(key, value, source, now, remaining.min(self.limits.ttl))
    }

    /// The entries, oldest (soonest to expire) first: key, value (JSON text), owner and
    /// expiry. Expired entries not yet forgotten are included; callers compare the expiry.
    pub fn entries(&self) -> impl Iterator<Item = StoredEntry<'_>> + '_ {
        self.by_age.values().filter_map(|key| {
            self.entries.get(key).map(|e| StoredEntry {
                key: *key,
                value: &e.value,
                owner: e.owner,
                expires: e.expires,
            })
        })
    }

    fn put_for(
        &mut self,
        key: NodeId,
        value: &str,
        source: SourceGroup,
        now: Instant,
        ttl: Duration,
    ) -> Result<Accepted, Rejected> {
        if value.len() > self.limits.max_value {
            return Err(Rejected::TooLarge);
        }
        self.expire(now);
        // Past its TTL but still here (the clock went back): gone all the same.
        if self.entries.get(&key).is_some_and(|e| e.expires <= now) {
            self.detach(&key);
            self.expired += 1;
        }
        let cost = entry_cost(value.len());
        let growth = match self.entries.get(&key) {
            Some(old) if old.owner != source => return Err(Rejected::OwnedByOther),
            Some(old) => cost.saturating_sub(entry_cost(old.value.len())),
            None if self.entries_of(source) >= self.limits.max_per_ip => {
                return Err(Rejected::PerIpFull)
            }
            None if !self.holders.contains_key(&source) => cost + HOLDER_OVERHEAD,
            None => cost,
        };
        let evicted = self.make_room(source, growth)?;
        self.detach(&key);
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            value: value.into(),
            owner: source,
            seq,
            expires: now + ttl,
        };
        self.attach(key, entry);
        Ok(Accepted { evicted })
    }

    /// Evicts the oldest entries of the heaviest source until `growth` more bytes fit, if
    /// `source` stays within its fair share with them; returns how many were evicted.
    fn make_room(&mut self, source: SourceGroup, growth: usize) -> Result<usize, Rejected> {
        let mut evicted = 0;
        while self.bytes + growth > self.limits.max_bytes {
            let sources = self.holders.len() + usize::from(!self.holders.contains_key(&source));
            let fair = self.limits.max_bytes / sources;
            if self.bytes_of(source) + growth > fair {
                return Err(Rejected::Full);
            }
            // The others hold more than their fair shares together, so the heaviest holds
            // more than its own and is not `source`; checked all the same.
            let Some(&(heaviest_bytes, heaviest)) = self.by_bytes.last() else {
                return Err(Rejected::Full);
            };
            if heaviest == source || heaviest_bytes <= fair {
                return Err(Rejected::Full);
            }
            let Some(oldest) = self
                .holders
                .get(&heaviest)
                .and_then(|h| h.by_age.first_key_value())
                .map(|(_, key)| *key)
            else {
                return Err(Rejected::Full);
            };
            self.detach(&oldest);
            evicted += 1;
            self.evicted += 1;
        }
        Ok(evicted)
    }

    fn attach(&mut self, key: NodeId, entry: Entry) {
        let cost = entry_cost(entry.value.len());
        let holder = self.holders.entry(entry.owner).or_insert_with(|| Holder {
            bytes: HOLDER_OVERHEAD,
            by_age: BTreeMap::new(),
        });
        let before = holder.bytes;
        if holder.by_age.is_empty() {
            self.bytes += HOLDER_OVERHEAD;
        } else {
            self.by_bytes.remove(&(before, entry.owner));
        }
        holder.bytes += cost;
        holder.by_age.insert(entry.seq, key);
        self.by_bytes.insert((holder.bytes, entry.owner));
        self.by_age.insert(entry.seq, key);
        self.bytes += cost;
        self.entries.insert(key, entry);
    }

    /// Removes `key` from every table; the entry, if there was one.
    fn detach(&mut self, key: &NodeId) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        let cost = entry_cost(entry.value.len());
        self.by_age.remove(&entry.seq);
        self.bytes -= cost;
        if let Some(holder) = self.holders.get_mut(&entry.owner) {
            self.by_bytes.remove(&(holder.bytes, entry.owner));
            holder.bytes -= cost;
            holder.by_age.remove(&entry.seq);
            if holder.by_age.is_empty() {
                self.holders.remove(&entry.owner);
                self.bytes -= HOLDER_OVERHEAD;
                shrink_if_sparse(&mut self.holders);
            } else {
                self.by_bytes.insert((holder.bytes, entry.owner));
            }
        }
        shrink_if_sparse(&mut self.entries);
        Some(entry)
    }

    /// The value under `key` (JSON text), unless it expired.
    pub fn get(&self, key: &NodeId, now: Instant) -> Option<&str> {
        self.entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| &*e.value)
    }

    /// The source `key` belongs to, unless it expired.
    pub fn owner(&self, key: &NodeId, now: Instant) -> Option<SourceGroup> {
        self.entries
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.owner)
    }

    /// Forgets expired entries, oldest first; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        while let Some((_, &key)) = self.by_age.first_key_value() {
            if self.entries.get(&key).is_some_and(|e| e.expires > now) {
                break;
            }
            self.detach(&key);
            gone += 1;
        }
        self.expired += gone as u64;
        gone
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

    /// Entries held for `source`.
    pub fn entries_of(&self, source: SourceGroup) -> usize {
        self.holders.get(&source).map_or(0, |h| h.by_age.len())
    }

    /// Bytes charged to `source`.
    pub fn bytes_of(&self, source: SourceGroup) -> usize {
        self.holders.get(&source).map_or(0, |h| h.bytes)
    }

    /// Sources holding entries.
    pub fn sources(&self) -> usize {
        self.holders.len()
    }

    /// Entries dropped by expiry so far.
    pub fn expired_total(&self) -> u64 {
        self.expired
    }

    /// Entries evicted to make room for a source below its fair share so far.
    pub fn evicted_total(&self) -> u64 {
        self.evicted
    }
}

/// Gives back a table's memory once it uses less than 1/[`SHRINK_BELOW`] of its capacity:
/// hashbrown never shrinks by itself, so a store once full of small values would keep the
/// table of their number. After shrinking to fit, the next shrink waits until a third of the
/// entries are gone, so the copies cost O(1) per removal.
fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(table: &mut HashMap<K, V>) {
    if table.capacity() > SHRINK_BELOW * table.len() + 16 {
        table.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::SourceGrouping;

    /// Room for 10 entries of 10-byte values from one source.
    const LIMITS: StorageLimits = StorageLimits {
        ttl: Duration::from_secs(60),
        max_bytes: 10 * entry_cost(10) + HOLDER_OVERHEAD,
        max_per_ip: 20,
        max_value: 10,
    };

    fn key(n: u16) -> NodeId {
        let mut id = [0; 20];
        id[..2].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    fn src(n: u8) -> SourceGroup {
        SourceGrouping::new(64).group_of([10, 0, 0, n].into())
    }

    /// Checks the bookkeeping against the entries themselves.
    fn check(s: &Storage) {
        let mut per_source: HashMap<SourceGroup, (usize, usize)> = HashMap::default();
        for e in s.entries.values() {
            let slot = per_source.entry(e.owner).or_insert((HOLDER_OVERHEAD, 0));
            slot.0 += entry_cost(e.value.len());
            slot.1 += 1;
        }
        assert_eq!(per_source.len(), s.sources());
        for (source, (bytes, n)) in &per_source {
            assert_eq!((s.bytes_of(*source), s.entries_of(*source)), (*bytes, *n));
            assert!(s.by_bytes.contains(&(*bytes, *source)));
        }
        assert_eq!(s.by_bytes.len(), per_source.len());
        assert_eq!(s.by_age.len(), s.len());
        assert_eq!(
            s.bytes(),
            per_source.values().map(|(b, _)| b).sum::<usize>()
        );
        assert!(s.bytes() <= s.limits().max_bytes);
    }

    #[test]
    fn values_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        s.put(key(1), "\"v\"", src(1), t0).unwrap();
        assert_eq!(s.get(&key(1), t0 + Duration::from_secs(59)), Some("\"v\""));
        assert_eq!(s.get(&key(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(s.expire(t0 + Duration::from_secs(59)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(61)), 1);
        assert!(s.is_empty());
        assert_eq!(
            (s.bytes(), s.entries_of(src(1)), s.expired_total()),
            (0, 0, 1)
        );
        // A new STORE restarts the clock.
        s.put(key(1), "1", src(1), t0).unwrap();
        s.put(key(1), "2", src(1), t0 + Duration::from_secs(50))
            .unwrap();
        assert_eq!(s.get(&key(1), t0 + Duration::from_secs(100)), Some("2"));
        check(&s);
    }

    #[test]
    fn restored_entries_keep_what_was_left_of_their_ttl() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        s.restore(key(1), "\"soon\"", src(1), t0, Duration::from_secs(5))
            .unwrap();
        // A remaining time beyond the TTL (the clock went back) is cut to the TTL.
        s.restore(key(2), "\"late\"", src(2), t0, Duration::from_secs(600))
            .unwrap();
        assert_eq!(
            s.restore(key(2), "\"other\"", src(3), t0, Duration::from_secs(1)),
            Err(Rejected::OwnedByOther),
            "restored entries keep their owner"
        );
        let listed: Vec<_> = s.entries().map(|e| (e.key, e.value, e.owner)).collect();
        assert_eq!(
            listed,
            [(key(1), "\"soon\"", src(1)), (key(2), "\"late\"", src(2))]
        );
        let expiries: Vec<Instant> = s.entries().map(|e| e.expires).collect();
        assert_eq!(
            expiries,
            [t0 + Duration::from_secs(5), t0 + LIMITS.ttl],
            "soonest to expire first"
        );
        assert_eq!(
            s.get(&key(1), t0 + Duration::from_secs(4)),
            Some("\"soon\"")
        );
        assert_eq!(s.expire(t0 + Duration::from_secs(5)), 1);
        assert_eq!(
            s.get(&key(2), t0 + Duration::from_secs(59)),
            Some("\"late\"")
        );
        check(&s);
    }

    #[test]
    fn a_key_belongs_to_its_first_source_until_it_expires() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        s.put(key(1), "\"mine\"", src(1), t0).unwrap();
        assert_eq!(
            s.put(key(1), "\"yours\"", src(2), t0),
            Err(Rejected::OwnedByOther)
        );
        assert_eq!(s.get(&key(1), t0), Some("\"mine\""));
        assert_eq!(s.owner(&key(1), t0), Some(src(1)));
        assert_eq!((s.entries_of(src(1)), s.entries_of(src(2))), (1, 0));
        // The owner replaces and refreshes it.
        let t1 = t0 + Duration::from_secs(50);
        s.put(key(1), "\"mine 2\"", src(1), t1).unwrap();
        assert_eq!(
            s.get(&key(1), t0 + Duration::from_secs(100)),
            Some("\"mine 2\"")
        );
        // Another address of the same IPv6 /64 is the same source.
        let v6 = |s: &str| SourceGrouping::new(64).group_of(s.parse().unwrap());
        s.put(key(2), "1", v6("2001:db8::1"), t0).unwrap();
        s.put(key(2), "2", v6("2001:db8::ffff"), t0).unwrap();
        assert_eq!(
            s.put(key(2), "3", v6("2001:db8:0:1::1"), t0),
            Err(Rejected::OwnedByOther)
        );
        // Once it expired, anyone may take it.
        let later = t1 + Duration::from_secs(60);
        s.put(key(1), "\"yours\"", src(2), later).unwrap();
        assert_eq!(s.owner(&key(1), later), Some(src(2)));
        assert_eq!(s.entries_of(src(1)), 0);
        check(&s);
    }

    #[test]
    fn caps_value_size_and_entries_per_source() {
        let t0 = Instant::now();
        let limits = StorageLimits {
            max_per_ip: 4,
            ..LIMITS
        };
        let mut s = Storage::new(limits);
        assert_eq!(
            s.put(key(1), &"x".repeat(11), src(1), t0),
            Err(Rejected::TooLarge)
        );
        for n in 0..4 {
            s.put(key(n), "1234567890", src(1), t0).unwrap();
        }
        assert_eq!(s.put(key(9), "1", src(1), t0), Err(Rejected::PerIpFull));
        // Replacing its own entry is fine.
        s.put(key(0), "abc", src(1), t0).unwrap();
        assert_eq!(s.entries_of(src(1)), 4);
        check(&s);
    }

    #[test]
    fn a_full_store_is_shared_fairly() {
        let t0 = Instant::now();
        let mut s = Storage::new(LIMITS);
        let cost = entry_cost(10);
        for n in 0..10 {
            s.put(
                key(n),
                "1234567890",
                src(1),
                t0 + Duration::from_millis(u64::from(n)),
            )
            .unwrap();
        }
        assert_eq!(s.bytes(), LIMITS.max_bytes);
        // Source 1 filled the store: it cannot grow, and refreshing takes no new room.
        assert_eq!(
            s.put(key(10), "1234567890", src(1), t0),
            Err(Rejected::Full)
        );
        s.put(key(3), "1234567890", src(1), t0 + Duration::from_millis(10))
            .unwrap();
        assert_eq!(s.evicted_total(), 0);
        // A newcomer evicts source 1's oldest entries until its entry and its bookkeeping
        // fit; key 3 was refreshed, so it is now source 1's newest.
        let t1 = t0 + Duration::from_secs(1);
        let a = s.put(key(100), "1234567890", src(2), t1).unwrap();
        let evicted = (cost + HOLDER_OVERHEAD).div_ceil(cost);
        assert_eq!(a.evicted, evicted);
        let oldest_first = [0, 1, 2, 4, 5, 6, 7, 8, 9, 3];
        for (i, &n) in oldest_first.iter().enumerate() {
            assert_eq!(s.get(&key(n), t1).is_some(), i >= evicted, "key {n}");
        }
        // It takes up to its fair share, half the store, and no more.
        while s
            .put(
                key(101 + s.entries_of(src(2)) as u16),
                "1234567890",
                src(2),
                t1,
            )
            .is_ok()
        {}
        let taken_by_2 = s.entries_of(src(2));
        let half = LIMITS.max_bytes / 2;
        assert!(s.bytes_of(src(2)) <= half && s.bytes_of(src(2)) + cost > half);
        assert!(s.bytes_of(src(1)) >= s.bytes_of(src(2)));
        // A third source gets its third, taken from the heavier two.
        while s
            .put(
                key(300 + s.entries_of(src(3)) as u16),
                "1234567890",
                src(3),
                t1,
            )
            .is_ok()
        {}
        let third = LIMITS.max_bytes / 3;
        assert!(s.bytes_of(src(3)) <= third && s.bytes_of(src(3)) + cost > third);
        for n in 1..=3 {
            assert!(s.bytes_of(src(n)) <= half, "{n}");
            assert!(s.entries_of(src(n)) >= 1, "{n}");
        }
        // Nothing expired: every entry stored and not here was evicted.
        let stored = 10 + s.entries_of(src(3)) + taken_by_2;
        assert_eq!(s.evicted_total() as usize, stored - s.len());
        check(&s);
    }

    #[test]
    fn memory_stays_within_the_bound_under_churn() {
        use rand::{Rng, SeedableRng};
        let t0 = Instant::now();
        let limits = StorageLimits {
            ttl: Duration::from_secs(30),
            max_bytes: 64 << 10,
            max_per_ip: 1000,
            max_value: 1200,
        };
        let mut s = Storage::new(limits);
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut results = [0usize; 5];
        for i in 0..20_000u64 {
            let now = t0 + Duration::from_millis(i * 7);
            let source = src(rng.gen_range(0..40));
            let len = rng.gen_range(0..=1300);
            let r = s.put(key(rng.gen()), &"v".repeat(len), source, now);
            results[match r {
                Ok(a) if a.evicted > 0 => 0,
                Ok(_) => 1,
                Err(Rejected::TooLarge) => 2,
                Err(Rejected::OwnedByOther) => 3,
                Err(_) => 4,
            }] += 1;
            assert!(s.bytes() <= limits.max_bytes);
            if i % 1000 == 0 {
                check(&s);
            }
        }
        assert!(results.iter().all(|&n| n > 0), "{results:?}");
        s.expire(t0 + Duration::from_secs(3600));
        assert_eq!((s.len(), s.bytes(), s.sources()), (0, 0, 0));
        check(&s);
    }
}
