//! The node-wide peer directory: which shard holds which peer, who connected most recently,
//! and which addresses are being dialled.
//!
//! Every shard's engine reads it while it handles datagrams, and the shards write it when
//! they apply their engines' effects, so it takes no lock: the maps are lock-free hash tables
//! (papaya), and the recently-connected list is a ring of atomic slots.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use setowire_core::proto::identity::Id8;
use setowire_core::swarm::node_view::{PeerLocation, ShardId, DIAL_MEMORY};

/// Randomly keyed fast hashing: ids and addresses are chosen by the peers.
type FastMap<K, V> = papaya::HashMap<K, V, ahash::RandomState>;

pub struct PeerDirectory {
    by_id: FastMap<Id8, PeerLocation>,
    by_addr: FastMap<SocketAddr, Id8>,
    recent: RecentRing,
    dials: FastMap<SocketAddr, Instant>,
    dials_cap: usize,
    /// Entries in `by_id`: papaya's own length is approximate while writers race.
    peers: AtomicUsize,
}

impl PeerDirectory {
    /// `recent_cap`: how many recent peers readers ask for at most; `dials_cap`: addresses
    /// being dialled at once, node-wide.
    pub fn new(recent_cap: usize, dials_cap: usize) -> Self {
        Self {
            by_id: FastMap::default(),
            by_addr: FastMap::default(),
            recent: RecentRing::new(recent_cap),
            dials: FastMap::default(),
            dials_cap,
            peers: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.peers.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a session; replaces the peer's record if it was connected elsewhere.
    pub fn insert(&self, location: PeerLocation) {
        let by_id = self.by_id.pin();
        match by_id.insert(location.id8, location) {
            Some(old) if old.addr != location.addr => {
                self.remove_addr(old.addr, &location.id8);
            }
            Some(_) => {}
            None => {
                self.peers.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.by_addr.pin().insert(location.addr, location.id8);
        self.dials.pin().remove(&location.addr);
        self.recent.push(&location.id8);
    }

    /// Forgets the session `location` names, unless the peer has since connected on
    /// another shard or from another address.
    pub fn remove(&self, location: &PeerLocation) {
        let removed = self
            .by_id
            .pin()
            .remove_if(&location.id8, |_, now| {
                now.shard == location.shard && now.addr == location.addr
            })
            .ok()
            .flatten()
            .is_some();
        if removed {
            self.peers.fetch_sub(1, Ordering::Relaxed);
            self.remove_addr(location.addr, &location.id8);
        }
    }

    fn remove_addr(&self, addr: SocketAddr, id8: &Id8) {
        let _ = self.by_addr.pin().remove_if(&addr, |_, owner| owner == id8);
    }

    pub fn locate(&self, id8: &Id8) -> Option<PeerLocation> {
        self.by_id.pin().get(id8).copied()
    }

    pub fn has_addr(&self, addr: &SocketAddr) -> bool {
        self.by_addr.pin().contains_key(addr)
    }

    /// Up to `n` connected peers, most recently connected first.
    pub fn recent(&self, n: usize) -> Vec<PeerLocation> {
        let by_id = self.by_id.pin();
        let mut found: Vec<PeerLocation> = Vec::with_capacity(n);
        for id8 in self.recent.newest_first() {
            if found.len() >= n {
                break;
            }
            if let Some(location) = by_id.get(&id8) {
                if !found.iter().any(|f| f.id8 == id8) {
                    found.push(*location);
                }
            }
        }
        found
    }

    pub fn note_dial(&self, addr: SocketAddr, at: Instant) {
        let dials = self.dials.pin();
        if dials.len() >= self.dials_cap {
            dials.retain(|_, started| at.saturating_duration_since(*started) < DIAL_MEMORY);
        }
        if dials.len() < self.dials_cap {
            dials.insert(addr, at);
        }
    }

    pub fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.dials
            .pin()
            .get(addr)
            .is_some_and(|at| now.saturating_duration_since(*at) < DIAL_MEMORY)
    }

    /// The shard holding `id8`, if any.
    pub fn shard_of(&self, id8: &Id8) -> Option<ShardId> {
        self.locate(id8).map(|p| p.shard)
    }
}

/// The ids of the most recently connected peers, newest last, in a fixed ring of atomic
/// slots. Writers never wait; a reader may see a slot being overwritten as the newer id,
/// which is as recent. Peers that left are skipped by the reader (they are not in the
/// directory any more), as are repeats, so the ring is larger than what readers ask for.
struct RecentRing {
    slots: Box<[AtomicU64]>,
    /// Ids pushed so far; the next goes to `pushed % slots.len()`.
    pushed: AtomicU64,
}

/// Slots per id a reader asks for: room for peers that left or reconnected since.
const RECENT_SLACK: usize = 8;

impl RecentRing {
    fn new(readers_ask_for: usize) -> Self {
        let len = (readers_ask_for.max(1) * RECENT_SLACK).next_power_of_two();
        Self {
            slots: (0..len).map(|_| AtomicU64::new(0)).collect(),
            pushed: AtomicU64::new(0),
        }
    }

    fn push(&self, id8: &Id8) {
        let at = self.pushed.fetch_add(1, Ordering::AcqRel);
        let slot = &self.slots[(at % self.slots.len() as u64) as usize];
        slot.store(u64::from_ne_bytes(*id8), Ordering::Release);
    }

    fn newest_first(&self) -> impl Iterator<Item = Id8> + '_ {
        let pushed = self.pushed.load(Ordering::Acquire);
        let len = self.slots.len() as u64;
        (0..pushed.min(len)).map(move |back| {
            let at = (pushed - 1 - back) % len;
            self.slots[at as usize]
                .load(Ordering::Acquire)
                .to_ne_bytes()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(id: u8, shard: ShardId) -> PeerLocation {
        PeerLocation {
            id8: [id; 8],
            addr: SocketAddr::from(([127, 0, 0, id], 4000)),
            shard,
        }
    }

    #[test]
    fn records_locates_and_forgets_peers() {
        let d = PeerDirectory::new(4, 16);
        d.insert(at(1, 0));
        d.insert(at(2, 1));
        assert_eq!(d.len(), 2);
        assert_eq!(d.locate(&[2; 8]), Some(at(2, 1)));
        assert!(d.has_addr(&at(1, 0).addr));
        d.remove(&at(1, 0));
        assert_eq!(d.len(), 1);
        assert!(d.locate(&[1; 8]).is_none());
        assert!(!d.has_addr(&at(1, 0).addr));
    }

    #[test]
    fn a_stale_disconnect_does_not_remove_a_reconnected_peer() {
        let d = PeerDirectory::new(4, 16);
        d.insert(at(1, 0));
        d.insert(at(1, 1));
        assert_eq!(d.len(), 1);
        d.remove(&at(1, 0));
        assert_eq!(d.locate(&[1; 8]), Some(at(1, 1)));
        d.remove(&at(1, 1));
        assert!(d.is_empty());
    }

    #[test]
    fn recent_lists_distinct_connected_peers_newest_first() {
        let d = PeerDirectory::new(3, 16);
        for id in 1..=5 {
            d.insert(at(id, 0));
        }
        d.insert(at(2, 0));
        d.remove(&at(4, 0));
        let ids: Vec<u8> = d.recent(3).iter().map(|p| p.id8[0]).collect();
        assert_eq!(ids, [2, 5, 3]);
        assert_eq!(d.recent(10).len(), 4);
    }

    #[test]
    fn recent_survives_wrapping_the_ring() {
        let d = PeerDirectory::new(2, 16);
        for id in 1..=200u8 {
            d.insert(at(id, 0));
        }
        let ids: Vec<u8> = d.recent(2).iter().map(|p| p.id8[0]).collect();
        assert_eq!(ids, [200, 199]);
    }

    #[test]
    fn dials_expire_and_are_capped() {
        let d = PeerDirectory::new(2, 2);
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c: SocketAddr = "127.0.0.1:3".parse().unwrap();
        d.note_dial(a, t0);
        d.note_dial(b, t0);
        d.note_dial(c, t0);
        assert!(d.is_dialing(&a, t0) && d.is_dialing(&b, t0));
        assert!(!d.is_dialing(&c, t0), "over the cap");
        let later = t0 + DIAL_MEMORY + Duration::from_millis(1);
        assert!(!d.is_dialing(&a, later));
        d.note_dial(c, later);
        assert!(d.is_dialing(&c, later), "expired dials make room");
        d.insert(PeerLocation {
            id8: [9; 8],
            addr: c,
            shard: 0,
        });
        assert!(!d.is_dialing(&c, later), "a session ends the dial");
    }

    #[test]
    fn shards_write_and_read_at_once() {
        let d = std::sync::Arc::new(PeerDirectory::new(8, 64));
        let writers: Vec<_> = (0..2)
            .map(|shard| {
                let d = std::sync::Arc::clone(&d);
                std::thread::spawn(move || {
                    for round in 0..2000u32 {
                        let id = (round % 100) as u8;
                        let loc = PeerLocation {
                            id8: [id, shard as u8, 0, 0, 0, 0, 0, 1],
                            addr: SocketAddr::from(([127, 1, shard as u8, id], 4000)),
                            shard,
                        };
                        d.insert(loc);
                        assert!(d.locate(&loc.id8).is_some());
                        assert!(d.recent(8).len() <= 8);
                        d.remove(&loc);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert!(d.is_empty());
    }
}
