//! Cost of the frame codec per datagram: parsing and encoding the frames a node handles most
//! (PING, PONG, HELLO, a full-size DATA, a BATCH, a PEX, a multi-piece CHUNK) and the
//! first-byte demultiplexing of the shared UDP port.
//!
//! "parse" is what a receiver does with the datagram: `Frame::parse`, plus walking every item
//! of a list frame (PEX entries; BATCH entries, each parsed in turn). "encode" writes into a
//! reused buffer; BATCH encoding coalesces 8 already-encoded frames, as the send path does.
//!
//! Run: `cargo bench --bench frames`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use setowire_core::proto::frame::{
    classify, encode_batch, encode_have, encode_pex, Chunk, Endpoint, Frame, Handshake, PexEntry,
    MIN_SEALED_LEN,
};

/// Payload bytes in one CHUNK piece, as py-setowire splits large values.
const CHUNK_PIECE_LEN: usize = 900;
const CHUNK_PIECES: u16 = 9;

fn to_vec(frame: Frame<'_>) -> Vec<u8> {
    frame.to_vec().expect("bench frame encodes")
}

fn ping() -> Frame<'static> {
    Frame::Ping {
        timestamp_ms: 1_732_550_400_000,
        id: [0x42; 20],
    }
}

fn pong() -> Frame<'static> {
    Frame::Pong { id: [0x24; 20] }
}

fn hello() -> Frame<'static> {
    Frame::Hello(Handshake {
        id8: [0x0E; 8],
        public_key: [0xD1; 32],
    })
}

/// A DATA frame of 1200 bytes on the wire (type byte included).
fn data_body() -> Vec<u8> {
    (0..1199).map(|i| i as u8).collect()
}

/// Eight small frames such as a sender coalesces within its 2 ms window.
fn batch_items() -> Vec<Vec<u8>> {
    let mut have = [0u8; 64];
    let n = encode_have(["greeting"], &mut have).unwrap();
    let items = vec![
        to_vec(ping()),
        to_vec(pong()),
        have[..n].to_vec(),
        to_vec(Frame::Want {
            key: "remote-small",
        }),
        to_vec(Frame::Chunk(Chunk::Whole {
            key: "remote-small",
            value: b"small value",
        })),
        to_vec(Frame::ChunkAck {
            key: "remote-large",
            index: 3,
        }),
        to_vec(Frame::Ihave(&[0x09; 16])),
        to_vec(Frame::Goaway),
    ];
    assert_eq!(items.len(), 8);
    items
}

fn pex_ids() -> Vec<[u8; 8]> {
    (0..20u8).map(|i| [i; 8]).collect()
}

fn pex_ips() -> Vec<String> {
    (0..20).map(|i| format!("10.0.{i}.{}", 100 + i)).collect()
}

fn pex_entries<'a>(ids: &'a [[u8; 8]], ips: &'a [String]) -> impl Iterator<Item = PexEntry<'a>> {
    ids.iter()
        .zip(ips)
        .enumerate()
        .map(|(i, (id, ip))| PexEntry {
            id,
            endpoint: Endpoint {
                ip,
                port: 40000 + i as u16,
            },
        })
}

fn chunk_piece(value: &[u8], index: u16) -> Frame<'_> {
    let start = usize::from(index) * CHUNK_PIECE_LEN;
    Frame::Chunk(Chunk::Piece {
        key: "remote-large",
        index,
        total: CHUNK_PIECES,
        piece: &value[start..start + CHUNK_PIECE_LEN],
    })
}

/// Parses a datagram the way a receiver does: list items are walked, BATCH entries parsed.
fn receive(datagram: &[u8]) -> usize {
    match Frame::parse(datagram) {
        Ok(Frame::Batch(list)) => list
            .datagrams()
            .map(|d| Frame::parse(d).map_or(0, |f| f.encoded_len()))
            .sum(),
        Ok(Frame::Pex(list)) => list.entries().map(|e| usize::from(e.endpoint.port)).sum(),
        Ok(frame) => frame.encoded_len(),
        Err(_) => 0,
    }
}

