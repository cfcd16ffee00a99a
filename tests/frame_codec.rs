//! Properties of the frame codec (src/proto/frame.rs): every frame survives encode → parse,
//! list encoders round-trip their items, and the parser never panics on hostile input —
//! whatever it accepts re-encodes to the same frame. Edge cases follow as unit tests.

use std::net::IpAddr;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use setowire_core::proto::frame::{
    classify, encode_batch, encode_have, encode_pex, kind, Chunk, DatagramClass, EncodeError,
    Endpoint, Fragment, Frame, FrameError, FrameKind, Handshake, LanAnnounce, PexEntry,
    HANDSHAKE_LEN, MIN_SEALED_LEN, PEX_ID_MAX, PEX_ID_MIN, PING_LEN, PONG_LEN,
};

/// BATCH frames found inside BATCH frames are followed this deep; the parser itself never
/// recurses, so this only bounds the test.
const MAX_DEPTH: usize = 8;

/// Room for any frame these tests build.
const BIG: usize = 80 * 1024;

// ---------------------------------------------------------------------------------------------
// An owned model of every frame that `Frame::encode` can build from fields. HAVE, PEX and
// BATCH hold a private wire list and are built with `encode_have` / `encode_pex` /
// `encode_batch` instead (see `ListModel`).

#[derive(Debug, Clone)]
enum Model {
    Hello([u8; 8], [u8; 32]),
    HelloAck([u8; 8], [u8; 32]),
    Data(Vec<u8>),
    Ping(u64, [u8; 20]),
    Pong([u8; 20]),
    Ihave(Vec<u8>),
    Lan {
        id: String,
        ip: String,
        port: u16,
        topic_hash: String,
    },
    Goaway,
    Frag {
        frag_id: [u8; 8],
        index: u16,
        total: u16,
        piece: Vec<u8>,
    },
    Want(String),
    ChunkWhole {
        key: String,
        value: Vec<u8>,
    },
    ChunkPiece {
        key: String,
        index: u16,
        total: u16,
        piece: Vec<u8>,
    },
    ChunkAck {
        key: String,
        index: u16,
    },
    RelayAnn([u8; 8], String, u16),
    RelayReq([u8; 8], [u8; 8], String, u16),
    RelayFwd([u8; 8], String, u16),
}

impl Model {
    fn frame(&self) -> Frame<'_> {
        match self {
            Model::Hello(id8, public_key) => Frame::Hello(Handshake {
                id8: *id8,
                public_key: *public_key,
            }),
            Model::HelloAck(id8, public_key) => Frame::HelloAck(Handshake {
                id8: *id8,
                public_key: *public_key,
            }),
            Model::Data(sealed) => Frame::Data(sealed),
            Model::Ping(timestamp_ms, id) => Frame::Ping {
                timestamp_ms: *timestamp_ms,
                id: *id,
            },
            Model::Pong(id) => Frame::Pong { id: *id },
            Model::Ihave(hashes) => Frame::Ihave(hashes),
            Model::Lan {
                id,
                ip,
                port,
                topic_hash,
            } => Frame::Lan(LanAnnounce {
                id,
                ip,
                port: *port,
                topic_hash,
            }),
            Model::Goaway => Frame::Goaway,
            Model::Frag {
                frag_id,
                index,
                total,
                piece,
            } => Frame::Frag(Fragment {
                frag_id: *frag_id,
                index: *index,
                total: *total,
                piece,
            }),
            Model::Want(key) => Frame::Want { key },
            Model::ChunkWhole { key, value } => Frame::Chunk(Chunk::Whole { key, value }),
            Model::ChunkPiece {
                key,
                index,
                total,
                piece,
            } => Frame::Chunk(Chunk::Piece {
                key,
                index: *index,
                total: *total,
                piece,
            }),
            Model::ChunkAck { key, index } => Frame::ChunkAck { key, index: *index },
            Model::RelayAnn(relay, ip, port) => Frame::RelayAnn {
                relay: *relay,
                endpoint: Endpoint { ip, port: *port },
            },
            Model::RelayReq(from, to, ip, port) => Frame::RelayReq {
                from: *from,
                to: *to,
                endpoint: Endpoint { ip, port: *port },
            },
            Model::RelayFwd(from, ip, port) => Frame::RelayFwd {
                from: *from,
                endpoint: Endpoint { ip, port: *port },
            },
        }
    }

    /// Frames whose every byte is covered by a length or a fixed size, so that any strict
    /// prefix of their encoding must be refused as truncated.
    fn fully_delimited(&self) -> bool {
        matches!(
            self,
            Model::Hello(..)
                | Model::HelloAck(..)
                | Model::Ping(..)
                | Model::Pong(..)
                | Model::Want(..)
                | Model::ChunkWhole { .. }
                | Model::ChunkAck { .. }
                | Model::RelayAnn(..)
                | Model::RelayReq(..)
                | Model::RelayFwd(..)
        )
    }
}

#[derive(Debug, Clone)]
enum ListModel {
    Have(Vec<String>),
    Pex(Vec<(Vec<u8>, String, u16)>),
    Batch(Vec<Vec<u8>>),
}

