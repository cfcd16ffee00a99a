//! The Setowire frame codec.
//!
//! Parsing borrows from the datagram: a [`Frame`] holds slices of the receive buffer and
//! allocates nothing. List-carrying frames (HAVE, PEX, BATCH) are validated whole when parsed,
//! so iterating them afterwards cannot fail. Encoding writes into a caller's buffer through
//! [`FrameWriter`] and reports a too-small buffer or an unencodable field as an error.
//!
//! Fixed-layout frames ignore trailing bytes, as every dialect does, so that a newer dialect can
//! append fields without being dropped.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::proto::identity::{Id8, PeerId};

/// The first byte of each Setowire frame.
pub mod kind {
    pub const DATA: u8 = 0x01;
    pub const PING: u8 = 0x03;
    pub const PONG: u8 = 0x04;
    pub const IHAVE: u8 = 0x07;
    pub const LAN: u8 = 0x09;
    pub const GOAWAY: u8 = 0x0A;
    pub const FRAG: u8 = 0x0B;
    pub const HAVE: u8 = 0x10;
    pub const WANT: u8 = 0x11;
    pub const CHUNK: u8 = 0x12;
    pub const BATCH: u8 = 0x13;
    pub const CHUNK_ACK: u8 = 0x14;
    pub const RELAY_ANN: u8 = 0x20;
    pub const RELAY_REQ: u8 = 0x21;
    pub const RELAY_FWD: u8 = 0x22;
    pub const PEX: u8 = 0x30;
    pub const HELLO: u8 = 0xA1;
    pub const HELLO_ACK: u8 = 0xA2;
}

/// HELLO and HELLO_ACK are both exactly this long on the wire.
pub const HANDSHAKE_LEN: usize = 41;
/// A PING: type, millisecond timestamp, the sender's full 20-byte id.
pub const PING_LEN: usize = 29;
/// A PONG: type and the responder's full id.
pub const PONG_LEN: usize = 21;
/// FRAG header after the type byte: fragment id, index, total.
pub const FRAG_HEADER_LEN: usize = 12;
/// Length value that marks a CHUNK as one piece of a multi-piece value.
pub const CHUNK_PIECE_MARK: u16 = 0xFFFF;
/// Smallest sealed DATA body: nonce and tag around an empty ciphertext.
pub const MIN_SEALED_LEN: usize = 28;
/// Bytes of one IHAVE content hash.
pub const IHAVE_HASH_LEN: usize = 8;
/// Shortest and longest peer id a PEX entry may carry (py-setowire sends 8 bytes).
pub const PEX_ID_MIN: usize = 8;
pub const PEX_ID_MAX: usize = 32;
/// py-setowire lists at most this many peers in one PEX frame.
pub const PEX_MAX: usize = 20;

/// The type of a frame, for dispatch, logs and bounded metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Hello,
    HelloAck,
    Data,
    Ping,
    Pong,
    Ihave,
    Lan,
    Goaway,
    Frag,
    Have,
    Want,
    Chunk,
    ChunkAck,
    Batch,
    RelayAnn,
    RelayReq,
    RelayFwd,
    Pex,
}

impl FrameKind {
    pub const ALL: [FrameKind; 18] = [
        FrameKind::Hello,
        FrameKind::HelloAck,
        FrameKind::Data,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::Ihave,
        FrameKind::Lan,
        FrameKind::Goaway,
        FrameKind::Frag,
        FrameKind::Have,
        FrameKind::Want,
        FrameKind::Chunk,
        FrameKind::ChunkAck,
        FrameKind::Batch,
        FrameKind::RelayAnn,
        FrameKind::RelayReq,
        FrameKind::RelayFwd,
        FrameKind::Pex,
    ];

