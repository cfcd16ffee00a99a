//! Cost of the table lookups on the node's hot paths:
//!
//! - `dht_closest/N`: `RoutingTable::closest(target, 20)` — every FIND_NODE and FIND_VALUE
//!   answer and every step of an iterative lookup — on a table of N contacts, 20 in each of
//!   the first N / 20 buckets. 3000 is near the most a table can hold (3131: the deepest
//!   buckets have fewer than 20 possible ids). The lookup walks the buckets nearest-first and
//!   sorts only those the answer comes from, so both sizes should cost about the same (it
//!   used to measure every contact: ~40 ns each).
//! - `dht_find_node_request/{dht,demux}`: one whole FIND_NODE request from a verified node,
//!   in memory. `dht` hands the datagram to `Dht::handle_datagram` and drains the reply: JSON
//!   parse, routing lookup, a FOUND_NODE of 20 nodes (~1.9 kB with these random IPv4
//!   addresses). `demux` goes the way the node's shards do, through `Demux::take` (the per-IP
//!   rate limit, the shared DHT's lock) and `Demux::flush` into a socket that drops what it is
//!   given. The DHT knows 1000 nodes (20 in each of its first 50 buckets), all of them met
//!   through the PING exchange; the targets are random.
//! - `peer_directory_locate/{hit,miss}`: `PeerDirectory::locate` (the node-wide, lock-free id →
//!   shard and address) with 100 000 peers, for an id present and one absent;
//!   `peer_index_locate/{hit,miss}`: the same through a `RwLock<PeerIndex>`, how the node
//!   shared it before (`benches/cross_shard_index.rs` compares them with shards at work).
//! - `by_addr/{hit,miss}`: the lookup every received datagram starts with in the engine, source
//!   address → peer, in a `HashMap<SocketAddr, Id8, ahash::RandomState>` of 100 000 peers.
//!
//! Lookups walk the keys in a shuffled order rather than repeating one, so the table is read
//! the way a stream of datagrams from many peers reads it (mostly outside L1 and L2).
//!
//! Run: `cargo bench --bench lookups`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use setowire_core::dht::id::NodeId;
use setowire_core::dht::message::Contact;
use setowire_core::dht::routing::{Admission, RoutingTable, K};
use setowire_core::dht::{Dht, DhtConfig};
use setowire_core::proto::identity::{Id8, Identity};
use setowire_core::ratelimit::Rate;
use setowire_core::swarm::config::EngineConfig;
use setowire_core::swarm::engine::Engine;
use setowire_core::swarm::node_view::PeerLocation;
use setowire_core::swarm::single_node::PeerIndex;
use setowire_node::discovery::dht::{Demux, SharedDht};
use setowire_node::io::{BackendKind, DatagramIo, IoStats};
use setowire_node::node::directory::PeerDirectory;

/// Peers in the node-wide tables.
const PEERS: usize = 100_000;
/// Contacts in the routing tables measured.
const TABLE_SIZES: [usize; 2] = [1000, 3000];
/// Targets looked up in turn.
const TARGETS: usize = 1024;

/// A random id that falls in bucket `bucket` of `me`: the first `bucket` bits shared, the
/// next one flipped, the rest random.
fn id_in_bucket(me: &NodeId, bucket: usize, rng: &mut StdRng) -> NodeId {
    let mut id = NodeId::random(rng);
    for bit in 0..=bucket {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        let mine = me.0[byte] & mask;
        let want = if bit == bucket { mine ^ mask } else { mine };
        id.0[byte] = (id.0[byte] & !mask) | want;
    }
    id
}

fn random_addr(rng: &mut StdRng) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(rng.gen::<u32>()),
        rng.gen_range(1024..=u16::MAX),
    ))
}

fn routing_table(size: usize, rng: &mut StdRng) -> RoutingTable {
    let me = NodeId::random(rng);
    let mut table = RoutingTable::new(me);
    let now = Instant::now();
    let stale_after = Duration::from_secs(900);
    while table.len() < size {
        let contact = Contact {
            id: id_in_bucket(&me, table.len() / K, rng),
            addr: random_addr(rng),
        };
        // The deep buckets have few ids to draw from: a repeat is simply drawn again.
        let admission = table.admit(contact, now, stale_after);
        assert!(matches!(
            admission,
            Admission::Added | Admission::AddressConflict
        ));
    }
    assert_eq!(table.max_bucket_len(), K);
    assert_eq!(table.len(), size);
    table
}

