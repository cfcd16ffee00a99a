//! The live announcements, most recent first, each owned by the source IP that made it.
//!
//! An id belongs to the IP that announced it until the announcement expires: the same IP
//! refreshes it, another IP is refused, so nobody can take over someone else's entry. One IP
//! holds at most `max_per_ip` ids. When the table is full, a newcomer takes the place of the
//! oldest entry of the IP that holds the most, if that IP holds more than its fair share
//! (`max_entries` over the number of announcing IPs); only when nobody does does the stalest
//! entry go. Many addresses flooding the table therefore evict each other, not the peers
//! that announced once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::announcement::Announcement;

/// The registry's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) ttl: Duration,
    pub(crate) max_entries: usize,
    pub(crate) max_per_ip: usize,
}

/// Why the registry refused an announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("id {id} is held by the address that announced it, for {} s more unless it announces again", left.as_secs())]
    Owned { id: String, left: Duration },
    #[error("this address has {max} announcements listed, the most one address may have")]
    PerIpCap { max: usize, left: Duration },
}

impl Refusal {
    /// How long until the refusal no longer holds, at most.
    pub(crate) fn retry_after(&self) -> Duration {
        match self {
            Refusal::Owned { left, .. } | Refusal::PerIpCap { left, .. } => *left,
        }
    }
}

struct Entry {
    announcement: Announcement,
    source: IpAddr,
    at: Instant,
}

struct Table {
    /// By id, most recently announced first.
    entries: LruCache<String, Entry>,
    /// Each source IP's ids, least recently announced first.
    by_source: HashMap<IpAddr, VecDeque<String>>,
    /// (ids held, source IP), to find the IP holding the most.
    holdings: BTreeSet<(usize, IpAddr)>,
}

pub struct Registry {
    limits: Limits,
    table: Mutex<Table>,
}

