//! The routing table: 160 buckets by XOR-distance prefix, at most [`K`] nodes each, holding
//! only nodes that answered one of our requests at the address recorded.
//!
//! Lookups ([`RoutingTable::closest_iter`]) walk the buckets nearest-first instead of
//! measuring every node: each bucket's nodes are a contiguous run of the whole table ordered
//! by distance to any target, so only the buckets that hold the answer are read and sorted.

use std::fmt;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::id::{Distance, NodeId, ID_BITS};
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
    /// The id as a number ([`NodeId::key`]): XOR with a target's is the distance's key.
    key: (u128, u32),
    /// The node as FOUND_NODE lists it, rendered once: kept in step with `contact`.
    json: NodeJson,
}

impl Entry {
    fn new(contact: Contact, now: Instant) -> Entry {
        Entry {
            key: contact.id.key(),
            json: NodeJson::of(&contact),
            contact,
            last_seen: now,
            failures: 0,
        }
    }

    fn evictable(&self, now: Instant, stale_after: Duration) -> bool {
        self.failures > 0 || now.saturating_duration_since(self.last_seen) >= stale_after
    }

    /// `{"id": "<40 hex>", "ip": "<ip>", "port": <port>}`: the node as a FOUND_NODE message
    /// lists it, in `SimpleDHT`'s spelling.
    pub fn json(&self) -> &str {
        self.json.as_str()
    }

    pub(crate) fn json_bytes(&self) -> &[u8] {
        self.json.as_bytes()
    }
}

/// Longest [`Entry::json`]: 40 hex digits, an IPv6 address of 39 characters and a 5-digit
/// port in the 29 bytes of punctuation.
const NODE_JSON_MAX: usize = 40 + 39 + 5 + 29;

/// [`Entry::json`], held inline so that a reply reads it from the entry itself.
#[derive(Clone, PartialEq, Eq)]
struct NodeJson {
    len: u8,
    text: [u8; NODE_JSON_MAX],
}

impl NodeJson {
    fn of(contact: &Contact) -> NodeJson {
        let mut text = String::with_capacity(NODE_JSON_MAX);
        text.push_str("{\"id\": \"");
        contact.id.write_hex(&mut text);
        let _ = write!(
            text,
            "\", \"ip\": \"{}\", \"port\": {}}}",
            contact.addr.ip(),
            contact.addr.port()
        );
        assert!(text.len() <= NODE_JSON_MAX, "{text}");
        let mut json = NodeJson {
            len: text.len() as u8,
            text: [0; NODE_JSON_MAX],
        };
        json.text[..text.len()].copy_from_slice(text.as_bytes());
        json
    }

    fn as_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }

    fn as_str(&self) -> &str {
        // Written from a `String` above.
        std::str::from_utf8(self.as_bytes()).expect("UTF-8")
    }
}

impl fmt::Debug for NodeJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
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
    /// One more than the deepest non-empty bucket (0 when empty): lookups stop there.
    depth: usize,
}

impl RoutingTable {
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            buckets: (0..ID_BITS).map(|_| Vec::new()).collect(),
            len: 0,
            depth: 0,
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
        let index = self.me.bucket_of(&contact.id);
        let bucket = &mut self.buckets[index];
        if let Some(pos) = bucket.iter().position(|e| e.contact.id == contact.id) {
            if bucket[pos].contact.addr != contact.addr && !bucket[pos].evictable(now, stale_after)
            {
                return Admission::AddressConflict;
            }
            let mut entry = bucket.remove(pos);
            if entry.contact.addr != contact.addr {
                entry.contact.addr = contact.addr;
                entry.json = NodeJson::of(&entry.contact);
            }
            entry.last_seen = now;
            entry.failures = 0;
            bucket.push(entry);
            return Admission::Updated;
        }
        let fresh = Entry::new(contact, now);
        if bucket.len() < K {
            bucket.push(fresh);
            self.len += 1;
            self.depth = self.depth.max(index + 1);
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
        let index = self.me.bucket_of(id);
        let bucket = &mut self.buckets[index];
        let Some(pos) = bucket.iter().position(|e| e.contact.id == *id) else {
            return false;
        };
        bucket[pos].failures = bucket[pos].failures.saturating_add(1);
        if bucket[pos].failures >= max_failures {
            self.remove_at(index, pos);
            return true;
        }
        false
    }