    pub fn from_type_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            kind::HELLO => FrameKind::Hello,
            kind::HELLO_ACK => FrameKind::HelloAck,
            kind::DATA => FrameKind::Data,
            kind::PING => FrameKind::Ping,
            kind::PONG => FrameKind::Pong,
            kind::IHAVE => FrameKind::Ihave,
            kind::LAN => FrameKind::Lan,
            kind::GOAWAY => FrameKind::Goaway,
            kind::FRAG => FrameKind::Frag,
            kind::HAVE => FrameKind::Have,
            kind::WANT => FrameKind::Want,
            kind::CHUNK => FrameKind::Chunk,
            kind::CHUNK_ACK => FrameKind::ChunkAck,
            kind::BATCH => FrameKind::Batch,
            kind::RELAY_ANN => FrameKind::RelayAnn,
            kind::RELAY_REQ => FrameKind::RelayReq,
            kind::RELAY_FWD => FrameKind::RelayFwd,
            kind::PEX => FrameKind::Pex,
            _ => return None,
        })
    }

    pub fn type_byte(self) -> u8 {
        match self {
            FrameKind::Hello => kind::HELLO,
            FrameKind::HelloAck => kind::HELLO_ACK,
            FrameKind::Data => kind::DATA,
            FrameKind::Ping => kind::PING,
            FrameKind::Pong => kind::PONG,
            FrameKind::Ihave => kind::IHAVE,
            FrameKind::Lan => kind::LAN,
            FrameKind::Goaway => kind::GOAWAY,
            FrameKind::Frag => kind::FRAG,
            FrameKind::Have => kind::HAVE,
            FrameKind::Want => kind::WANT,
            FrameKind::Chunk => kind::CHUNK,
            FrameKind::ChunkAck => kind::CHUNK_ACK,
            FrameKind::Batch => kind::BATCH,
            FrameKind::RelayAnn => kind::RELAY_ANN,
            FrameKind::RelayReq => kind::RELAY_REQ,
            FrameKind::RelayFwd => kind::RELAY_FWD,
            FrameKind::Pex => kind::PEX,
        }
    }

    /// A short lowercase name, stable enough for metric labels.
    pub fn name(self) -> &'static str {
        match self {
            FrameKind::Hello => "hello",
            FrameKind::HelloAck => "hello_ack",
            FrameKind::Data => "data",
            FrameKind::Ping => "ping",
            FrameKind::Pong => "pong",
            FrameKind::Ihave => "ihave",
            FrameKind::Lan => "lan",
            FrameKind::Goaway => "goaway",
            FrameKind::Frag => "frag",
            FrameKind::Have => "have",
            FrameKind::Want => "want",
            FrameKind::Chunk => "chunk",
            FrameKind::ChunkAck => "chunk_ack",
            FrameKind::Batch => "batch",
            FrameKind::RelayAnn => "relay_ann",
            FrameKind::RelayReq => "relay_req",
            FrameKind::RelayFwd => "relay_fwd",
            FrameKind::Pex => "pex",
        }
    }
}

/// What a datagram on the shared UDP port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramClass {
    Setowire,
    DhtJson,
    Stun,
}

const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Demultiplexes the one UDP port: `{` starts DHT JSON, 0x00 with the STUN magic cookie is
/// STUN, everything else is a Setowire frame.
pub fn classify(datagram: &[u8]) -> DatagramClass {
    match datagram.first() {
        Some(b'{') => DatagramClass::DhtJson,
        Some(0x00) if datagram.len() >= 20 && datagram[4..8] == STUN_MAGIC_COOKIE => {
            DatagramClass::Stun
        }
        _ => DatagramClass::Setowire,
    }
}

/// Why a datagram is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty datagram")]
    Empty,
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    #[error("truncated {} frame", .0.name())]
    Truncated(FrameKind),
    #[error("invalid {} frame: {}", .0.name(), .1)]
    Invalid(FrameKind, &'static str),
}

impl FrameError {
    /// The frame type the error is about, when the type byte was known.
    pub fn kind(&self) -> Option<FrameKind> {
        match self {
            FrameError::Truncated(k) | FrameError::Invalid(k, _) => Some(*k),
            FrameError::Empty | FrameError::UnknownType(_) => None,
        }
    }
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("output buffer too small")]
    BufferTooSmall,
    #[error("{0} does not fit its length field")]
    FieldTooLong(&'static str),
    #[error("too many entries for one frame")]
    TooManyEntries,
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

/// HELLO / HELLO_ACK body: the sender's short id and X25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake {
    pub id8: Id8,
    pub public_key: [u8; 32],
}

/// An `ip:port` as relay and PEX frames carry it: the ip as ASCII text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub ip: &'a str,
    pub port: u16,
}

impl<'a> Endpoint<'a> {
    /// The address to dial, when the text is an IP literal and the port is not zero.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.ip.parse().ok()?;
        (self.port != 0).then_some(SocketAddr::new(ip, self.port))
    }
}