impl ListModel {
    fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        match self {
            ListModel::Have(keys) => encode_have(keys.iter().map(String::as_str), out),
            ListModel::Pex(entries) => encode_pex(
                entries.iter().map(|(id, ip, port)| PexEntry {
                    id,
                    endpoint: Endpoint { ip, port: *port },
                }),
                out,
            ),
            ListModel::Batch(datagrams) => encode_batch(datagrams.iter().map(Vec::as_slice), out),
        }
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut buf = vec![0u8; BIG];
        let n = self.encode(&mut buf).expect("valid list encodes");
        buf.truncate(n);
        buf
    }

    /// Checks that `frame` carries exactly the items of the model.
    fn assert_items(&self, frame: &Frame<'_>) {
        match (self, frame) {
            (ListModel::Have(keys), Frame::Have(list)) => {
                assert_eq!(list.len(), keys.len());
                assert_eq!(list.keys().collect::<Vec<_>>(), *keys);
            }
            (ListModel::Pex(entries), Frame::Pex(list)) => {
                assert_eq!(list.len(), entries.len());
                let got: Vec<_> = list
                    .entries()
                    .map(|e| (e.id.to_vec(), e.endpoint.ip.to_string(), e.endpoint.port))
                    .collect();
                assert_eq!(got, *entries);
            }
            (ListModel::Batch(datagrams), Frame::Batch(list)) => {
                assert_eq!(list.len(), datagrams.len());
                assert_eq!(list.datagrams().collect::<Vec<_>>(), *datagrams);
            }
            (model, frame) => panic!("{model:?} parsed as {frame:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies for valid field values.

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9:_./-]{1,32}",
        // Arbitrary Unicode: at most 63 chars of at most 4 bytes fit the u8 length.
        2 => vec(any::<char>(), 1..=63).prop_map(|c| c.into_iter().collect()),
        1 => "[a-zA-Z0-9]{200,255}",
    ]
}

/// The IP text of relay and PEX endpoints: anything ASCII up to 255 bytes, or a real address.
fn ip_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<IpAddr>().prop_map(|ip| ip.to_string()),
        vec(0u8..0x80, 0..=255).prop_map(|b| String::from_utf8(b).expect("ASCII")),
    ]
}

/// `(index, total)` with `index < total`.
fn piece_position() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        (1u16..=u16::MAX).prop_flat_map(|total| (0..total, Just(total))),
        (1u16..=16).prop_flat_map(|total| (0..total, Just(total))),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

fn model() -> impl Strategy<Value = Model> {
    prop_oneof![
        (any::<[u8; 8]>(), any::<[u8; 32]>()).prop_map(|(i, k)| Model::Hello(i, k)),
        (any::<[u8; 8]>(), any::<[u8; 32]>()).prop_map(|(i, k)| Model::HelloAck(i, k)),
        vec(any::<u8>(), MIN_SEALED_LEN..=1300).prop_map(Model::Data),
        (any::<u64>(), any::<[u8; 20]>()).prop_map(|(t, id)| Model::Ping(t, id)),
        any::<[u8; 20]>().prop_map(Model::Pong),
        vec(any::<[u8; 8]>(), 0..=12).prop_map(|h| Model::Ihave(h.concat())),
        ("[^:]{1,40}", "[^:]{1,39}", any::<u16>(), "[^:]{0,12}").prop_map(
            |(id, ip, port, topic_hash)| Model::Lan {
                id,
                ip,
                port,
                topic_hash,
            }
        ),
        Just(Model::Goaway),
        (any::<[u8; 8]>(), piece_position(), bytes(1300)).prop_map(
            |(frag_id, (index, total), piece)| Model::Frag {
                frag_id,
                index,
                total,
                piece,
            }
        ),
        key().prop_map(Model::Want),
        (key(), bytes(1200)).prop_map(|(key, value)| Model::ChunkWhole { key, value }),
        (key(), piece_position(), bytes(1000)).prop_map(|(key, (index, total), piece)| {
            Model::ChunkPiece {
                key,
                index,
                total,
                piece,
            }
        }),
        (key(), any::<u16>()).prop_map(|(key, index)| Model::ChunkAck { key, index }),
        (any::<[u8; 8]>(), ip_text(), any::<u16>())
            .prop_map(|(r, ip, p)| Model::RelayAnn(r, ip, p)),
        (any::<[u8; 8]>(), any::<[u8; 8]>(), ip_text(), any::<u16>())
            .prop_map(|(f, t, ip, p)| Model::RelayReq(f, t, ip, p)),
        (any::<[u8; 8]>(), ip_text(), any::<u16>())
            .prop_map(|(f, ip, p)| Model::RelayFwd(f, ip, p)),
    ]
}

fn pex_entry() -> impl Strategy<Value = (Vec<u8>, String, u16)> {
    (
        vec(any::<u8>(), PEX_ID_MIN..=PEX_ID_MAX),
        ip_text(),
        any::<u16>(),
    )
}

fn list_model() -> impl Strategy<Value = ListModel> {
    prop_oneof![
        vec(key(), 0..=24).prop_map(ListModel::Have),
        vec(pex_entry(), 0..=24).prop_map(ListModel::Pex),
        vec(bytes(200), 0..=12).prop_map(ListModel::Batch),
        // BATCH of valid frames, as a coalescing sender produces it.
        vec(model(), 0..=8).prop_map(|frames| {
            ListModel::Batch(
                frames
                    .iter()
                    .map(|m| m.frame().to_vec().expect("valid frame encodes"))
                    .collect(),
            )
        }),
    ]
}

/// Any valid encoded datagram, list frames included.
fn valid_datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => model().prop_map(|m| m.frame().to_vec().expect("valid frame encodes")),
        1 => list_model().prop_map(|l| l.to_vec()),
    ]
}