fn dht_closest(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let targets: Vec<NodeId> = (0..TARGETS).map(|_| NodeId::random(&mut rng)).collect();
    let mut group = c.benchmark_group("dht_closest");
    group.throughput(Throughput::Elements(1));
    for size in TABLE_SIZES {
        let table = routing_table(size, &mut rng);
        let mut i = 0;
        group.bench_function(format!("{size}"), |b| {
            b.iter(|| {
                i = (i + 1) % TARGETS;
                table.closest(black_box(&targets[i]), K)
            })
        });
    }
    group.finish();
}

/// Nodes the DHT of `dht_find_node_request` knows.
const DHT_NODES: usize = 1000;

fn find_node(from: &NodeId, target: &NodeId, rpc: u32) -> Vec<u8> {
    format!(
        "{{\"type\": 4, \"from\": \"{from}\", \"target\": \"{target}\", \"rpcId\": \"{rpc:08x}\"}}"
    )
    .into_bytes()
}

/// A DHT that knows `nodes` nodes (20 in each of its first buckets), each met the way the
/// protocol meets them: it PINGs us, answers our PING back and so is verified and admitted.
fn populated_dht(nodes: usize, rng: &mut StdRng, now: Instant) -> (Dht, Vec<Contact>) {
    let me = NodeId::random(rng);
    // One asker sends every request: its per-source request limit is lifted, so that what
    // is measured is the lookup, not the refusal.
    let config = DhtConfig {
        request_rate: Rate {
            per_second: 1e9,
            burst: 1e9,
        },
        ..DhtConfig::default()
    };
    let mut dht = Dht::new(config, me, now, StdRng::seed_from_u64(7));
    let mut known = Vec::new();
    while dht.table().len() < nodes {
        let contact = Contact {
            id: id_in_bucket(&me, dht.table().len() / K, rng),
            addr: random_addr(rng),
        };
        if dht.table().contains(&contact.id) {
            continue;
        }
        let ping = format!(
            "{{\"type\": 1, \"from\": \"{}\", \"rpcId\": \"00000001\"}}",
            contact.id
        );
        dht.handle_datagram(now, contact.addr, ping.as_bytes());
        let mut our_ping = None;
        dht.drain_transmits(|_, bytes| {
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            if v["type"] == 1 {
                our_ping = Some(v["rpcId"].as_str().unwrap().to_owned());
            }
        });
        let pong = format!(
            "{{\"type\": 2, \"from\": \"{}\", \"rpcId\": \"{}\"}}",
            contact.id,
            our_ping.expect("a PING to the new node")
        );
        dht.handle_datagram(now, contact.addr, pong.as_bytes());
        dht.drain_transmits(|_, _| {});
        assert!(dht.table().contains(&contact.id));
        known.push(contact);
    }
    (dht, known)
}

/// A socket that counts what it is given and sends nothing.
#[derive(Default)]
struct Sink {
    datagrams: usize,
    bytes: usize,
}

