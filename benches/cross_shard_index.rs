//! The node-wide peer index under a cross-shard workload: the lock-free `PeerDirectory` the
//! shards share now, beside the `RwLock<PeerIndex>` they shared before.
//!
//! One shard's thread is measured while another thread plays the other shard. Each does
//! what a shard's engine does with the index when peers come and go: for every handshake,
//! the questions a handshake asks (is the address being dialled, is it connected, the node's
//! peer count, the recent peers to introduce the newcomer to, where a relay target is), and
//! the writes it makes (the new session recorded, an old one removed). `reads_per_write`
//! sets how many read-only operations (locate, address check, dial check) come between
//! writes: 0 is a handshake storm, 64 a node relaying and dialling among steady peers.
//! 20 000 peers are connected before measuring.
//!
//! Run: `cargo bench --bench cross_shard_index`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use setowire_core::swarm::node_view::PeerLocation;
use setowire_core::swarm::single_node::PeerIndex;
use setowire_node::node::directory::PeerDirectory;

const STEADY_PEERS: u32 = 20_000;
/// Peers one introduction names (the default gossip fan-out, plus the newcomer).
const RECENT: usize = 17;

/// The operations both indexes offer, as a shard uses them.
trait Index: Send + Sync {
    fn insert(&self, location: PeerLocation);
    fn remove(&self, location: &PeerLocation);
    fn locate(&self, location: &PeerLocation) -> bool;
    fn has_addr(&self, addr: &SocketAddr) -> bool;
    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool;
    fn len(&self) -> usize;
    fn recent(&self, n: usize) -> usize;
}

impl Index for PeerDirectory {
    fn insert(&self, location: PeerLocation) {
        PeerDirectory::insert(self, location)
    }
    fn remove(&self, location: &PeerLocation) {
        PeerDirectory::remove(self, location)
    }
    fn locate(&self, location: &PeerLocation) -> bool {
        PeerDirectory::locate(self, &location.id8).is_some()
    }
    fn has_addr(&self, addr: &SocketAddr) -> bool {
        PeerDirectory::has_addr(self, addr)
    }
    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        PeerDirectory::is_dialing(self, addr, now)
    }
    fn len(&self) -> usize {
        PeerDirectory::len(self)
    }
    fn recent(&self, n: usize) -> usize {
        PeerDirectory::recent(self, n).len()
    }
}

impl Index for RwLock<PeerIndex> {
    fn insert(&self, location: PeerLocation) {
        self.write().unwrap().insert(location)
    }
    fn remove(&self, location: &PeerLocation) {
        self.write().unwrap().remove(&location.id8)
    }
    fn locate(&self, location: &PeerLocation) -> bool {
        self.read().unwrap().locate(&location.id8).is_some()
    }
    fn has_addr(&self, addr: &SocketAddr) -> bool {
        self.read().unwrap().has_addr(addr)
    }
    fn is_dialing(&self, addr: &SocketAddr, now: Instant) -> bool {
        self.read().unwrap().is_dialing(addr, now)
    }
    fn len(&self) -> usize {
        self.read().unwrap().len()
    }
    fn recent(&self, n: usize) -> usize {
        self.read().unwrap().recent(n).len()
    }
}

fn location(shard: usize, n: u32) -> PeerLocation {
    let [a, b, c, d] = n.to_be_bytes();
    PeerLocation {
        id8: [shard as u8, a, b, c, d, 1, 2, 3],
        addr: SocketAddr::from(([127, shard as u8 + 1, c, d], 1024 + u16::from(b))),
        shard,
    }
}

/// One handshake's worth of index work by `shard`, then `reads` read-only operations.
fn shard_round(index: &dyn Index, shard: usize, round: u32, reads: u32, now: Instant) {
    // Newcomers take ids above the steady peers; the previous one leaves.
    let newcomer = location(shard, STEADY_PEERS + round % 1024);
    black_box(index.is_dialing(&newcomer.addr, now));
    black_box(index.has_addr(&newcomer.addr));
    black_box(index.len());
    index.insert(newcomer);
    black_box(index.recent(RECENT));
    index.remove(&location(shard, STEADY_PEERS + (round + 1) % 1024));
    for read in 0..reads {
        let other = location(1 - shard, (round.wrapping_mul(31) + read) % STEADY_PEERS);
        black_box(index.locate(&other));
        black_box(index.has_addr(&other.addr));
        black_box(index.is_dialing(&other.addr, now));
    }
}

fn filled(index: &dyn Index) {
    for shard in 0..2 {
        for n in 0..STEADY_PEERS {
            index.insert(location(shard, n));
        }
    }
}

fn cross_shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("cross_shard_index");
    group.throughput(Throughput::Elements(1));
    for reads_per_write in [0u32, 64] {
        let indexes: [(&str, Arc<dyn Index>); 2] = [
            (
                "rwlock",
                Arc::new(RwLock::new(PeerIndex::new(RECENT, 4096))),
            ),
            ("lock_free", Arc::new(PeerDirectory::new(2, RECENT, 4096))),
        ];
        for (name, index) in indexes {
            filled(&*index);
            let other_shard_runs = Arc::new(AtomicBool::new(true));
            let other_shard = {
                let index = Arc::clone(&index);
                let runs = Arc::clone(&other_shard_runs);
                std::thread::spawn(move || {
                    let mut round = 0u32;
                    let started = Instant::now();
                    // Bounded even if the measurement never ends it.
                    while runs.load(Ordering::Relaxed)
                        && started.elapsed() < Duration::from_secs(300)
                    {
                        shard_round(&*index, 1, round, reads_per_write, Instant::now());
                        round = round.wrapping_add(1);
                    }
                })
            };
            let mut round = 0u32;
            let now = Instant::now();
            group.bench_function(BenchmarkId::new(name, reads_per_write), |b| {
                b.iter(|| {
                    shard_round(&*index, 0, round, reads_per_write, now);
                    round = round.wrapping_add(1);
                })
            });
            other_shard_runs.store(false, Ordering::Relaxed);
            other_shard.join().unwrap();
        }
    }
    group.finish();
}

criterion_group!(benches, cross_shard);
criterion_main!(benches);