    pub fn remove(&mut self, id: &NodeId) -> bool {
        let index = self.me.bucket_of(id);
        match self.buckets[index].iter().position(|e| e.contact.id == *id) {
            Some(pos) => {
                self.remove_at(index, pos);
                true
            }
            None => false,
        }
    }

    fn remove_at(&mut self, index: usize, pos: usize) {
        self.buckets[index].remove(pos);
        self.len -= 1;
        while self.depth > 0 && self.buckets[self.depth - 1].is_empty() {
            self.depth -= 1;
        }
    }

    /// The `n` nodes closest to `target`, closest first.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut out = Vec::with_capacity(n.min(self.len));
        out.extend(self.closest_iter(target, n).map(|e| e.contact));
        out
    }

    /// The `n` nodes closest to `target`, closest first, read lazily: this costs about the
    /// sorting of the buckets they come from, whatever the table's size.
    pub fn closest_iter<'a>(&'a self, target: &NodeId, n: usize) -> Closest<'a> {
        Closest {
            remaining: n,
            buckets: &self.buckets[..self.depth],
            to_me: self.me.distance(target),
            target: target.key(),
            up: 0,
            down: self.depth,
            bucket: &[],
            order: [0; K],
            len: 0,
            pos: 0,
        }
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

/// The table's nodes nearest-first to a target ([`RoutingTable::closest_iter`]).
///
/// Seen from a target `t`, with `D` = our id XOR `t`: a node of bucket `i` shares its first
/// `i` bits with us, so its distance to `t` has the first `i` bits of `D` and then `D`'s bit
/// `i` flipped. Two buckets `a < b` therefore never interleave: bucket `a`'s nodes are all
/// closer than bucket `b`'s when bit `a` of `D` is 1, all farther when it is 0. Nearest-first,
/// the buckets come as those whose bit of `D` is 1, shallowest first, then those whose bit
/// is 0, deepest first; only the nodes within a bucket need sorting.
pub struct Closest<'a> {
    /// Buckets past the deepest non-empty one are left out.
    buckets: &'a [Vec<Entry>],
    /// Nodes still to give.
    remaining: usize,
    to_me: Distance,
    /// The target as a number: XOR with an entry's `key` is the distance's key.
    target: (u128, u32),
    /// Next bucket looked at among those whose bit of `D` is 1 (counting up)...
    up: usize,
    /// ...then one past the next among those whose bit is 0 (counting down).
    down: usize,
    /// The bucket being read, and the indexes of its nodes nearest-first, `pos` of `len`
    /// done.
    bucket: &'a [Entry],
    order: [u8; K],
    len: usize,
    pos: usize,
}

impl<'a> Closest<'a> {
    fn next_bucket(&mut self) -> Option<(usize, &'a [Entry])> {
        let buckets = self.buckets;
        while self.up < buckets.len() {
            let i = self.up;
            self.up += 1;
            if self.to_me.bit(i) && !buckets[i].is_empty() {
                return Some((i, &buckets[i]));
            }
        }
        while self.down > 0 {
            self.down -= 1;
            let i = self.down;
            if !self.to_me.bit(i) && !buckets[i].is_empty() {
                return Some((i, &buckets[i]));
            }
        }
        None
    }

