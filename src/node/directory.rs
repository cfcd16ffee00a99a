//! The node-wide peer directory: which shard holds which peer, who connected most recently,
//! and which addresses are being dialled.
//!
//! Every shard's engine reads it while it handles datagrams, and the shards write it when
//! they apply their engines' effects, so it takes no lock: the maps are lock-free hash tables
//! (papaya), and each shard publishes its own most recent peers as a snapshot (arc-swap).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use setowire_core::proto::identity::Id8;
use setowire_core::swarm::node_view::{PeerLocation, ShardId, DIAL_MEMORY};

/// Randomly keyed fast hashing: ids and addresses are chosen by the peers.
type FastMap<K, V> = papaya::HashMap<K, V, ahash::RandomState>;

/// Peers come and go all the time: blocking resizes trade a rare slow insert for cheaper
/// writes and reads the rest of the time.
fn fast_map<K, V>() -> FastMap<K, V> {
    papaya::HashMap::builder()
        .hasher(ahash::RandomState::new())
        .resize_mode(papaya::ResizeMode::Blocking)
        .build()
}

pub struct PeerDirectory {
    by_id: FastMap<Id8, PeerLocation>,
    by_addr: FastMap<SocketAddr, Id8>,
    recent: RecentPeers,
    dials: FastMap<SocketAddr, Instant>,
    dials_cap: usize,
    /// Entries in `by_id`: papaya's own length is approximate while writers race.
    peers: AtomicUsize,
}

impl PeerDirectory {
    /// A directory for `shards` shards. `recent_cap`: how many recent peers readers ask for
    /// at most; `dials_cap`: addresses being dialled at once, node-wide.
    pub fn new(shards: usize, recent_cap: usize, dials_cap: usize) -> Self {
        Self {
            by_id: fast_map(),
            by_addr: fast_map(),
            recent: RecentPeers::new(shards, recent_cap),
            dials: fast_map(),
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
        self.recent.connected(location);
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
        self.recent.disconnected(location);
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
        self.recent.newest(n)
    }

    /// The addresses of up to `n` connected peers, in no particular order.
    pub fn addresses(&self, n: usize) -> Vec<SocketAddr> {
        self.by_id
            .pin()
            .values()
            .map(|location| location.addr)
            .take(n)
            .collect()
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

/// Each shard's most recently connected peers, newest first, as a snapshot the shard
/// replaces whenever one of its peers comes or goes. Readers merge the shards' snapshots by
/// the order the sessions were made in, without a lookup per peer.
struct RecentPeers {
    shards: Box<[ArcSwap<Vec<Recent>>]>,
    /// Orders sessions across shards.
    made: AtomicU64,
    /// Peers kept per shard: twice what a reader asks for, so that peers leaving do not
    /// leave the list short until others arrive.
    keep: usize,
}

#[derive(Clone, Copy)]
struct Recent {
    made: u64,
    location: PeerLocation,
}

impl RecentPeers {
    fn new(shards: usize, keep: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| ArcSwap::default()).collect(),
            made: AtomicU64::new(0),
            keep: 2 * keep.max(1),
        }
    }

    fn connected(&self, location: PeerLocation) {
        let Some(list) = self.shards.get(location.shard) else {
            return;
        };
        let newest = Recent {
            made: self.made.fetch_add(1, Ordering::Relaxed),
            location,
        };
        // Only the shard itself writes its list; rcu keeps it right even if that changes.
        list.rcu(|old| {
            let kept = old.iter().filter(|r| r.location.id8 != location.id8);
            let mut list = Vec::with_capacity(self.keep);
            list.push(newest);
            list.extend(kept.take(self.keep - 1).copied());
            list
        });
    }

    fn disconnected(&self, location: &PeerLocation) {
        let Some(list) = self.shards.get(location.shard) else {
            return;
        };
        if list.load().iter().any(|r| r.location == *location) {
            list.rcu(|old| {
                old.iter()
                    .filter(|r| r.location != *location)
                    .copied()
                    .collect::<Vec<_>>()
            });
        }
    }

    /// Up to `n` peers, newest first; a peer listed by two shards (it reconnected on
    /// another before the first noticed) counts where it connected last.
    fn newest(&self, n: usize) -> Vec<PeerLocation> {
        let snapshots: Vec<_> = self.shards.iter().map(ArcSwap::load).collect();
        // Each list is newest first: merge them, taking the newest head each time.
        let mut next = vec![0usize; snapshots.len()];
        let mut found: Vec<PeerLocation> = Vec::with_capacity(n);
        while found.len() < n {
            let newest = (0..snapshots.len())
                .filter_map(|s| snapshots[s].get(next[s]).map(|r| (r.made, s)))
                .max();
            let Some((_, shard)) = newest else { break };
            let recent = snapshots[shard][next[shard]];
            next[shard] += 1;
            if !found.iter().any(|f| f.id8 == recent.location.id8) {
                found.push(recent.location);
            }
        }
        found
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
        let d = PeerDirectory::new(2, 4, 16);
        d.insert(at(1, 0));
        d.insert(at(2, 1));
        assert_eq!(d.len(), 2);
        assert_eq!(d.locate(&[2; 8]), Some(at(2, 1)));
        assert!(d.has_addr(&at(1, 0).addr));
        assert_eq!(d.addresses(1).len(), 1);
        let mut addrs = d.addresses(10);
        addrs.sort();
        assert_eq!(addrs, [at(1, 0).addr, at(2, 1).addr]);
        d.remove(&at(1, 0));
        assert_eq!(d.len(), 1);
        assert!(d.locate(&[1; 8]).is_none());
        assert!(!d.has_addr(&at(1, 0).addr));
        assert_eq!(d.addresses(10), [at(2, 1).addr]);
    }

    #[test]
    fn a_stale_disconnect_does_not_remove_a_reconnected_peer() {
        let d = PeerDirectory::new(2, 4, 16);
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
        let d = PeerDirectory::new(2, 3, 16);
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
    fn recent_keeps_the_newest() {
        let d = PeerDirectory::new(2, 2, 16);
        for id in 1..=200u8 {
            d.insert(at(id, 0));
        }
        let ids: Vec<u8> = d.recent(2).iter().map(|p| p.id8[0]).collect();
        assert_eq!(ids, [200, 199]);
    }

    #[test]
    fn dials_expire_and_are_capped() {
        let d = PeerDirectory::new(2, 2, 2);
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
        let d = std::sync::Arc::new(PeerDirectory::new(2, 8, 64));
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