/// One piece of a fragmented payload. Sent in cleartext by py-setowire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    pub frag_id: [u8; 8],
    pub index: u16,
    pub total: u16,
    pub piece: &'a [u8],
}

/// A CHUNK answering a WANT: a whole small value, or one piece of a large one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    Whole {
        key: &'a str,
        value: &'a [u8],
    },
    Piece {
        key: &'a str,
        index: u16,
        total: u16,
        piece: &'a [u8],
    },
}

impl<'a> Chunk<'a> {
    pub fn key(&self) -> &'a str {
        match self {
            Chunk::Whole { key, .. } | Chunk::Piece { key, .. } => key,
        }
    }
}

/// A LAN multicast announcement: `id40:lip:lport[:topichash]` in ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanAnnounce<'a> {
    pub id: &'a str,
    pub ip: &'a str,
    pub port: u16,
    pub topic_hash: &'a str,
}

/// One PEX entry: a peer id (8 bytes from py-setowire) and where to dial it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PexEntry<'a> {
    pub id: &'a [u8],
    pub endpoint: Endpoint<'a>,
}

/// A parsed frame, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Handshake),
    HelloAck(Handshake),
    /// The sealed body of a DATA frame: nonce ‖ ciphertext ‖ tag.
    Data(&'a [u8]),
    Ping {
        timestamp_ms: u64,
        id: PeerId,
    },
    Pong {
        id: PeerId,
    },
    /// Concatenated 8-byte content hashes; see [`Frame::ihave_hashes`].
    Ihave(&'a [u8]),
    Lan(LanAnnounce<'a>),
    Goaway,
    Frag(Fragment<'a>),
    Have(KeyList<'a>),
    Want {
        key: &'a str,
    },
    Chunk(Chunk<'a>),
    ChunkAck {
        key: &'a str,
        index: u16,
    },
    Batch(BatchEntries<'a>),
    RelayAnn {
        relay: Id8,
        endpoint: Endpoint<'a>,
    },
    RelayReq {
        from: Id8,
        to: Id8,
        endpoint: Endpoint<'a>,
    },
    RelayFwd {
        from: Id8,
        endpoint: Endpoint<'a>,
    },
    Pex(PexEntries<'a>),
}

/// A validated run of `count` entries in a list frame, as it stands on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireList<'a> {
    count: u8,
    bytes: &'a [u8],
}

impl<'a> WireList<'a> {
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The keys of a HAVE frame.
pub type KeyList<'a> = WireList<'a>;
/// The entries of a PEX frame.
pub type PexEntries<'a> = WireList<'a>;
/// The inner datagrams of a BATCH frame.
pub type BatchEntries<'a> = WireList<'a>;

impl<'a> KeyList<'a> {
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut reader = Reader::new(self.bytes, FrameKind::Have);
        (0..self.count)
            .map(move |_| read_key(&mut reader).expect("HAVE keys were validated when parsed"))
    }
}

impl<'a> PexEntries<'a> {
    pub fn entries(&self) -> impl Iterator<Item = PexEntry<'a>> + 'a {
        let mut reader = Reader::new(self.bytes, FrameKind::Pex);
        (0..self.count)
            .map(move |_| read_pex_entry(&mut reader).expect("PEX entries were validated"))
    }
}

impl<'a> BatchEntries<'a> {
    /// Inner datagrams, each to be dispatched as if received alone.
    pub fn datagrams(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut reader = Reader::new(self.bytes, FrameKind::Batch);
        (0..self.count).map(move |_| read_batch_entry(&mut reader).expect("BATCH was validated"))
    }
}

impl<'a> Frame<'a> {
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Hello(_) => FrameKind::Hello,
            Frame::HelloAck(_) => FrameKind::HelloAck,
            Frame::Data(_) => FrameKind::Data,
            Frame::Ping { .. } => FrameKind::Ping,
            Frame::Pong { .. } => FrameKind::Pong,
            Frame::Ihave(_) => FrameKind::Ihave,
            Frame::Lan(_) => FrameKind::Lan,
            Frame::Goaway => FrameKind::Goaway,
            Frame::Frag(_) => FrameKind::Frag,
            Frame::Have(_) => FrameKind::Have,
            Frame::Want { .. } => FrameKind::Want,
            Frame::Chunk(_) => FrameKind::Chunk,
            Frame::ChunkAck { .. } => FrameKind::ChunkAck,
            Frame::Batch(_) => FrameKind::Batch,
            Frame::RelayAnn { .. } => FrameKind::RelayAnn,
            Frame::RelayReq { .. } => FrameKind::RelayReq,
            Frame::RelayFwd { .. } => FrameKind::RelayFwd,
            Frame::Pex(_) => FrameKind::Pex,
        }
    }

    /// The content hashes of an IHAVE frame (empty for any other frame).
    pub fn ihave_hashes(&self) -> impl Iterator<Item = [u8; IHAVE_HASH_LEN]> + 'a {
        let bytes: &'a [u8] = match self {
            Frame::Ihave(bytes) => bytes,
            _ => &[],
        };
        bytes
            .chunks_exact(IHAVE_HASH_LEN)
            .map(|c| c.try_into().expect("chunks_exact yields 8 bytes"))
    }

    /// Parses one datagram (not recursing into BATCH entries).
    pub fn parse(datagram: &'a [u8]) -> Result<Frame<'a>, FrameError> {
        let (&type_byte, body) = datagram.split_first().ok_or(FrameError::Empty)?;
        let kind =
            FrameKind::from_type_byte(type_byte).ok_or(FrameError::UnknownType(type_byte))?;
        let mut r = Reader::new(body, kind);
        let frame = match kind {
            FrameKind::Hello => Frame::Hello(read_handshake(&mut r)?),
            FrameKind::HelloAck => Frame::HelloAck(read_handshake(&mut r)?),
            FrameKind::Data => {
                if body.len() < MIN_SEALED_LEN {
                    return Err(FrameError::Truncated(kind));
                }
                Frame::Data(body)
            }
            FrameKind::Ping => Frame::Ping {
                timestamp_ms: r.u64()?,
                id: r.array()?,
            },
            FrameKind::Pong => Frame::Pong { id: r.array()? },
            FrameKind::Ihave => {
                if body.len() % IHAVE_HASH_LEN != 0 {
                    return Err(FrameError::Invalid(kind, "hash list not a multiple of 8"));
                }
                Frame::Ihave(body)
            }
            FrameKind::Lan => Frame::Lan(parse_lan(body)?),
            FrameKind::Goaway => Frame::Goaway,
            FrameKind::Frag => {
                let frag_id = r.array()?;
                let index = r.u16()?;
                let total = r.u16()?;
                if index >= total {
                    return Err(FrameError::Invalid(kind, "fragment index out of range"));
                }
                Frame::Frag(Fragment {
                    frag_id,
                    index,
                    total,
                    piece: r.rest(),
                })
            }
            FrameKind::Have => {
                let count = r.u8()?;
                let start = r.position();
                for _ in 0..count {
                    read_key(&mut r)?;
                }
                Frame::Have(WireList {
                    count,
                    bytes: &body[start..r.position()],
                })
            }
            FrameKind::Want => Frame::Want {
                key: read_key(&mut r)?,
            },
            FrameKind::Chunk => Frame::Chunk(read_chunk(&mut r)?),
            FrameKind::ChunkAck => Frame::ChunkAck {
                key: read_key(&mut r)?,
                index: r.u16()?,
            },
            FrameKind::Batch => {
                let count = r.u8()?;
                let start = r.position();
                for _ in 0..count {
                    read_batch_entry(&mut r)?;
                }
                Frame::Batch(WireList {
                    count,
                    bytes: &body[start..r.position()],
                })
            }
            FrameKind::RelayAnn => Frame::RelayAnn {
                relay: r.array()?,
                endpoint: read_endpoint(&mut r)?,
            },
            FrameKind::RelayReq => Frame::RelayReq {
                from: r.array()?,
                to: r.array()?,
                endpoint: read_endpoint(&mut r)?,
            },
            FrameKind::RelayFwd => Frame::RelayFwd {
                from: r.array()?,
                endpoint: read_endpoint(&mut r)?,
            },
            FrameKind::Pex => {
                let count = r.u8()?;
                let start = r.position();
                for _ in 0..count {
                    read_pex_entry(&mut r)?;
                }
                Frame::Pex(WireList {
                    count,
                    bytes: &body[start..r.position()],
                })
            }
        };
        Ok(frame)
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Frame::Hello(_) | Frame::HelloAck(_) => HANDSHAKE_LEN - 1,
            Frame::Data(sealed) => sealed.len(),
            Frame::Ping { .. } => PING_LEN - 1,
            Frame::Pong { .. } => PONG_LEN - 1,
            Frame::Ihave(hashes) => hashes.len(),
            Frame::Lan(lan) => {
                lan.id.len() + lan.ip.len() + decimal_len(lan.port) + 3 + lan.topic_hash.len()
            }
            // Sent with a padding byte: py-setowire drops datagrams shorter than 2 bytes.
            Frame::Goaway => 1,
            Frame::Frag(f) => FRAG_HEADER_LEN + f.piece.len(),
            Frame::Have(list) | Frame::Batch(list) | Frame::Pex(list) => 1 + list.bytes.len(),
            Frame::Want { key } => 1 + key.len(),
            Frame::Chunk(Chunk::Whole { key, value }) => 1 + key.len() + 2 + value.len(),
            Frame::Chunk(Chunk::Piece { key, piece, .. }) => 1 + key.len() + 6 + piece.len(),
            Frame::ChunkAck { key, .. } => 1 + key.len() + 2,
            Frame::RelayAnn { endpoint, .. } | Frame::RelayFwd { endpoint, .. } => {
                8 + 3 + endpoint.ip.len()
            }
            Frame::RelayReq { endpoint, .. } => 16 + 3 + endpoint.ip.len(),
        }
    }

    /// Writes the frame into `out`, returning the number of bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut w = FrameWriter::new(out);
        w.u8(self.kind().type_byte())?;
        match self {
            Frame::Hello(h) | Frame::HelloAck(h) => {
                w.bytes(&h.id8)?;
                w.bytes(&h.public_key)?;
            }
            Frame::Data(sealed) => {
                if sealed.len() < MIN_SEALED_LEN {
                    return Err(EncodeError::InvalidField(
                        "sealed DATA shorter than nonce and tag",
                    ));
                }
                w.bytes(sealed)?;
            }
            Frame::Ping { timestamp_ms, id } => {
                w.u64(*timestamp_ms)?;
                w.bytes(id)?;
            }
            Frame::Pong { id } => w.bytes(id)?,
            Frame::Ihave(hashes) => {
                if hashes.len() % IHAVE_HASH_LEN != 0 {
                    return Err(EncodeError::InvalidField("IHAVE hashes"));
                }
                w.bytes(hashes)?;
            }
            Frame::Lan(lan) => write_lan(&mut w, lan)?,
            Frame::Goaway => w.u8(0)?,
            Frame::Frag(f) => {
                if f.index >= f.total {
                    return Err(EncodeError::InvalidField("fragment index"));
                }
                w.bytes(&f.frag_id)?;
                w.u16(f.index)?;
                w.u16(f.total)?;
                w.bytes(f.piece)?;
            }
            Frame::Have(list) | Frame::Batch(list) | Frame::Pex(list) => {
                w.u8(list.count)?;
                w.bytes(list.bytes)?;
            }
            Frame::Want { key } => w.key(key)?,
            Frame::Chunk(Chunk::Whole { key, value }) => {
                w.key(key)?;
                let len = u16::try_from(value.len())
                    .ok()
                    .filter(|&l| l != CHUNK_PIECE_MARK)
                    .ok_or(EncodeError::FieldTooLong("chunk value"))?;
                w.u16(len)?;
                w.bytes(value)?;
            }
            Frame::Chunk(Chunk::Piece {
                key,
                index,
                total,
                piece,
            }) => {
                if index >= total {
                    return Err(EncodeError::InvalidField("chunk piece index"));
                }
                w.key(key)?;
                w.u16(CHUNK_PIECE_MARK)?;
                w.u16(*index)?;
                w.u16(*total)?;
                w.bytes(piece)?;
            }
            Frame::ChunkAck { key, index } => {
                w.key(key)?;
                w.u16(*index)?;
            }
            Frame::RelayAnn { relay, endpoint } => {
                w.bytes(relay)?;
                w.endpoint(endpoint)?;
            }
            Frame::RelayReq { from, to, endpoint } => {
                w.bytes(from)?;
                w.bytes(to)?;
                w.endpoint(endpoint)?;
            }
            Frame::RelayFwd { from, endpoint } => {
                w.bytes(from)?;
                w.endpoint(endpoint)?;
            }
        }
        Ok(w.position())
    }

    /// Encodes into a fresh vector: for tests and cold paths.
    pub fn to_vec(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = vec![0; self.encoded_len()];
        let n = self.encode(&mut out)?;
        out.truncate(n);
        Ok(out)
    }
}

/// Encodes a HAVE frame listing `keys` (at most 255 keys of at most 255 bytes each).
pub fn encode_have<'k>(
    keys: impl IntoIterator<Item = &'k str>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_list(kind::HAVE, keys, out, |w, key| w.key(key))
}

