//! Per-message cost of the peer engine's building blocks: the content hash and duplicate
//! filter every DATA payload passes, the send queue every frame passes, and fragmentation and
//! reassembly of a payload too long for one datagram.
//!
//! `pieces/fragment_9000B` sends a 9000-byte payload as `Engine::send` does: a random
//! fragment id, `pieces()` of `FRAG_PIECE_LEN`, each FRAG frame encoded straight into the
//! `OutQueue`, then the queue drained. BATCH encoding on its own is `encode/batch_of_8` in
//! `benches/frames.rs`.
//!
//! Run: `cargo bench --bench swarm_blocks`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use setowire_core::proto::frame::{Fragment, Frame};
use setowire_core::swarm::dedupe::{content_hash, SeenFilter};
use setowire_core::swarm::outqueue::OutQueue;
use setowire_core::swarm::pieces::{pieces, PieceAssembler, PieceLimits, FRAG_PIECE_LEN};

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("content_hash");
    for len in [64usize, 1200] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("{len}B"), |b| {
            b.iter(|| content_hash(black_box(&payload)))
        });
    }
    group.finish();
}

fn seen_filter(c: &mut Criterion) {
    let now = Instant::now();
    // 8 Mbit per generation (1 MiB): a realistic node-sized filter, larger than L2.
    let filter = SeenFilter::new(1 << 23, Duration::from_secs(300), now);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut group = c.benchmark_group("seen_filter");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check_and_insert_new", |b| {
        b.iter(|| {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            filter.check_and_insert(now, black_box(x))
        })
    });
    let known = 0x0123_4567_89AB_CDEF;
    filter.check_and_insert(now, known);
    group.bench_function("check_and_insert_duplicate", |b| {
        b.iter(|| filter.check_and_insert(now, black_box(known)))
    });
    group.finish();
}

fn out_queue(c: &mut Criterion) {
    let dsts: Vec<SocketAddr> = (0..8u16)
        .map(|i| SocketAddr::from(([10, 0, 0, 1], 4000 + i)))
        .collect();
    let frame = [0x04u8; 21];
    let mut queue = OutQueue::new(256 * 1024);
    let mut group = c.benchmark_group("out_queue");
    group.throughput(Throughput::Elements(64));
    // 64 PONG-sized frames, eight consecutive per destination: 8 BATCH datagrams.
    group.bench_function("push_drain_64x8dst", |b| {
        b.iter(|| {
            for i in 0..64 {
                queue.push(dsts[i / 8], black_box(&frame));
            }
            let mut bytes = 0;
            queue.drain(|_, d| bytes += d.len());
            bytes
        })
    });
    // The same frames interleaved across destinations: 64 bare datagrams.
    group.bench_function("push_drain_64_interleaved", |b| {
        b.iter(|| {
            for i in 0..64 {
                queue.push(dsts[i % 8], black_box(&frame));
            }
            let mut bytes = 0;
            queue.drain(|_, d| bytes += d.len());
            bytes
        })
    });
    group.finish();
}

fn reassembly(c: &mut Criterion) {
    let payload: Vec<u8> = (0..9000).map(|i| i as u8).collect();
    let parts: Vec<(u16, u16, &[u8])> = pieces(&payload, FRAG_PIECE_LEN).collect();
    let now = Instant::now();
    let mut asm: PieceAssembler<[u8; 8]> = PieceAssembler::new(PieceLimits::FRAG);
    let mut id: u64 = 0;
    let mut group = c.benchmark_group("pieces");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    group.bench_function("reassemble_9000B", |b| {
        b.iter(|| {
            id += 1;
            let mut whole = None;
            for &(index, total, piece) in parts.iter().rev() {
                whole = asm.add(now, id.to_be_bytes(), index, total, piece).unwrap();
            }
            whole
        })
    });
    group.finish();
}

fn fragmentation(c: &mut Criterion) {
    let payload: Vec<u8> = (0..9000).map(|i| i as u8).collect();
    let dst = SocketAddr::from(([10, 0, 0, 1], 4000));
    let mut rng = StdRng::seed_from_u64(7);
    let mut queue = OutQueue::new(256 * 1024);
    let mut group = c.benchmark_group("pieces");
    group.throughput(Throughput::Bytes(payload.len() as u64));
    // Eight FRAG datagrams of at most 1200 bytes: too large to share a BATCH.
    group.bench_function("fragment_9000B", |b| {
        b.iter(|| {
            let mut frag_id = [0u8; 8];
            rng.fill_bytes(&mut frag_id);
            for (index, total, piece) in pieces(black_box(&payload), FRAG_PIECE_LEN) {
                let frame = Frame::Frag(Fragment {
                    frag_id,
                    index,
                    total,
                    piece,
                });
                let queued = queue.push_with(dst, frame.encoded_len(), |buf| frame.encode(buf));
                assert!(matches!(queued, Ok(true)));
            }
            let mut bytes = 0;
            queue.drain(|_, d| bytes += d.len());
            bytes
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    hashing,
    seen_filter,
    out_queue,
    fragmentation,
    reassembly
);
criterion_main!(benches);