    /// Orders bucket `index`'s nodes by distance into `order`.
    ///
    /// Their distances share the first `index + 1` bits, so the 59 bits after those nearly
    /// always tell them apart: those bits and the node's index go in one `u64` each, and
    /// plain machine words sort quickly (several times faster than the whole 160-bit
    /// distances). When two share those 59 bits too (ids crafted to), the whole distances
    /// are sorted.
    fn sort_bucket(&mut self, index: usize, bucket: &'a [Entry]) {
        debug_assert!(bucket.len() <= K);
        let len = bucket.len().min(K);
        let target = self.target;
        let mut keys = [0u64; K];
        for (i, (key, e)) in keys.iter_mut().zip(&bucket[..len]).enumerate() {
            let bits = window(e.key.0 ^ target.0, e.key.1 ^ target.1, index + 1);
            *key = (bits & !INDEX_MASK) | i as u64;
        }
        // Only the nodes still wanted need their place: the nearest `wanted`, in order.
        let wanted = len.min(self.remaining);
        let keys = &mut keys[..len];
        let mut distinct = true;
        if wanted < len {
            keys.select_nth_unstable(wanted - 1);
            let last = keys[wanted - 1] & !INDEX_MASK;
            distinct = keys[wanted..].iter().all(|k| k & !INDEX_MASK != last);
        }
        let keys = &mut keys[..wanted];
        keys.sort_unstable();
        distinct &= keys
            .windows(2)
            .all(|pair| pair[0] & !INDEX_MASK != pair[1] & !INDEX_MASK);
        if distinct {
            for (slot, key) in self.order.iter_mut().zip(keys.iter()) {
                *slot = (key & INDEX_MASK) as u8;
            }
        } else {
            // Ids are distinct, so are their distances: the order is total.
            let mut full = [(0u128, 0u32, 0u8); K];
            for (slot, (i, e)) in full.iter_mut().zip(bucket[..len].iter().enumerate()) {
                *slot = (e.key.0 ^ target.0, e.key.1 ^ target.1, i as u8);
            }
            full[..len].sort_unstable();
            for (slot, (_, _, i)) in self.order.iter_mut().zip(&full[..len]) {
                *slot = *i;
            }
        }
        self.bucket = bucket;
        self.len = wanted;
        self.pos = 0;
    }
}

/// The low bits of a [`Closest::sort_bucket`] key, holding a node's index in its bucket.
const INDEX_MASK: u64 = (K as u64).next_power_of_two() - 1;

/// Bits `shift..shift + 64` of a 160-bit distance given as its first 128 bits and its last
/// 32 (zeros past the end).
fn window(hi: u128, lo: u32, shift: usize) -> u64 {
    if shift < 32 {
        ((hi << shift) >> 64) as u64
    } else if shift < 160 {
        // Bits 32..160.
        let wide = (hi << 32) | u128::from(lo);
        ((wide << (shift - 32)) >> 64) as u64
    } else {
        0
    }
}