/// Encodes a PEX frame (at most 255 entries; py-setowire sends at most 20).
pub fn encode_pex<'e>(
    entries: impl IntoIterator<Item = PexEntry<'e>>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_list(kind::PEX, entries, out, |w, entry| {
        if !(PEX_ID_MIN..=PEX_ID_MAX).contains(&entry.id.len()) {
            return Err(EncodeError::InvalidField("PEX id length"));
        }
        w.u8(entry.id.len() as u8)?;
        w.bytes(entry.id)?;
        w.endpoint(&entry.endpoint)
    })
}

/// Encodes a BATCH frame around already-encoded inner datagrams.
pub fn encode_batch<'f>(
    datagrams: impl IntoIterator<Item = &'f [u8]>,
    out: &mut [u8],
) -> Result<usize, EncodeError> {
    encode_list(kind::BATCH, datagrams, out, |w, datagram| {
        let len =
            u16::try_from(datagram.len()).map_err(|_| EncodeError::FieldTooLong("batch entry"))?;
        w.u16(len)?;
        w.bytes(datagram)
    })
}

fn encode_list<T>(
    type_byte: u8,
    items: impl IntoIterator<Item = T>,
    out: &mut [u8],
    mut write_item: impl FnMut(&mut FrameWriter<'_>, T) -> Result<(), EncodeError>,
) -> Result<usize, EncodeError> {
    let mut w = FrameWriter::new(out);
    w.u8(type_byte)?;
    w.u8(0)?;
    let mut count: u8 = 0;
    for item in items {
        count = count.checked_add(1).ok_or(EncodeError::TooManyEntries)?;
        write_item(&mut w, item)?;
    }
    w.buf[1] = count;
    Ok(w.position())
}

/// Writes big-endian fields into a caller's buffer, refusing to run past its end.
pub struct FrameWriter<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> FrameWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn bytes(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(EncodeError::BufferTooSmall)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(EncodeError::BufferTooSmall)?
            .copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    pub fn u8(&mut self, v: u8) -> Result<(), EncodeError> {
        self.bytes(&[v])
    }

    pub fn u16(&mut self, v: u16) -> Result<(), EncodeError> {
        self.bytes(&v.to_be_bytes())
    }

    pub fn u64(&mut self, v: u64) -> Result<(), EncodeError> {
        self.bytes(&v.to_be_bytes())
    }

    /// A string behind a one-byte length, as keys and IPs are sent.
    fn short_str(&mut self, s: &str, what: &'static str) -> Result<(), EncodeError> {
        let len = u8::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong(what))?;
        self.u8(len)?;
        self.bytes(s.as_bytes())
    }

    /// A store key; the parser refuses empty ones, so they are never written.
    fn key(&mut self, key: &str) -> Result<(), EncodeError> {
        if key.is_empty() {
            return Err(EncodeError::InvalidField("empty key"));
        }
        self.short_str(key, "key")
    }

    fn endpoint(&mut self, endpoint: &Endpoint<'_>) -> Result<(), EncodeError> {
        if !endpoint.ip.is_ascii() {
            return Err(EncodeError::InvalidField("ip is not ASCII"));
        }
        self.short_str(endpoint.ip, "ip")?;
        self.u16(endpoint.port)
    }
}