impl DatagramIo for Sink {
    fn kind(&self) -> BackendKind {
        BackendKind::Mmsg
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
    }
    fn recv_batch(
        &mut self,
        _: Duration,
        _: &mut dyn FnMut(SocketAddr, &mut [u8]),
    ) -> std::io::Result<usize> {
        Ok(0)
    }
    fn queue_send(&mut self, _: SocketAddr, data: &[u8]) {
        self.datagrams += 1;
        self.bytes += black_box(data).len();
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn stats(&self) -> IoStats {
        IoStats::default()
    }
}

fn dht_find_node_request(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(4);
    let now = Instant::now();
    let (mut dht, known) = populated_dht(DHT_NODES, &mut rng, now);
    // The asker: a node of the table, so verified, as the load generator's clients are.
    let asker = known[known.len() / 2];
    let requests: Vec<Vec<u8>> = (0..TARGETS)
        .map(|i| find_node(&asker.id, &NodeId::random(&mut rng), i as u32))
        .collect();
    // Every reply is a full FOUND_NODE of K nodes.
    let mut sizes = Vec::new();
    for request in &requests {
        dht.handle_datagram(now, asker.addr, request);
        dht.drain_transmits(|dst, bytes| {
            assert_eq!(dst, asker.addr);
            let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(v["nodes"].as_array().unwrap().len(), K);
            sizes.push(bytes.len());
        });
    }
    assert_eq!(sizes.len(), TARGETS);
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    eprintln!("dht_find_node_request: FOUND_NODE of {mean} bytes on average");

    let mut group = c.benchmark_group("dht_find_node_request");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    let mut sent = 0usize;
    group.bench_function("dht", |b| {
        b.iter(|| {
            i = (i + 1) % TARGETS;
            dht.handle_datagram(now, asker.addr, black_box(&requests[i]));
            dht.drain_transmits(|_, bytes| sent += black_box(bytes).len());
        })
    });

    let config = EngineConfig {
        unauth_rate: Rate {
            per_second: 1e12,
            burst: 1e12,
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(Identity::generate(), config, now);
    let shared = SharedDht::new(dht, now);
    let mut demux = Demux::new(std::sync::Arc::clone(&shared), true);
    let mut sink = Sink::default();
    let mut asked = 0;
    group.bench_function("demux", |b| {
        b.iter(|| {
            i = (i + 1) % TARGETS;
            asked += 1;
            assert!(demux.take(&mut engine, now, asker.addr, black_box(&requests[i])));
            demux.flush(&mut sink);
        })
    });
    group.finish();
    // One reply per request, none withheld or cut.
    assert_eq!(sink.datagrams, asked);
    assert_eq!(shared.lock().stats().replies_withheld, 0);
    black_box((sent, sink.bytes));
}

fn random_id8(rng: &mut StdRng) -> Id8 {
    let mut id = [0u8; 8];
    rng.fill_bytes(&mut id);
    id
}

/// `count` distinct keys made by `make`, and as many others that are not among them.
fn keys<T: Copy + Eq + std::hash::Hash>(
    count: usize,
    rng: &mut StdRng,
    make: impl Fn(&mut StdRng) -> T,
) -> (Vec<T>, Vec<T>) {
    let mut seen = std::collections::HashSet::new();
    let mut all = Vec::with_capacity(2 * count);
    while all.len() < 2 * count {
        let key = make(rng);
        if seen.insert(key) {
            all.push(key);
        }
    }
    let absent = all.split_off(count);
    (all, absent)
}

/// Benchmarks `lookup` of keys `present` (in shuffled order) and `absent`.
fn bench_lookups<T, R>(
    c: &mut Criterion,
    group: &str,
    rng: &mut StdRng,
    mut present: Vec<T>,
    absent: Vec<T>,
    mut lookup: impl FnMut(&T) -> Option<R>,
) {
    present.shuffle(rng);
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    for (name, queries, expect) in [("hit", &present, true), ("miss", &absent, false)] {
        assert!(queries.iter().all(|q| lookup(q).is_some() == expect));
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = if i + 1 == queries.len() { 0 } else { i + 1 };
                lookup(black_box(&queries[i]))
            })
        });
    }
    group.finish();
}

fn peer_index(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let (ids, absent) = keys(PEERS, &mut rng, random_id8);
    let mut index = PeerIndex::new(17, 1024);
    let directory = PeerDirectory::new(8, 17, 1024);
    for (i, id8) in ids.iter().enumerate() {
        let location = PeerLocation {
            id8: *id8,
            addr: random_addr(&mut rng),
            shard: i % 8,
        };
        index.insert(location);
        directory.insert(location);
    }
    assert_eq!((index.len(), directory.len()), (PEERS, PEERS));
    let index = std::sync::RwLock::new(index);
    bench_lookups(
        c,
        "peer_index_locate",
        &mut rng,
        ids.clone(),
        absent.clone(),
        |id8| index.read().unwrap().locate(id8),
    );
    bench_lookups(c, "peer_directory_locate", &mut rng, ids, absent, |id8| {
        directory.locate(id8)
    });
}

fn by_addr(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let (addrs, absent) = keys(PEERS, &mut rng, random_addr);
    let mut table: HashMap<SocketAddr, Id8, ahash::RandomState> = HashMap::default();
    for addr in &addrs {
        table.insert(*addr, random_id8(&mut rng));
    }
    assert_eq!(table.len(), PEERS);
    bench_lookups(c, "by_addr", &mut rng, addrs, absent, |addr| {
        table.get(addr).copied()
    });
}

criterion_group!(
    benches,
    dht_closest,
    dht_find_node_request,
    peer_index,
    by_addr
);
criterion_main!(benches);
