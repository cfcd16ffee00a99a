//! The routing table: 160 buckets by XOR-distance prefix, at most [`K`] nodes each, holding
//! only nodes that answered one of our requests at the address recorded.

use std::time::{Duration, Instant};

use super::id::{NodeId, ID_BITS};
use super::message::Contact;

/// Nodes per bucket, and nodes per FIND_NODE answer (py-setowire's `K`).
pub const K: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub contact: Contact,
    /// When the node last answered us.
    pub last_seen: Instant,
    /// Requests it left unanswered since it last answered.
    pub failures: u8,
}

impl Entry {
    fn evictable(&self, now: Instant, stale_after: Duration) -> bool {
        self.failures > 0 || now.saturating_duration_since(self.last_seen) >= stale_after
    }
}

/// What [`RoutingTable::admit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Known at that address: refreshed.
    Updated,
    Added,
    /// Took the place of a stale or failing node.
    Replaced(Contact),
    /// The bucket is full of live nodes; the newcomer is not kept.
    Full,
    /// Our own id.
    IsSelf,
    /// The id is held by a live node at another address; kept as it was.
    AddressConflict,
}

pub struct RoutingTable {
    me: NodeId,
    /// Least recently seen first.
    buckets: Vec<Vec<Entry>>,
    len: usize,
}