/// Reads big-endian fields from a frame body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    kind: FrameKind,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], kind: FrameKind) -> Self {
        Self { buf, pos: 0, kind }
    }

    fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(FrameError::Truncated(self.kind))?;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or(FrameError::Truncated(self.kind))?;
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        self.pos = self.buf.len();
        rest
    }

    fn str(&mut self, n: usize, what: &'static str) -> Result<&'a str, FrameError> {
        let kind = self.kind;
        std::str::from_utf8(self.take(n)?).map_err(|_| FrameError::Invalid(kind, what))
    }
}

fn read_handshake(r: &mut Reader<'_>) -> Result<Handshake, FrameError> {
    Ok(Handshake {
        id8: r.array()?,
        public_key: r.array()?,
    })
}

fn read_key<'a>(r: &mut Reader<'a>) -> Result<&'a str, FrameError> {
    let len = r.u8()?;
    if len == 0 {
        return Err(FrameError::Invalid(r.kind, "empty key"));
    }
    r.str(usize::from(len), "key is not UTF-8")
}

fn read_endpoint<'a>(r: &mut Reader<'a>) -> Result<Endpoint<'a>, FrameError> {
    let len = r.u8()?;
    let ip = r.str(usize::from(len), "ip is not text")?;
    if !ip.is_ascii() {
        return Err(FrameError::Invalid(r.kind, "ip is not ASCII"));
    }
    Ok(Endpoint { ip, port: r.u16()? })
}