/// A tree of BATCH frames with valid frames at the leaves.
#[derive(Debug, Clone)]
enum Tree {
    Leaf(Vec<u8>),
    Batch(Vec<Tree>),
}

impl Tree {
    fn encode(&self) -> Vec<u8> {
        match self {
            Tree::Leaf(datagram) => datagram.clone(),
            Tree::Batch(children) => {
                let inner: Vec<Vec<u8>> = children.iter().map(Tree::encode).collect();
                ListModel::Batch(inner).to_vec()
            }
        }
    }

    fn assert_matches(&self, datagram: &[u8]) {
        match self {
            Tree::Leaf(bytes) => assert_eq!(datagram, bytes.as_slice()),
            Tree::Batch(children) => {
                let Ok(Frame::Batch(list)) = Frame::parse(datagram) else {
                    panic!("not a BATCH: {datagram:02x?}");
                };
                assert_eq!(list.len(), children.len());
                for (child, inner) in children.iter().zip(list.datagrams()) {
                    child.assert_matches(inner);
                }
            }
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    model()
        .prop_map(|m| Tree::Leaf(m.frame().to_vec().expect("valid frame encodes")))
        .prop_recursive(4, 32, 5, |inner| vec(inner, 0..=5).prop_map(Tree::Batch))
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the properties.

/// Uses every accessor of a parsed frame (lists are iterated, BATCH entries parsed in turn),
/// then checks that re-encoding it yields `encoded_len` bytes that parse to the same frame.
/// The match is exhaustive on purpose: a new frame variant must be covered here.
fn check_parsed(frame: &Frame<'_>, depth: usize) {
    match frame {
        Frame::Hello(h) | Frame::HelloAck(h) => {
            let _ = (h.id8, h.public_key);
        }
        Frame::Data(sealed) => assert!(sealed.len() >= MIN_SEALED_LEN),
        Frame::Ping { .. } | Frame::Pong { .. } | Frame::Goaway => {}
        Frame::Ihave(bytes) => assert_eq!(frame.ihave_hashes().count() * 8, bytes.len()),
        Frame::Lan(lan) => {
            assert!(!lan.id.is_empty() && !lan.ip.is_empty());
            assert!(!lan.id.contains(':') && !lan.ip.contains(':'));
            assert!(!lan.topic_hash.contains(':'));
        }
        Frame::Frag(f) => assert!(f.index < f.total),
        Frame::Have(list) => {
            let keys: Vec<&str> = list.keys().collect();
            assert_eq!(keys.len(), list.len());
            assert!(keys.iter().all(|k| (1..=255).contains(&k.len())));
        }
        Frame::Want { key } | Frame::ChunkAck { key, .. } => {
            assert!((1..=255).contains(&key.len()))
        }
        Frame::Chunk(chunk) => {
            assert!((1..=255).contains(&chunk.key().len()));
            if let Chunk::Piece { index, total, .. } = chunk {
                assert!(index < total);
            }
        }
        Frame::Batch(list) => {
            let datagrams: Vec<&[u8]> = list.datagrams().collect();
            assert_eq!(datagrams.len(), list.len());
            for datagram in datagrams {
                let _ = classify(datagram);
                if depth < MAX_DEPTH {
                    if let Ok(inner) = Frame::parse(datagram) {
                        check_parsed(&inner, depth + 1);
                    }
                }
            }
        }
        Frame::RelayAnn { endpoint, .. }
        | Frame::RelayReq { endpoint, .. }
        | Frame::RelayFwd { endpoint, .. } => {
            assert!(endpoint.ip.is_ascii());
            let _ = endpoint.socket_addr();
        }
        Frame::Pex(list) => {
            let entries: Vec<PexEntry<'_>> = list.entries().collect();
            assert_eq!(entries.len(), list.len());
            for e in entries {
                assert!((PEX_ID_MIN..=PEX_ID_MAX).contains(&e.id.len()));
                assert!(e.endpoint.ip.is_ascii());
                let _ = e.endpoint.socket_addr();
            }
        }
    }
    let _ = (frame.kind().name(), frame.kind().type_byte());

    let encoded = frame.to_vec().expect("a parsed frame re-encodes");
    assert_eq!(encoded.len(), frame.encoded_len());
    assert_eq!(Frame::parse(&encoded).as_ref(), Ok(frame));
}

/// Parses anything; whatever parses must pass [`check_parsed`], whatever fails must say why
/// in terms of the type byte it saw.
fn parse_anything(datagram: &[u8]) {
    let _ = classify(datagram);
    match Frame::parse(datagram) {
        Ok(frame) => {
            assert_eq!(frame.kind().type_byte(), datagram[0]);
            check_parsed(&frame, 0);
        }
        Err(FrameError::Empty) => assert!(datagram.is_empty()),
        Err(FrameError::UnknownType(t)) => {
            assert_eq!(t, datagram[0]);
            assert_eq!(FrameKind::from_type_byte(t), None);
        }
        Err(e) => {
            assert_eq!(e.kind().map(FrameKind::type_byte), Some(datagram[0]));
            let _ = e.to_string();
        }
    }
}

/// Encodes with `encode`, `to_vec` and into buffers too small or larger than needed.
fn encode_every_way(frame: &Frame<'_>) -> Vec<u8> {
    let len = frame.encoded_len();
    let mut exact = vec![0u8; len];
    assert_eq!(
        frame.encode(&mut exact),
        Ok(len),
        "encoded_len of {frame:?}"
    );
    assert_eq!(frame.to_vec().as_ref(), Ok(&exact));

    // A larger buffer: only the first `len` bytes are touched.
    let mut roomy = vec![0xEEu8; len + 16];
    assert_eq!(frame.encode(&mut roomy), Ok(len));
    assert_eq!(&roomy[..len], exact.as_slice());
    assert!(roomy[len..].iter().all(|&b| b == 0xEE));

    // Any smaller buffer is refused.
    for short in [0, len / 2, len - 1] {
        assert_eq!(
            frame.encode(&mut vec![0u8; short]),
            Err(EncodeError::BufferTooSmall),
            "{short}-byte buffer for {frame:?}"
        );
    }
    exact
}

const TYPE_BYTES: [u8; 20] = [
    kind::DATA,
    kind::PING,
    kind::PONG,
    kind::IHAVE,
    kind::LAN,
    kind::GOAWAY,
    kind::FRAG,
    kind::HAVE,
    kind::WANT,
    kind::CHUNK,
    kind::BATCH,
    kind::CHUNK_ACK,
    kind::RELAY_ANN,
    kind::RELAY_REQ,
    kind::RELAY_FWD,
    kind::PEX,
    kind::HELLO,
    kind::HELLO_ACK,
    0x00,
    b'{',
];

/// Bytes biased to small values, so that random bodies often hit valid counts and lengths.
fn body_byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), 0u8..=4, select(vec![b':', b'1', b'a', 0xFF])]
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    #[test]
    fn every_frame_round_trips(m in model()) {
        let frame = m.frame();
        let bytes = encode_every_way(&frame);
        prop_assert_eq!(bytes[0], frame.kind().type_byte());
        prop_assert_eq!(Frame::parse(&bytes), Ok(frame));
        check_parsed(&frame, 0);
    }

