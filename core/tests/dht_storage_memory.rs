//! The DHT storage's byte bound against the heap it really takes: a counting allocator
//! measures what the storage allocates, and that stays within what it charges (keys, values
//! and bookkeeping, `Storage::bytes`) through filling, replacing, fair-share evictions,
//! churn from small values to large ones, and expiry.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use setowire_core::dht::storage::{Storage, StorageLimits};
use setowire_core::dht::NodeId;
use setowire_core::ratelimit::{SourceGroup, SourceGrouping};

/// Counts the heap this thread holds, as glibc's malloc takes it: each allocation occupies
/// a chunk of its size plus an 8-byte header, rounded up to 16, at least 32.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn chunk(size: usize) -> isize {
    ((size + 8).div_ceil(16) * 16).max(32) as isize
}

fn charge(delta: isize) {
    // Ignored while the thread is being torn down.
    let _ = LIVE.try_with(|live| live.set(live.get() + delta));
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            charge(chunk(layout.size()));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        charge(-chunk(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            charge(chunk(new_size) - chunk(layout.size()));
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.with(Cell::get)
}

/// Fixed costs no entry pays for: the tables' first allocations, and the buckets of tables
/// too small to be worth shrinking.
const FIXED_SLACK: isize = 8 << 10;

struct Probe {
    base: isize,
    worst_excess: isize,
    lowest_use: f64,
}

impl Probe {
    /// Checks the live heap against what `s` charges; tracks how much of the charge is used.
    #[track_caller]
    fn check(&mut self, s: &Storage, what: &str) {
        let used = live() - self.base;
        let charged = s.bytes() as isize;
        assert!(
            used <= charged + FIXED_SLACK,
            "{what}: {used} bytes on the heap for {charged} charged ({} entries)",
            s.len()
        );
        assert!(charged <= s.limits().max_bytes as isize);
        self.worst_excess = self.worst_excess.max(used - charged);
        if charged > (1 << 20) {
            self.lowest_use = self.lowest_use.min(used as f64 / charged as f64);
        }
    }
}

fn v6_source(n: u64) -> SourceGroup {
    let ip = Ipv6Addr::from((0x2001_0db8_u128 << 96) | (u128::from(n) << 64) | 1);
    SourceGrouping::new(64).group_of(IpAddr::V6(ip))
}

fn random_key(rng: &mut StdRng) -> NodeId {
    NodeId(rng.gen())
}

#[test]
fn the_heap_taken_stays_within_the_bytes_charged() {
    let t0 = Instant::now();
    let limits = StorageLimits {
        ttl: Duration::from_secs(600),
        max_bytes: 4 << 20,
        max_per_ip: 1 << 20,
        max_value: 1200,
    };
    let mut rng = StdRng::seed_from_u64(5);
    // ahash seeds itself once per process, on the heap: not the storage's.
    let mut warm = Storage::new(limits);
    warm.put(random_key(&mut rng), "0", v6_source(0), t0)
        .unwrap();
    drop(warm);
    let mut probe = Probe {
        base: live(),
        worst_excess: isize::MIN,
        lowest_use: f64::MAX,
    };
    let mut s = Storage::new(limits);
    let mut clock = t0;
    let mut tick = |skip: Duration| {
        clock += Duration::from_millis(1) + skip;
        clock
    };
    let next = Duration::ZERO;
    // One source fills the store with tiny values: the most entries, the most bookkeeping.
    while s
        .put(random_key(&mut rng), "1", v6_source(0), tick(next))
        .is_ok()
    {}
    probe.check(&s, "full of tiny values");
    let tiny = s.len();
    // Thousands of sources, one tiny value each, evict it down to its fair share.
    for n in 1..=3000 {
        s.put(random_key(&mut rng), "2", v6_source(n), tick(next))
            .unwrap();
        if n % 500 == 0 {
            probe.check(&s, "many sources");
        }
    }
    assert!(s.sources() > 3000);
    // They all expire, and large values from a few sources take their place: the tables
    // now hold a fraction of the entries they grew for.
    let big = "x".repeat(1200);
    s.put(
        random_key(&mut rng),
        &big,
        v6_source(10_000),
        tick(limits.ttl),
    )
    .unwrap();
    for i in 0..20_000u64 {
        let _ = s.put(
            random_key(&mut rng),
            &big,
            v6_source(10_000 + i % 4),
            tick(next),
        );
        if i % 1000 == 0 {
            probe.check(&s, "large values");
        }
    }
    assert!(s.len() * 3 < tiny, "{} entries left of {tiny}", s.len());
    // Random churn: sizes, sources, replacements.
    for i in 0..30_000u64 {
        let len = rng.gen_range(0..=1200);
        let source = v6_source(rng.gen_range(0..200));
        let _ = s.put(random_key(&mut rng), &big[..len], source, tick(next));
        if i % 1000 == 0 {
            probe.check(&s, "churn");
        }
    }
    // All of it expires.
    s.expire(tick(limits.ttl));
    assert_eq!((s.len(), s.bytes()), (0, 0));
    probe.check(&s, "expired");
    drop((s, big));
    assert_eq!(live(), probe.base, "the storage leaks");
    // The charge is a bound, not a wild overestimate.
    assert!(probe.lowest_use > 0.3, "{}", probe.lowest_use);
    eprintln!(
        "worst heap minus charge {} bytes; lowest heap/charge {:.2}",
        probe.worst_excess, probe.lowest_use
    );
}
