//! Cost of the crypto layer per handshake and per DATA packet, next to the bare primitives
//! it is built on, so overhead of our framing (copies, nonce, replay window) stays visible.
//!
//! Run: `cargo bench --bench crypto`. Compare with
//! `RUSTFLAGS="-C target-feature=+avx2" CARGO_TARGET_DIR=/tmp/avx2-target cargo bench --bench crypto`
//! to see the effect of compile-time AVX2, and with `RUSTFLAGS="--cfg poly1305_force_soft"`
//! for the portable scalar Poly1305 (see the `proto::session` module docs).

use std::hint::black_box;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use setowire_core::proto::identity::Identity;
use setowire_core::proto::session::{Session, DATA_HEADER_LEN, DATA_OVERHEAD};
use x25519_dalek::{PublicKey, StaticSecret};

const SIZES: [usize; 2] = [64, 1200];

fn pair() -> (Session, Session) {
    let a = Identity::from_seed(b"bench-a");
    let b = Identity::from_seed(b"bench-b");
    (
        a.derive_session(b.public_key(), &b.id8(), 0).unwrap(),
        b.derive_session(a.public_key(), &a.id8(), 0).unwrap(),
    )
}

fn handshake(c: &mut Criterion) {
    let a = Identity::from_seed(b"bench-a");
    let b = Identity::from_seed(b"bench-b");
    let (b_pub, b_id8) = (*b.public_key(), b.id8());
    c.bench_function("derive_session", |bench| {
        bench.iter(|| {
            a.derive_session(black_box(&b_pub), black_box(&b_id8), 0)
                .unwrap()
        })
    });

    let secret = StaticSecret::from(a.secret_bytes());
    let public = PublicKey::from(b_pub);
    c.bench_function("bare/x25519_diffie_hellman", |bench| {
        bench.iter(|| black_box(&secret).diffie_hellman(black_box(&public)))
    });
}

fn packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("data");
    for len in SIZES {
        g.throughput(Throughput::Bytes(len as u64));

        let (mut tx, _) = pair();
        let mut frame = vec![0x5au8; len + DATA_OVERHEAD];
        g.bench_function(format!("seal/{len}"), |bench| {
            bench.iter(|| tx.seal_data(black_box(&mut frame)).unwrap())
        });

        // Every open needs a fresh counter (the replay window refuses repeats), so frames
        // are sealed in the untimed setup.
        let (mut tx, mut rx) = pair();
        let mut out = vec![0u8; len];
        g.bench_function(format!("open/{len}"), |bench| {
            bench.iter_batched_ref(
                || {
                    let mut f = vec![0x5au8; len + DATA_OVERHEAD];
                    f[DATA_HEADER_LEN..DATA_HEADER_LEN + len].fill(0xa5);
                    tx.seal_data(&mut f).unwrap();
                    f
                },
                |f| rx.open_data(black_box(&f[1..]), &mut out).unwrap(),
                BatchSize::SmallInput,
            )
        });

        let aead = ChaCha20Poly1305::new(Key::from_slice(&[7u8; 32]));
        let nonce = [1u8; 12];
        let mut buf = vec![0x5au8; len];
        g.bench_function(format!("bare_aead_encrypt/{len}"), |bench| {
            bench.iter(|| {
                aead.encrypt_in_place_detached(Nonce::from_slice(&nonce), &[], black_box(&mut buf))
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, handshake, packets);
criterion_main!(benches);