    #[test]
    fn list_frames_round_trip_their_items(l in list_model()) {
        let mut buf = vec![0u8; BIG];
        let n = l.encode(&mut buf).expect("valid list encodes");
        let bytes = &buf[..n];
        let frame = Frame::parse(bytes).expect("encoded list parses");
        l.assert_items(&frame);
        prop_assert_eq!(frame.encoded_len(), n);
        prop_assert_eq!(encode_every_way(&frame), bytes);
        check_parsed(&frame, 0);
        // The list encoders refuse a buffer one byte short, too.
        prop_assert_eq!(l.encode(&mut buf[..n - 1]), Err(EncodeError::BufferTooSmall));
    }

    #[test]
    fn nested_batches_parse(t in tree()) {
        let bytes = t.encode();
        t.assert_matches(&bytes);
        parse_anything(&bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(datagram in bytes(300)) {
        parse_anything(&datagram);
    }

    #[test]
    fn arbitrary_bodies_behind_each_type_byte_never_panic(
        type_byte in select(TYPE_BYTES.to_vec()),
        body in vec(body_byte(), 0..=96),
    ) {
        let mut datagram = vec![type_byte];
        datagram.extend_from_slice(&body);
        parse_anything(&datagram);
    }

    #[test]
    fn mutated_valid_frames_never_panic(
        datagram in valid_datagram(),
        edits in vec((any::<prop::sample::Index>(), body_byte()), 1..=4),
        tail in bytes(8),
    ) {
        let mut datagram = datagram;
        for (at, byte) in edits {
            let i = at.index(datagram.len());
            datagram[i] = byte;
        }
        parse_anything(&datagram);
        datagram.extend_from_slice(&tail);
        parse_anything(&datagram);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn truncations_never_panic(m in model()) {
        let frame = m.frame();
        let bytes = frame.to_vec().expect("valid frame encodes");
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            parse_anything(prefix);
            if cut == 0 {
                prop_assert_eq!(Frame::parse(prefix), Err(FrameError::Empty));
            } else if m.fully_delimited() {
                prop_assert_eq!(Frame::parse(prefix), Err(FrameError::Truncated(frame.kind())));
            }
        }
    }

    #[test]
    fn truncated_lists_are_refused(l in list_model()) {
        let bytes = l.to_vec();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            parse_anything(prefix);
            if cut > 0 {
                let kind = FrameKind::from_type_byte(bytes[0]).expect("list type");
                prop_assert_eq!(Frame::parse(prefix), Err(FrameError::Truncated(kind)));
            }
        }
    }

    #[test]
    fn trailing_bytes_are_ignored_by_delimited_frames(m in model(), tail in bytes(32)) {
        prop_assume!(m.fully_delimited());
        let frame = m.frame();
        let mut bytes = frame.to_vec().expect("valid frame encodes");
        bytes.extend_from_slice(&tail);
        prop_assert_eq!(Frame::parse(&bytes), Ok(frame));
    }

    #[test]
    fn classify_agrees_with_the_first_byte(datagram in bytes(64)) {
        let class = classify(&datagram);
        match datagram.first() {
            Some(b'{') => prop_assert_eq!(class, DatagramClass::DhtJson),
            Some(0x00) if datagram.len() >= 20 && datagram[4..8] == [0x21, 0x12, 0xA4, 0x42] => {
                prop_assert_eq!(class, DatagramClass::Stun)
            }
            _ => prop_assert_eq!(class, DatagramClass::Setowire),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Edge cases.

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("valid hex")
}

#[test]
fn frame_kinds_map_to_and_from_their_type_bytes() {
    let mut names = std::collections::HashSet::new();
    for k in FrameKind::ALL {
        assert_eq!(FrameKind::from_type_byte(k.type_byte()), Some(k));
        assert!(names.insert(k.name()), "duplicate name {}", k.name());
    }
    let known = (0..=255u8)
        .filter(|&b| FrameKind::from_type_byte(b).is_some())
        .count();
    assert_eq!(known, FrameKind::ALL.len());
}

#[test]
fn goaway_of_one_and_of_two_bytes_both_parse() {
    assert_eq!(Frame::parse(&[kind::GOAWAY]), Ok(Frame::Goaway));
    assert_eq!(Frame::parse(&[kind::GOAWAY, 0x00]), Ok(Frame::Goaway));
    assert_eq!(Frame::parse(&[kind::GOAWAY, 0xFF, 0x01]), Ok(Frame::Goaway));
    // We always send the padded form: py-setowire drops datagrams shorter than 2 bytes.
    assert_eq!(Frame::Goaway.encoded_len(), 2);
    assert_eq!(Frame::Goaway.to_vec(), Ok(vec![kind::GOAWAY, 0x00]));
}

#[test]
fn data_shorter_than_nonce_and_tag_is_truncated() {
    for body in 0..MIN_SEALED_LEN {
        let mut datagram = vec![kind::DATA];
        datagram.resize(1 + body, 0xAB);
        assert_eq!(
            Frame::parse(&datagram),
            Err(FrameError::Truncated(FrameKind::Data)),
            "{body}-byte body"
        );
    }
    let datagram = vec![kind::DATA; 1 + MIN_SEALED_LEN];
    assert_eq!(
        Frame::parse(&datagram),
        Ok(Frame::Data(&datagram[1..])),
        "an empty ciphertext is still a DATA frame"
    );
    assert_eq!(
        Frame::Data(&[0; MIN_SEALED_LEN - 1]).to_vec(),
        Err(EncodeError::InvalidField(
            "sealed DATA shorter than nonce and tag"
        ))
    );
}

#[test]
fn fixed_frames_shorter_than_their_layout_are_truncated() {
    for (type_byte, len) in [
        (kind::HELLO, HANDSHAKE_LEN),
        (kind::HELLO_ACK, HANDSHAKE_LEN),
        (kind::PING, PING_LEN),
        (kind::PONG, PONG_LEN),
    ] {
        let kind = FrameKind::from_type_byte(type_byte).unwrap();
        for cut in 1..len {
            let mut datagram = vec![0x5A; cut];
            datagram[0] = type_byte;
            assert_eq!(Frame::parse(&datagram), Err(FrameError::Truncated(kind)));
        }
        let mut datagram = vec![0x5A; len];
        datagram[0] = type_byte;
        assert_eq!(Frame::parse(&datagram).map(|f| f.kind()), Ok(kind));
    }
}

#[test]
fn frag_index_at_or_past_total_is_invalid() {
    // frag_id ‖ idx ‖ total ‖ piece
    for (index, total) in [(2u16, 2u16), (0, 0), (u16::MAX, u16::MAX), (7, 3)] {
        let mut datagram = unhex("0b f0f1f2f3f4f5f6f7");
        datagram.extend_from_slice(&index.to_be_bytes());
        datagram.extend_from_slice(&total.to_be_bytes());
        datagram.extend_from_slice(b"piece");
        assert!(
            matches!(
                Frame::parse(&datagram),
                Err(FrameError::Invalid(FrameKind::Frag, _))
            ),
            "{index}/{total}"
        );
        let frame = Frame::Frag(Fragment {
            frag_id: [0; 8],
            index,
            total,
            piece: b"piece",
        });
        assert_eq!(
            frame.to_vec(),
            Err(EncodeError::InvalidField("fragment index"))
        );
    }
    // The last valid index.
    assert!(Frame::parse(&unhex("0b f0f1f2f3f4f5f6f7 0001 0002")).is_ok());
    // Header cut short.
    assert_eq!(
        Frame::parse(&unhex("0b f0f1f2f3f4f5f6f7 0001 00")),
        Err(FrameError::Truncated(FrameKind::Frag))
    );
}

#[test]
fn chunk_piece_index_at_or_past_total_is_invalid() {
    for (index, total) in [(2u16, 2u16), (0, 0), (u16::MAX, u16::MAX), (9, 1)] {
        // klen ‖ "k" ‖ FFFF ‖ idx ‖ total ‖ piece
        let mut datagram = unhex("12 01 6b ffff");
        datagram.extend_from_slice(&index.to_be_bytes());
        datagram.extend_from_slice(&total.to_be_bytes());
        datagram.extend_from_slice(b"piece");
        assert!(
            matches!(
                Frame::parse(&datagram),
                Err(FrameError::Invalid(FrameKind::Chunk, _))
            ),
            "{index}/{total}"
        );
        let frame = Frame::Chunk(Chunk::Piece {
            key: "k",
            index,
            total,
            piece: b"piece",
        });
        assert_eq!(
            frame.to_vec(),
            Err(EncodeError::InvalidField("chunk piece index"))
        );
    }
    assert_eq!(
        Frame::parse(&unhex("12 01 6b ffff 0008 0009 aa")),
        Ok(Frame::Chunk(Chunk::Piece {
            key: "k",
            index: 8,
            total: 9,
            piece: &[0xAA],
        }))
    );
}

#[test]
fn chunk_value_longer_than_the_datagram_is_truncated() {
    assert_eq!(
        Frame::parse(&unhex("12 01 6b 0005 61626364")),
        Err(FrameError::Truncated(FrameKind::Chunk))
    );
}

#[test]
fn non_utf8_keys_are_invalid() {
    for (datagram, kind) in [
        (unhex("11 02 fffe"), FrameKind::Want),
        (unhex("10 01 02 c328"), FrameKind::Have),
        (unhex("10 02 01 61 01 80"), FrameKind::Have),
        (unhex("12 01 ff 0000"), FrameKind::Chunk),
        (unhex("14 03 e282 28 0000"), FrameKind::ChunkAck),
    ] {
        assert!(
            matches!(Frame::parse(&datagram), Err(FrameError::Invalid(k, _)) if k == kind),
            "{datagram:02x?} gave {:?}",
            Frame::parse(&datagram)
        );
    }
    // Multi-byte UTF-8 is fine.
    assert_eq!(
        Frame::parse(&unhex("11 04 f09f9880")),
        Ok(Frame::Want { key: "😀" })
    );
}

#[test]
fn empty_keys_are_invalid() {
    assert!(matches!(
        Frame::parse(&unhex("11 00")),
        Err(FrameError::Invalid(FrameKind::Want, _))
    ));
    assert!(matches!(
        Frame::parse(&unhex("10 01 00")),
        Err(FrameError::Invalid(FrameKind::Have, _))
    ));
}

#[test]
fn non_ascii_ips_are_invalid() {
    // RELAY_FWD: from ‖ iplen ‖ ip ‖ port
    assert!(matches!(
        Frame::parse(&unhex("22 0001020304050607 02 c3a9 1f90")),
        Err(FrameError::Invalid(FrameKind::RelayFwd, _))
    ));
    assert!(matches!(
        Frame::parse(&unhex("22 0001020304050607 01 ff 1f90")),
        Err(FrameError::Invalid(FrameKind::RelayFwd, _))
    ));
}

#[test]
fn pex_ids_outside_the_allowed_lengths_are_invalid() {
    for id_len in [0usize, PEX_ID_MIN - 1, PEX_ID_MAX + 1, 255] {
        let mut datagram = vec![kind::PEX, 1, id_len as u8];
        datagram.resize(datagram.len() + id_len, 0x11);
        datagram.extend_from_slice(&unhex("01 31 0001"));
        assert!(
            matches!(
                Frame::parse(&datagram),
                Err(FrameError::Invalid(FrameKind::Pex, _))
            ),
            "id of {id_len} bytes"
        );
        let id = vec![0x11; id_len];
        let entry = PexEntry {
            id: &id,
            endpoint: Endpoint { ip: "1", port: 1 },
        };
        assert_eq!(
            encode_pex([entry], &mut [0u8; 512]),
            Err(EncodeError::InvalidField("PEX id length"))
        );
    }
}

#[test]
fn ihave_must_be_whole_hashes() {
    assert_eq!(Frame::parse(&[kind::IHAVE]), Ok(Frame::Ihave(&[])));
    assert!(matches!(
        Frame::parse(&unhex("07 0102030405060708 09")),
        Err(FrameError::Invalid(FrameKind::Ihave, _))
    ));
    let two = unhex("07 0102030405060708 1112131415161718");
    let frame = Frame::parse(&two).unwrap();
    assert_eq!(
        frame.ihave_hashes().collect::<Vec<_>>(),
        [
            [1, 2, 3, 4, 5, 6, 7, 8],
            [0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
        ]
    );
    assert_eq!(
        Frame::Ihave(&[0; 9]).to_vec(),
        Err(EncodeError::InvalidField("IHAVE hashes"))
    );
    // Other frames have no hashes.
    assert_eq!(Frame::Goaway.ihave_hashes().count(), 0);
}

#[test]
fn lan_announcements() {
    let text = "0eb838a7d3fc951443deb6b5027a8c255412dd6c:10.0.0.1:40001:b3c7ea973a74";
    let mut datagram = vec![kind::LAN];
    datagram.extend_from_slice(text.as_bytes());
    let lan = LanAnnounce {
        id: "0eb838a7d3fc951443deb6b5027a8c255412dd6c",
        ip: "10.0.0.1",
        port: 40001,
        topic_hash: "b3c7ea973a74",
    };
    assert_eq!(Frame::parse(&datagram), Ok(Frame::Lan(lan)));
    assert_eq!(Frame::Lan(lan).to_vec(), Ok(datagram));

    // Without a topic field; we always write it (empty), as py-setowire does.
    let frame = Frame::parse(b"\x09abc:10.0.0.1:1").unwrap();
    assert_eq!(frame.to_vec(), Ok(b"\x09abc:10.0.0.1:1:".to_vec()));

    for bad in [
        &b"\x09"[..],
        b"\x09abc",
        b"\x09:10.0.0.1:1:",
        b"\x09abc::1:",
        b"\x09abc:ip:port:",
        b"\x09abc:ip:65536:",
        b"\x09abc:ip:\xff:",
    ] {
        assert!(
            matches!(
                Frame::parse(bad),
                Err(FrameError::Invalid(FrameKind::Lan, _))
            ),
            "{bad:02x?}"
        );
    }
    for (id, ip, topic_hash) in [("", "ip", ""), ("a:b", "ip", ""), ("id", "::1", "t")] {
        let frame = Frame::Lan(LanAnnounce {
            id,
            ip,
            port: 1,
            topic_hash,
        });
        assert!(matches!(frame.to_vec(), Err(EncodeError::InvalidField(_))));
    }
}

#[test]
fn keys_longer_than_255_bytes_are_refused() {
    let long = "k".repeat(256);
    let max = "k".repeat(255);
    let mut buf = vec![0u8; 2048];
    let too_long = EncodeError::FieldTooLong("key");

    assert_eq!(Frame::Want { key: &long }.encode(&mut buf), Err(too_long));
    assert_eq!(
        Frame::ChunkAck {
            key: &long,
            index: 0
        }
        .encode(&mut buf),
        Err(too_long)
    );
    assert_eq!(
        Frame::Chunk(Chunk::Whole {
            key: &long,
            value: b"v"
        })
        .encode(&mut buf),
        Err(too_long)
    );
    assert_eq!(
        Frame::Chunk(Chunk::Piece {
            key: &long,
            index: 0,
            total: 1,
            piece: b"v"
        })
        .encode(&mut buf),
        Err(too_long)
    );
    assert_eq!(encode_have(["a", &long], &mut buf), Err(too_long));

    // 255 bytes is the limit, and fine.
    let n = Frame::Want { key: &max }.encode(&mut buf).unwrap();
    assert_eq!(Frame::parse(&buf[..n]), Ok(Frame::Want { key: &max }));
    let n = encode_have([max.as_str()], &mut buf).unwrap();
    let Ok(Frame::Have(list)) = Frame::parse(&buf[..n]) else {
        panic!("HAVE expected");
    };
    assert_eq!(list.keys().collect::<Vec<_>>(), [max.as_str()]);
}

#[test]
fn other_oversized_fields_are_refused() {
    let mut buf = vec![0u8; 80 * 1024];
    let long_ip = "1".repeat(256);
    let endpoint = Endpoint {
        ip: &long_ip,
        port: 1,
    };
    let too_long_ip = EncodeError::FieldTooLong("ip");
    assert_eq!(
        Frame::RelayAnn {
            relay: [0; 8],
            endpoint
        }
        .encode(&mut buf),
        Err(too_long_ip)
    );
    assert_eq!(
        Frame::RelayReq {
            from: [0; 8],
            to: [1; 8],
            endpoint
        }
        .encode(&mut buf),
        Err(too_long_ip)
    );
    assert_eq!(
        Frame::RelayFwd {
            from: [0; 8],
            endpoint
        }
        .encode(&mut buf),
        Err(too_long_ip)
    );
    let entry = PexEntry {
        id: &[7; 8],
        endpoint,
    };
    assert_eq!(encode_pex([entry], &mut buf), Err(too_long_ip));

    // A whole CHUNK value cannot take the length reserved as the piece marker, nor more.
    for len in [0xFFFF, 0x10000] {
        let value = vec![0u8; len];
        assert_eq!(
            Frame::Chunk(Chunk::Whole {
                key: "k",
                value: &value
            })
            .to_vec(),
            Err(EncodeError::FieldTooLong("chunk value")),
        );
    }
    let value = vec![0u8; 0xFFFE];
    let bytes = Frame::Chunk(Chunk::Whole {
        key: "k",
        value: &value,
    })
    .to_vec()
    .unwrap();
    assert!(matches!(
        Frame::parse(&bytes),
        Ok(Frame::Chunk(Chunk::Whole { value: v, .. })) if v.len() == 0xFFFE
    ));

    let huge = vec![0u8; 0x10000];
    assert_eq!(
        encode_batch([&huge[..]], &mut vec![0u8; 0x10010]),
        Err(EncodeError::FieldTooLong("batch entry"))
    );
}

#[test]
fn too_many_list_entries_are_refused() {
    let mut buf = vec![0u8; 64 * 1024];

    let keys: Vec<String> = (0..256).map(|i| format!("k{i}")).collect();
    assert_eq!(
        encode_have(keys.iter().map(String::as_str), &mut buf),
        Err(EncodeError::TooManyEntries)
    );
    let n = encode_have(keys[..255].iter().map(String::as_str), &mut buf).unwrap();
    let Ok(Frame::Have(list)) = Frame::parse(&buf[..n]) else {
        panic!("HAVE expected");
    };
    assert_eq!(list.len(), 255);
    assert!(list.keys().eq(keys[..255].iter().map(String::as_str)));

    let id = [9u8; 8];
    let entry = PexEntry {
        id: &id,
        endpoint: Endpoint {
            ip: "10.0.0.1",
            port: 1,
        },
    };
    assert_eq!(
        encode_pex(std::iter::repeat(entry).take(256), &mut buf),
        Err(EncodeError::TooManyEntries)
    );
    assert!(encode_pex(std::iter::repeat(entry).take(255), &mut buf).is_ok());

    let goaway = [kind::GOAWAY, 0];
    assert_eq!(
        encode_batch(std::iter::repeat(&goaway[..]).take(256), &mut buf),
        Err(EncodeError::TooManyEntries)
    );
    let n = encode_batch(std::iter::repeat(&goaway[..]).take(255), &mut buf).unwrap();
    let Ok(Frame::Batch(list)) = Frame::parse(&buf[..n]) else {
        panic!("BATCH expected");
    };
    assert_eq!(list.datagrams().count(), 255);
}

#[test]
fn list_encoders_refuse_small_buffers() {
    for size in 0..2 {
        let mut buf = vec![0u8; size];
        assert_eq!(encode_have([], &mut buf), Err(EncodeError::BufferTooSmall));
        assert_eq!(encode_pex([], &mut buf), Err(EncodeError::BufferTooSmall));
        assert_eq!(encode_batch([], &mut buf), Err(EncodeError::BufferTooSmall));
    }
    // Empty lists are two bytes and parse.
    let mut buf = [0u8; 2];
    assert_eq!(encode_have([], &mut buf), Ok(2));
    assert_eq!(buf, [kind::HAVE, 0]);
    assert!(matches!(Frame::parse(&buf), Ok(Frame::Have(l)) if l.is_empty()));
    assert_eq!(encode_batch([], &mut buf), Ok(2));
    assert!(matches!(Frame::parse(&buf), Ok(Frame::Batch(l)) if l.is_empty()));
    assert_eq!(encode_pex([], &mut buf), Ok(2));
    assert!(matches!(Frame::parse(&buf), Ok(Frame::Pex(l)) if l.is_empty()));

    let mut buf = [0u8; 6];
    assert_eq!(
        encode_have(["abcd"], &mut buf),
        Err(EncodeError::BufferTooSmall)
    );
}

#[test]
fn nested_batch_parses() {
    let ping = Frame::Ping {
        timestamp_ms: 1_000_000,
        id: [3; 20],
    }
    .to_vec()
    .unwrap();
    let pong = Frame::Pong { id: [4; 20] }.to_vec().unwrap();
    let mut have = [0u8; 64];
    let n = encode_have(["k1", "k2"], &mut have).unwrap();
    let have = &have[..n];

    let mut inner = [0u8; 256];
    let n = encode_batch([&ping[..], have], &mut inner).unwrap();
    let inner = &inner[..n];
    let mut outer = [0u8; 512];
    let n = encode_batch([inner, &pong[..], &[][..]], &mut outer).unwrap();
    let outer = &outer[..n];

    let Ok(Frame::Batch(list)) = Frame::parse(outer) else {
        panic!("outer BATCH");
    };
    let datagrams: Vec<&[u8]> = list.datagrams().collect();
    assert_eq!(datagrams, [inner, &pong[..], &[][..]]);
    assert_eq!(Frame::parse(datagrams[2]), Err(FrameError::Empty));
    assert_eq!(Frame::parse(datagrams[1]), Ok(Frame::Pong { id: [4; 20] }));
    let Ok(Frame::Batch(inner_list)) = Frame::parse(datagrams[0]) else {
        panic!("inner BATCH");
    };
    let inner_frames: Vec<Frame<'_>> = inner_list
        .datagrams()
        .map(|d| Frame::parse(d).unwrap())
        .collect();
    assert_eq!(inner_frames[0], Frame::parse(&ping).unwrap());
    let Frame::Have(keys) = inner_frames[1] else {
        panic!("HAVE");
    };
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["k1", "k2"]);
}

#[test]
fn batch_entry_running_past_the_datagram_is_truncated() {
    assert_eq!(
        Frame::parse(&unhex("13 02 0002 0a00 0005 0a00")),
        Err(FrameError::Truncated(FrameKind::Batch))
    );
    assert_eq!(
        Frame::parse(&unhex("13 01 00")),
        Err(FrameError::Truncated(FrameKind::Batch))
    );
}

#[test]
fn empty_and_unknown_datagrams() {
    assert_eq!(Frame::parse(&[]), Err(FrameError::Empty));
    assert_eq!(Frame::parse(&[0x02]), Err(FrameError::UnknownType(0x02)));
    assert_eq!(Frame::parse(b"{}"), Err(FrameError::UnknownType(b'{')));
    assert_eq!(FrameError::Empty.kind(), None);
    assert_eq!(
        FrameError::Truncated(FrameKind::Pex).kind(),
        Some(FrameKind::Pex)
    );
}

#[test]
fn classify_edges() {
    let stun = unhex("000100002112a442505152535455565758595a5b");
    assert_eq!(classify(&stun), DatagramClass::Stun);
    assert_eq!(classify(&stun[..19]), DatagramClass::Setowire);
    let mut wrong_cookie = stun.clone();
    wrong_cookie[4] = 0x22;
    assert_eq!(classify(&wrong_cookie), DatagramClass::Setowire);
    assert_eq!(classify(b"{\"type\": 1}"), DatagramClass::DhtJson);
    assert_eq!(classify(b"{"), DatagramClass::DhtJson);
    assert_eq!(classify(&[]), DatagramClass::Setowire);
    assert_eq!(classify(&[kind::PING]), DatagramClass::Setowire);
}

#[test]
fn endpoints_resolve_only_for_ip_literals_and_nonzero_ports() {
    let ok = Endpoint {
        ip: "203.0.113.1",
        port: 50001,
    };
    assert_eq!(ok.socket_addr(), Some("203.0.113.1:50001".parse().unwrap()));
    let v6 = Endpoint {
        ip: "2001:db8::1",
        port: 7,
    };
    assert_eq!(v6.socket_addr(), Some("[2001:db8::1]:7".parse().unwrap()));
    for (ip, port) in [("203.0.113.1", 0), ("example.org", 80), ("", 80)] {
        assert_eq!(Endpoint { ip, port }.socket_addr(), None);
    }
}