impl RoutingTable {
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            buckets: (0..ID_BITS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        self.buckets[self.me.bucket_of(id)]
            .iter()
            .find(|e| e.contact.id == *id)
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Whether [`admit`](Self::admit) could keep `id` now: it is known, its bucket has room,
    /// or the bucket holds a stale or failing node it would replace.
    pub fn could_admit(&self, id: &NodeId, now: Instant, stale_after: Duration) -> bool {
        if *id == self.me {
            return false;
        }
        let bucket = &self.buckets[self.me.bucket_of(id)];
        bucket.len() < K
            || bucket
                .iter()
                .any(|e| e.contact.id == *id || e.evictable(now, stale_after))
    }

    /// Records that `contact` answered us from its address just now.
    pub fn admit(&mut self, contact: Contact, now: Instant, stale_after: Duration) -> Admission {
        if contact.id == self.me {
            return Admission::IsSelf;
        }
        let bucket = &mut self.buckets[self.me.bucket_of(&contact.id)];
        if let Some(pos) = bucket.iter().position(|e| e.contact.id == contact.id) {
            if bucket[pos].contact.addr != contact.addr && !bucket[pos].evictable(now, stale_after)
            {
                return Admission::AddressConflict;
            }
            let mut entry = bucket.remove(pos);
            entry.contact.addr = contact.addr;
            entry.last_seen = now;
            entry.failures = 0;
            bucket.push(entry);
            return Admission::Updated;
        }
        let fresh = Entry {
            contact,
            last_seen: now,
            failures: 0,
        };
        if bucket.len() < K {
            bucket.push(fresh);
            self.len += 1;
            return Admission::Added;
        }
        // The worst evictable node: most failures, then least recently seen.
        let victim = bucket
            .iter()
            .enumerate()
            .filter(|(_, e)| e.evictable(now, stale_after))
            .max_by_key(|(_, e)| (e.failures, std::cmp::Reverse(e.last_seen)))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                let old = bucket.remove(i);
                bucket.push(fresh);
                Admission::Replaced(old.contact)
            }
            None => Admission::Full,
        }
    }

    /// Notes that `id` left a request unanswered; removes it after `max_failures`.
    /// Returns true when it was removed.
    pub fn failed(&mut self, id: &NodeId, max_failures: u8) -> bool {
        let bucket = &mut self.buckets[self.me.bucket_of(id)];
        let Some(pos) = bucket.iter().position(|e| e.contact.id == *id) else {
            return false;
        };
        bucket[pos].failures = bucket[pos].failures.saturating_add(1);
        if bucket[pos].failures >= max_failures {
            bucket.remove(pos);
            self.len -= 1;
            return true;
        }
        false
    }

    pub fn remove(&mut self, id: &NodeId) -> bool {
        let bucket = &mut self.buckets[self.me.bucket_of(id)];
        match bucket.iter().position(|e| e.contact.id == *id) {
            Some(pos) => {
                bucket.remove(pos);
                self.len -= 1;
                true
            }
            None => false,
        }
    }

    /// The `n` nodes closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut all: Vec<(super::id::Distance, Contact)> = self
            .iter()
            .map(|e| (e.contact.id.distance(target), e.contact))
            .collect();
        if n == 0 {
            return Vec::new();
        }
        if all.len() > n {
            all.select_nth_unstable_by_key(n - 1, |(d, _)| *d);
            all.truncate(n);
        }
        all.sort_unstable_by_key(|(d, _)| *d);
        all.into_iter().map(|(_, c)| c).collect()
    }

    /// Up to `limit` nodes not heard from for `older_than`, least recently seen first.
    pub fn stale(&self, now: Instant, older_than: Duration, limit: usize) -> Vec<Contact> {
        let mut stale: Vec<&Entry> = self
            .iter()
            .filter(|e| now.saturating_duration_since(e.last_seen) >= older_than)
            .collect();
        stale.sort_by_key(|e| e.last_seen);
        stale.into_iter().take(limit).map(|e| e.contact).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.buckets.iter().flatten()
    }

    /// The size of the largest bucket (never above [`K`]).
    pub fn max_bucket_len(&self) -> usize {
        self.buckets.iter().map(Vec::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    const STALE: Duration = Duration::from_secs(900);

    fn contact(id: NodeId, port: u16) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// An id in bucket 0 seen from the all-zero id, distinct per `n`.
    fn far(n: u16) -> NodeId {
        let mut id = [0u8; 20];
        id[0] = 0x80;
        id[18..].copy_from_slice(&n.to_be_bytes());
        NodeId(id)
    }

    #[test]
    fn buckets_never_exceed_k_and_prefer_live_nodes() {
        let t0 = Instant::now();
        let mut table = RoutingTable::new(NodeId([0; 20]));
        for n in 0..K as u16 {
            assert_eq!(
                table.admit(contact(far(n), n + 1), t0, STALE),
                Admission::Added
            );
        }
        assert_eq!(
            table.admit(contact(far(100), 100), t0, STALE),
            Admission::Full
        );
        assert!(!table.could_admit(&far(100), t0, STALE));
        assert_eq!(table.len(), K);
        // A node that stops answering makes room.
        assert!(!table.failed(&far(3), 2));
        assert!(table.could_admit(&far(100), t0, STALE));
        assert_eq!(
            table.admit(contact(far(100), 100), t0, STALE),
            Admission::Replaced(contact(far(3), 4))
        );
        assert_eq!(table.len(), K);
        // So does one not heard from for a long time.
        let later = t0 + STALE;
        assert!(matches!(
            table.admit(contact(far(101), 101), later, STALE),
            Admission::Replaced(_)
        ));
        assert_eq!(table.max_bucket_len(), K);
    }

    #[test]
    fn thousands_of_nodes_stay_within_the_buckets() {
        let t0 = Instant::now();
        let me = NodeId([0x55; 20]);
        let mut table = RoutingTable::new(me);
        let mut rng = rand::thread_rng();
        for n in 0..20_000u32 {
            table.admit(contact(NodeId::random(&mut rng), n as u16), t0, STALE);
        }
        assert!(table.len() <= ID_BITS * K);
        assert_eq!(table.max_bucket_len(), K);
        assert_eq!(table.admit(contact(me, 1), t0, STALE), Admission::IsSelf);
    }

    #[test]
    fn known_ids_keep_their_address_while_alive() {
        let t0 = Instant::now();
        let mut table = RoutingTable::new(NodeId([0; 20]));
        table.admit(contact(far(1), 1), t0, STALE);
        assert_eq!(
            table.admit(contact(far(1), 2), t0, STALE),
            Admission::AddressConflict
        );
        assert_eq!(table.get(&far(1)).unwrap().contact.addr.port(), 1);
        assert_eq!(
            table.admit(contact(far(1), 1), t0, STALE),
            Admission::Updated
        );
        table.failed(&far(1), 3);
        assert_eq!(
            table.admit(contact(far(1), 2), t0, STALE),
            Admission::Updated
        );
        assert_eq!(table.get(&far(1)).unwrap().contact.addr.port(), 2);
        assert!(table.failed(&far(1), 1));
        assert!(table.is_empty());
    }

    #[test]
    fn closest_orders_by_xor_distance() {
        let t0 = Instant::now();
        let mut table = RoutingTable::new(NodeId([0; 20]));
        let mut rng = rand::thread_rng();
        let ids: Vec<NodeId> = (0..300).map(|_| NodeId::random(&mut rng)).collect();
        for (i, id) in ids.iter().enumerate() {
            table.admit(contact(*id, i as u16 + 1), t0, STALE);
        }
        let target = NodeId::random(&mut rng);
        let got = table.closest(&target, K);
        let mut want: Vec<NodeId> = table.iter().map(|e| e.contact.id).collect();
        want.sort_by_key(|id| id.distance(&target));
        want.truncate(K);
        assert_eq!(got.iter().map(|c| c.id).collect::<Vec<_>>(), want);
        assert_eq!(table.closest(&target, 0), vec![]);
        assert_eq!(table.closest(&target, 10_000).len(), table.len());
    }

    #[test]
    fn stale_lists_oldest_first() {
        let t0 = Instant::now();
        let mut table = RoutingTable::new(NodeId([0; 20]));
        table.admit(contact(far(1), 1), t0 + Duration::from_secs(10), STALE);
        table.admit(contact(far(2), 2), t0, STALE);
        table.admit(contact(far(3), 3), t0 + Duration::from_secs(100), STALE);
        let now = t0 + Duration::from_secs(60);
        let stale = table.stale(now, Duration::from_secs(30), 10);
        assert_eq!(
            stale.iter().map(|c| c.id).collect::<Vec<_>>(),
            [far(2), far(1)]
        );
        assert_eq!(table.stale(now, Duration::from_secs(30), 1).len(), 1);
    }
}