impl<'a> Iterator for Closest<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        if self.remaining == 0 {
            return None;
        }
        while self.pos == self.len {
            let (index, bucket) = self.next_bucket()?;
            self.sort_bucket(index, bucket);
        }
        let i = self.order[self.pos];
        self.pos += 1;
        self.remaining -= 1;
        Some(&self.bucket[usize::from(i)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
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

    /// An id in bucket `depth` of `me`: the first `depth` bits shared, the next flipped, the
    /// rest random.
    fn in_bucket(me: &NodeId, depth: usize, rng: &mut StdRng) -> NodeId {
        let mut id = NodeId::random(rng);
        for bit in 0..=depth {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let want = if bit == depth {
                !me.0[byte] & mask
            } else {
                me.0[byte] & mask
            };
            id.0[byte] = (id.0[byte] & !mask) | want;
        }
        id
    }

    fn brute_force(table: &RoutingTable, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut all: Vec<Contact> = table.iter().map(|e| e.contact).collect();
        all.sort_by_key(|c| c.id.distance(target));
        all.truncate(n);
        all
    }

    proptest! {
        /// The bucket walk gives exactly what measuring every node gives: the same nodes in
        /// the same order, for tables with shallow and deep buckets, after removals, and for
        /// targets anywhere (our own id, a known node's, next to either).
        #[test]
        fn closest_matches_brute_force(
            seed: u64,
            count in 0usize..500,
            removals in 0usize..60,
            n in 0usize..70,
        ) {
            let t0 = Instant::now();
            let mut rng = StdRng::seed_from_u64(seed);
            let me = NodeId::random(&mut rng);
            let mut table = RoutingTable::new(me);
            for i in 0..count {
                let depth = if rng.gen_bool(0.6) {
                    rng.gen_range(0..10)
                } else {
                    rng.gen_range(0..ID_BITS)
                };
                let id = in_bucket(&me, depth, &mut rng);
                table.admit(contact(id, i as u16 + 1), t0, STALE);
            }
            let ids: Vec<NodeId> = table.iter().map(|e| e.contact.id).collect();
            for _ in 0..removals.min(ids.len()) {
                let id = ids[rng.gen_range(0..ids.len())];
                if rng.gen_bool(0.5) {
                    table.remove(&id);
                } else {
                    table.failed(&id, 1);
                }
            }
            let mut targets = vec![me, NodeId::random(&mut rng)];
            for _ in 0..4 {
                let depth = rng.gen_range(0..ID_BITS);
                targets.push(in_bucket(&me, depth, &mut rng));
            }
            if let Some(e) = table.iter().next() {
                let known = e.contact.id;
                targets.push(known);
                let depth = rng.gen_range(0..ID_BITS);
                targets.push(in_bucket(&known, depth, &mut rng));
            }
            for target in &targets {
                prop_assert_eq!(table.closest(target, n), brute_force(&table, target, n));
                let all: Vec<Contact> = table
                    .closest_iter(target, usize::MAX)
                    .map(|e| e.contact)
                    .collect();
                prop_assert_eq!(all, brute_force(&table, target, usize::MAX));
            }
            let deepest = table.buckets.iter().rposition(|b| !b.is_empty());
            prop_assert_eq!(table.depth, deepest.map_or(0, |i| i + 1));
        }
    }

    #[test]
    fn windows_take_64_bits_from_anywhere() {
        let id = NodeId::random(&mut rand::thread_rng());
        let (hi, lo) = Distance(id.0).key();
        for shift in 0..=ID_BITS {
            let want = (0..64).fold(0u64, |w, b| {
                let bit = shift + b;
                (w << 1) | u64::from(bit < ID_BITS && Distance(id.0).bit(bit))
            });
            assert_eq!(window(hi, lo, shift), want, "shift {shift}");
        }
    }

    #[test]
    fn nodes_alike_for_64_bits_are_still_ordered() {
        let t0 = Instant::now();
        let me = NodeId([0; 20]);
        let mut table = RoutingTable::new(me);
        let mut rng = rand::thread_rng();
        // Bucket 0, all sharing bits 1..=71: only their last 88 bits tell them apart.
        let mut base = NodeId::random(&mut rng);
        base.0[0] |= 0x80;
        for n in 0..K as u16 {
            let mut id = NodeId::random(&mut rng);
            id.0[..9].copy_from_slice(&base.0[..9]);
            table.admit(contact(id, n + 1), t0, STALE);
        }
        assert_eq!(table.len(), K);
        for _ in 0..20 {
            let target = NodeId::random(&mut rng);
            assert_eq!(table.closest(&target, K), brute_force(&table, &target, K));
        }
    }

    #[test]
    fn entries_carry_their_found_node_spelling() {
        let t0 = Instant::now();
        let mut table = RoutingTable::new(NodeId([0; 20]));
        table.admit(contact(far(1), 7), t0, STALE);
        let json = |table: &RoutingTable| table.get(&far(1)).unwrap().json().to_owned();
        assert_eq!(
            json(&table),
            format!(r#"{{"id": "{}", "ip": "127.0.0.1", "port": 7}}"#, far(1))
        );
        // A new address (once the old one failed) is spelled anew.
        table.failed(&far(1), 3);
        let v6 = Contact {
            id: far(1),
            addr: "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
                .parse()
                .unwrap(),
        };
        assert_eq!(table.admit(v6, t0, STALE), Admission::Updated);
        assert_eq!(
            json(&table),
            format!(
                r#"{{"id": "{}", "ip": "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "port": 65535}}"#,
                far(1)
            )
        );
        assert_eq!(json(&table).len(), NODE_JSON_MAX);
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