fn fixed_frames(c: &mut Criterion) {
    let data = data_body();
    let cases = [
        ("ping", ping()),
        ("pong", pong()),
        ("hello", hello()),
        ("data_1200", Frame::Data(&data)),
    ];
    assert!(data.len() >= MIN_SEALED_LEN);
    let mut out = vec![0u8; 2048];

    let mut g = c.benchmark_group("parse");
    for (name, frame) in &cases {
        let bytes = to_vec(*frame);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(*name, |b| b.iter(|| receive(black_box(&bytes))));
    }
    g.finish();

    let mut g = c.benchmark_group("encode");
    for (name, frame) in &cases {
        g.throughput(Throughput::Bytes(frame.encoded_len() as u64));
        g.bench_function(*name, |b| {
            b.iter(|| black_box(frame).encode(&mut out).unwrap())
        });
    }
    g.finish();
}

fn list_frames(c: &mut Criterion) {
    let mut out = vec![0u8; 16 * 1024];

    let items = batch_items();
    let n = encode_batch(items.iter().map(Vec::as_slice), &mut out).unwrap();
    let batch = out[..n].to_vec();
    let ids = pex_ids();
    let ips = pex_ips();
    let n = encode_pex(pex_entries(&ids, &ips), &mut out).unwrap();
    let pex = out[..n].to_vec();
    let value: Vec<u8> = (0..usize::from(CHUNK_PIECES) * CHUNK_PIECE_LEN)
        .map(|i| (i * 13) as u8)
        .collect();
    let pieces: Vec<Vec<u8>> = (0..CHUNK_PIECES)
        .map(|i| to_vec(chunk_piece(&value, i)))
        .collect();
    let chunk_bytes: usize = pieces.iter().map(Vec::len).sum();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("batch_of_8", |b| b.iter(|| receive(black_box(&batch))));
    g.throughput(Throughput::Bytes(pex.len() as u64));
    g.bench_function("pex_20", |b| b.iter(|| receive(black_box(&pex))));
    g.throughput(Throughput::Bytes(chunk_bytes as u64));
    g.bench_function("chunk_9_pieces", |b| {
        b.iter(|| black_box(&pieces).iter().map(|p| receive(p)).sum::<usize>())
    });
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("batch_of_8", |b| {
        b.iter(|| encode_batch(black_box(&items).iter().map(Vec::as_slice), &mut out).unwrap())
    });
    g.throughput(Throughput::Bytes(pex.len() as u64));
    g.bench_function("pex_20", |b| {
        b.iter(|| encode_pex(pex_entries(black_box(&ids), black_box(&ips)), &mut out).unwrap())
    });
    g.throughput(Throughput::Bytes(chunk_bytes as u64));
    g.bench_function("chunk_9_pieces", |b| {
        b.iter(|| {
            let value = black_box(&value[..]);
            (0..CHUNK_PIECES)
                .map(|i| chunk_piece(value, i).encode(&mut out).unwrap())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn classify_datagrams(c: &mut Criterion) {
    let ping = to_vec(ping());
    let dht =
        br#"{"type": 1, "from": "1111111111111111111111111111111111111111", "rpcId": "0a0b0c0d"}"#;
    let stun: Vec<u8> = hex::decode("000100002112a442505152535455565758595a5b").unwrap();
    let mut g = c.benchmark_group("classify");
    for (name, datagram) in [
        ("setowire", &ping[..]),
        ("dht", &dht[..]),
        ("stun", &stun[..]),
    ] {
        g.bench_function(name, |b| b.iter(|| classify(black_box(datagram))));
    }
    g.finish();
}

criterion_group!(benches, fixed_frames, list_frames, classify_datagrams);
criterion_main!(benches);