impl Registry {
    pub(crate) fn new(limits: Limits) -> Self {
        Registry {
            limits,
            table: Mutex::new(Table {
                entries: LruCache::unbounded(),
                by_source: HashMap::new(),
                holdings: BTreeSet::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `announcement` from `source`, or refreshes it when `source` already holds its id.
    pub(crate) fn insert(
        &self,
        announcement: Announcement,
        source: IpAddr,
        now: Instant,
    ) -> Result<(), Refusal> {
        let source = source.to_canonical();
        let ttl = self.limits.ttl;
        let mut table = self.lock();
        table.expire(ttl, now);
        if let Some(held) = table.entries.peek(&announcement.id) {
            if held.source != source {
                return Err(Refusal::Owned {
                    id: announcement.id.clone(),
                    left: (held.at + ttl).saturating_duration_since(now),
                });
            }
            let id = announcement.id.clone();
            table.put(announcement, source, now);
            table.touch(source, &id);
            return Ok(());
        }
        let held = table.held_by(source);
        if held >= self.limits.max_per_ip {
            let oldest = table.oldest_of(source).map_or(now, |e| e.at);
            return Err(Refusal::PerIpCap {
                max: self.limits.max_per_ip,
                left: (oldest + ttl).saturating_duration_since(now),
            });
        }
        if table.entries.len() >= self.limits.max_entries.max(1) {
            let newcomer = usize::from(held == 0);
            table.evict_one(self.limits.max_entries, newcomer);
        }
        let id = announcement.id.clone();
        table.put(announcement, source, now);
        table.add(source, id);
        Ok(())
    }

    /// Up to `limit` of what `view` makes of the live announcements (given with the IP that
    /// made each), most recent first; `view` leaves out those it returns `None` for.
    pub(crate) fn list<T>(
        &self,
        limit: usize,
        now: Instant,
        mut view: impl FnMut(&Announcement, IpAddr) -> Option<T>,
    ) -> Vec<T> {
        let mut table = self.lock();
        table.expire(self.limits.ttl, now);
        table
            .entries
            .iter()
            .filter_map(|(_, e)| view(&e.announcement, e.source))
            .take(limit)
            .collect()
    }

    /// The id `source` announced last, if it did at `since` or later.
    pub(crate) fn last_announced_by(&self, source: IpAddr, since: Instant) -> Option<String> {
        let table = self.lock();
        // Each source's ids are kept least recently announced first.
        let id = table.by_source.get(&source.to_canonical())?.back()?;
        let at = table.entries.peek(id)?.at;
        (at >= since).then(|| id.clone())
    }

    /// Every live announcement with the IP that made it and its age, oldest first: what a
    /// snapshot keeps, in the order [`Registry::restore`] takes them back.
    pub(crate) fn export(&self, now: Instant) -> Vec<(Announcement, IpAddr, Duration)> {
        let mut table = self.lock();
        table.expire(self.limits.ttl, now);
        table
            .entries
            .iter()
            .rev()
            .map(|(_, e)| {
                let age = now.saturating_duration_since(e.at);
                (e.announcement.clone(), e.source, age)
            })
            .collect()
    }

    /// Puts back an announcement an earlier run saved, made `age` ago by `source`, under the
    /// same rules as a new one; false when it has expired since. Restore them oldest first,
    /// before serving. Unless the monotonic clock is younger than `age` (the machine booted
    /// since), it expires when it would have in the earlier run; otherwise one TTL from now.
    pub(crate) fn restore(
        &self,
        announcement: Announcement,
        source: IpAddr,
        age: Duration,
        now: Instant,
    ) -> Result<bool, Refusal> {
        if age >= self.limits.ttl {
            return Ok(false);
        }
        let at = now.checked_sub(age).unwrap_or(now);
        self.insert(announcement, source, at).map(|()| true)
    }

    /// Live announcements.
    pub(crate) fn len(&self, now: Instant) -> usize {
        let mut table = self.lock();
        table.expire(self.limits.ttl, now);
        table.entries.len()
    }
}

impl Table {
    /// Drops expired entries. Every announcement moves its entry to the front, so the oldest
    /// are at the back.
    fn expire(&mut self, ttl: Duration, now: Instant) {
        while let Some((_, oldest)) = self.entries.peek_lru() {
            if now.saturating_duration_since(oldest.at) < ttl {
                break;
            }
            if let Some((id, entry)) = self.entries.pop_lru() {
                self.forget(entry.source, &id);
            }
        }
    }

    fn put(&mut self, announcement: Announcement, source: IpAddr, at: Instant) {
        let id = announcement.id.clone();
        self.entries.put(
            id,
            Entry {
                announcement,
                source,
                at,
            },
        );
    }

    fn held_by(&self, source: IpAddr) -> usize {
        self.by_source.get(&source).map_or(0, VecDeque::len)
    }

    fn oldest_of(&self, source: IpAddr) -> Option<&Entry> {
        let id = self.by_source.get(&source)?.front()?;
        self.entries.peek(id)
    }

    /// Records a new id of `source`.
    fn add(&mut self, source: IpAddr, id: String) {
        let ids = self.by_source.entry(source).or_default();
        let before = ids.len();
        ids.push_back(id);
        self.holdings.remove(&(before, source));
        self.holdings.insert((before + 1, source));
    }

    /// Moves `id` to the back of `source`'s ids: announced last.
    fn touch(&mut self, source: IpAddr, id: &str) {
        if let Some(ids) = self.by_source.get_mut(&source) {
            if let Some(at) = ids.iter().position(|held| held == id) {
                if let Some(id) = ids.remove(at) {
                    ids.push_back(id);
                }
            }
        }
    }

    /// Removes `id` from `source`'s ids (the entry itself is already gone).
    fn forget(&mut self, source: IpAddr, id: &str) {
        let Some(ids) = self.by_source.get_mut(&source) else {
            return;
        };
        let before = ids.len();
        if let Some(at) = ids.iter().position(|held| held == id) {
            ids.remove(at);
        }
        let after = ids.len();
        if after == 0 {
            self.by_source.remove(&source);
        }
        self.holdings.remove(&(before, source));
        if after > 0 {
            self.holdings.insert((after, source));
        }
    }

    /// Makes room for one entry. Only an IP holding more than its fair share loses one while
    /// any does: the stalest entry if its IP does, else the oldest of the IP holding the
    /// most; when nobody does, the stalest entry. `newcomer` is 1 when the announcing IP
    /// holds nothing yet (it counts among the IPs sharing the table).
    fn evict_one(&mut self, max_entries: usize, newcomer: usize) {
        let sources = self.by_source.len() + newcomer;
        let fair_share = (max_entries / sources.max(1)).max(1);
        let stalest = self
            .entries
            .peek_lru()
            .map(|(id, e)| (id.clone(), e.source));
        let victim = match (stalest, self.holdings.last().copied()) {
            (Some((id, source)), _) if self.held_by(source) > fair_share => Some(id),
            (_, Some((held, source))) if held > fair_share => self
                .by_source
                .get(&source)
                .and_then(|ids| ids.front().cloned()),
            (stalest, _) => stalest.map(|(id, _)| id),
        };
        if let Some(id) = victim {
            if let Some(entry) = self.entries.pop(&id) {
                self.forget(entry.source, &id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn announcement(id: u32, port: u16) -> Announcement {
        Announcement {
            id: format!("{id:040x}"),
            addr: SocketAddr::new("127.0.0.1".parse().unwrap(), port),
            local: None,
            nat: None,
            topic: None,
            relay: None,
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, n])
    }

    fn registry(max_entries: usize, max_per_ip: usize) -> Registry {
        Registry::new(Limits {
            ttl: Duration::from_secs(10),
            max_entries,
            max_per_ip,
        })
    }

    fn ports(registry: &Registry, now: Instant) -> Vec<u16> {
        registry.list(100, now, |a, _| Some(a.addr.port()))
    }

    #[test]
    fn newest_first_one_per_id_capped_and_expiring() {
        let registry = registry(3, 10);
        let t0 = Instant::now();
        for n in 1..=4 {
            let at = t0 + Duration::from_secs(u64::from(n));
            registry
                .insert(announcement(n, 1000 + n as u16), ip(1), at)
                .unwrap();
        }
        let now = t0 + Duration::from_secs(5);
        assert_eq!(ports(&registry, now), [1004, 1003, 1002]);
        // The same IP announcing an id again replaces it and moves it to the front.
        registry.insert(announcement(2, 2002), ip(1), now).unwrap();
        assert_eq!(registry.len(now), 3);
        assert_eq!(ports(&registry, now), [2002, 1004, 1003]);
        // Entries announced at t0+3 and t0+4 expire at t0+13 and t0+14.
        let later = t0 + Duration::from_secs(14);
        assert_eq!(ports(&registry, later), [2002]);
        assert_eq!(registry.len(later), 1);
    }

    #[test]
    fn an_id_belongs_to_its_source_until_it_expires() {
        let registry = registry(10, 10);
        let t0 = Instant::now();
        registry.insert(announcement(7, 1000), ip(1), t0).unwrap();
        let t1 = t0 + Duration::from_secs(4);
        let refused = registry
            .insert(announcement(7, 6666), ip(2), t1)
            .unwrap_err();
        assert!(matches!(refused, Refusal::Owned { .. }), "{refused:?}");
        assert_eq!(refused.retry_after(), Duration::from_secs(6));
        assert_eq!(ports(&registry, t1), [1000]);
        // An IPv4-mapped source is the same IP.
        let mapped: IpAddr = "::ffff:198.51.100.1".parse().unwrap();
        registry.insert(announcement(7, 1001), mapped, t1).unwrap();
        assert_eq!(ports(&registry, t1), [1001]);
        // Once expired, the id is anyone's.
        let t2 = t1 + Duration::from_secs(10);
        registry.insert(announcement(7, 6666), ip(2), t2).unwrap();
        assert_eq!(ports(&registry, t2), [6666]);
    }

    #[test]
    fn one_ip_holds_at_most_its_cap() {
        let registry = registry(100, 3);
        let t0 = Instant::now();
        for n in 1..=3 {
            let at = t0 + Duration::from_secs(u64::from(n));
            registry.insert(announcement(n, 1000), ip(1), at).unwrap();
        }
        let now = t0 + Duration::from_secs(5);
        let refused = registry
            .insert(announcement(4, 1000), ip(1), now)
            .unwrap_err();
        assert_eq!(
            refused,
            Refusal::PerIpCap {
                max: 3,
                left: Duration::from_secs(6)
            }
        );
        // Refreshing a held id is no new id; another IP is not affected.
        registry.insert(announcement(1, 1001), ip(1), now).unwrap();
        registry.insert(announcement(4, 1000), ip(2), now).unwrap();
        assert_eq!(registry.len(now), 4);
    }

    #[test]
    fn a_full_table_evicts_the_ip_over_its_fair_share_first() {
        let registry = registry(10, 100);
        let t0 = Instant::now();
        // Three peers announce once, first of all: the stalest entries.
        for n in 1..=3u8 {
            registry
                .insert(announcement(u32::from(n), 1000 + u16::from(n)), ip(n), t0)
                .unwrap();
        }
        // Two addresses fill the table and go on.
        let mut id = 100;
        for round in 0..20 {
            for flooder in [10u8, 11] {
                id += 1;
                let at = t0 + Duration::from_millis(round * 10 + 1);
                registry
                    .insert(announcement(id, 2000), ip(flooder), at)
                    .unwrap();
            }
        }
        let now = t0 + Duration::from_secs(1);
        let legit: Vec<u16> = registry.list(100, now, |a, _| {
            (a.addr.port() != 2000).then_some(a.addr.port())
        });
        assert_eq!(
            legit,
            [1003, 1002, 1001],
            "the peers that announced once stay"
        );
        assert_eq!(registry.len(now), 10);
        // With nobody over its share, the stalest entry goes.
        let registry = registry_of_equals(t0);
        registry.insert(announcement(99, 3000), ip(9), now).unwrap();
        assert_eq!(ports(&registry, now).last(), Some(&1002));
    }

    #[test]
    fn exported_announcements_restore_with_their_age() {
        let original = registry(10, 10);
        let t0 = Instant::now();
        for n in 1..=3u8 {
            let at = t0 + Duration::from_secs(u64::from(n));
            original
                .insert(announcement(u32::from(n), 1000 + u16::from(n)), ip(n), at)
                .unwrap();
        }
        let now = t0 + Duration::from_secs(4);
        let saved = original.export(now);
        let ages: Vec<u64> = saved.iter().map(|(_, _, age)| age.as_secs()).collect();
        assert_eq!(ages, [3, 2, 1], "oldest first");
        assert_eq!(saved[0].1, ip(1));

        let later = now + Duration::from_secs(100);
        let restored = registry(10, 10);
        for (announcement, source, age) in saved {
            assert_eq!(restored.restore(announcement, source, age, later), Ok(true));
        }
        assert_eq!(
            restored.restore(announcement(9, 9), ip(9), Duration::from_secs(10), later),
            Ok(false),
            "one TTL old: expired"
        );
        assert_eq!(ports(&restored, later), [1003, 1002, 1001]);
        // Each expires one TTL (10 s) after it was first made: the oldest 7 s from `later`.
        assert_eq!(
            ports(&restored, later + Duration::from_secs(7)),
            [1003, 1002]
        );
        // Restored entries still belong to their source.
        let refused = restored.insert(announcement(3, 9), ip(9), later);
        assert!(matches!(refused, Err(Refusal::Owned { .. })), "{refused:?}");
    }

    /// Four IPs with one entry each, the first announced first, in a table of four.
    fn registry_of_equals(t0: Instant) -> Registry {
        let registry = registry(4, 100);
        for (n, source) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
            let at = t0 + Duration::from_millis(u64::from(n));
            registry
                .insert(announcement(n, 1000 + n as u16), ip(source), at)
                .unwrap();
        }
        registry
    }
}