fn read_pex_entry<'a>(r: &mut Reader<'a>) -> Result<PexEntry<'a>, FrameError> {
    let id_len = usize::from(r.u8()?);
    if !(PEX_ID_MIN..=PEX_ID_MAX).contains(&id_len) {
        return Err(FrameError::Invalid(FrameKind::Pex, "peer id length"));
    }
    Ok(PexEntry {
        id: r.take(id_len)?,
        endpoint: read_endpoint(r)?,
    })
}

fn read_batch_entry<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], FrameError> {
    let len = r.u16()?;
    r.take(usize::from(len))
}

fn read_chunk<'a>(r: &mut Reader<'a>) -> Result<Chunk<'a>, FrameError> {
    let key = read_key(r)?;
    let len = r.u16()?;
    if len != CHUNK_PIECE_MARK {
        return Ok(Chunk::Whole {
            key,
            value: r.take(usize::from(len))?,
        });
    }
    let index = r.u16()?;
    let total = r.u16()?;
    if index >= total {
        return Err(FrameError::Invalid(
            FrameKind::Chunk,
            "piece index out of range",
        ));
    }
    Ok(Chunk::Piece {
        key,
        index,
        total,
        piece: r.rest(),
    })
}

fn parse_lan(body: &[u8]) -> Result<LanAnnounce<'_>, FrameError> {
    let invalid = |why| FrameError::Invalid(FrameKind::Lan, why);
    let text = std::str::from_utf8(body).map_err(|_| invalid("not text"))?;
    let mut parts = text.split(':');
    let id = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(invalid("no id"))?;
    let ip = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or(invalid("no ip"))?;
    let port = parts
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or(invalid("bad port"))?;
    let topic_hash = parts.next().unwrap_or("");
    Ok(LanAnnounce {
        id,
        ip,
        port,
        topic_hash,
    })
}

fn write_lan(w: &mut FrameWriter<'_>, lan: &LanAnnounce<'_>) -> Result<(), EncodeError> {
    let has_colon = |s: &str| s.is_empty() || s.contains(':');
    if has_colon(lan.id) || has_colon(lan.ip) || lan.topic_hash.contains(':') {
        return Err(EncodeError::InvalidField(
            "LAN fields must be non-empty and colon-free",
        ));
    }
    w.bytes(lan.id.as_bytes())?;
    w.u8(b':')?;
    w.bytes(lan.ip.as_bytes())?;
    w.u8(b':')?;
    let mut digits = [0u8; 5];
    let n = write_decimal(lan.port, &mut digits);
    w.bytes(&digits[..n])?;
    // py-setowire always writes the topic field, empty when it has joined no topic.
    w.u8(b':')?;
    w.bytes(lan.topic_hash.as_bytes())
}

fn decimal_len(v: u16) -> usize {
    let mut digits = [0u8; 5];
    write_decimal(v, &mut digits)
}

fn write_decimal(v: u16, out: &mut [u8; 5]) -> usize {
    let mut cursor = &mut out[..];
    write!(cursor, "{v}").expect("a u16 has at most 5 digits");
    5 - cursor.len()
}
