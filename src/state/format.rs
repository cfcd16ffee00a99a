//! The snapshot file: what it holds and how it is laid out.
//!
//! A small binary form rather than JSON: stored values are arbitrary bytes (up to
//! `store_max_value_bytes` each), which JSON would have to carry as hex or base64 and parse
//! back through an intermediate tree; here they are copied once each way, and a reader can
//! check every length against the caps before it takes anything.
//!
//! ```text
//! header   magic "SWNSTATE" | version u32 | written (Unix ms) u64 | CRC-32 of the 20 bytes before
//! section  tag u8 | body length u64 | CRC-32 of the body u32 | body       (one per part)
//! end      tag 0 | length 0 | CRC-32 0
//! ```
//!
//! Integers are little-endian. Each part (DHT, announcements, values, peers) is a section
//! with its own checksum, so a corrupt section costs that part only; a cut-off file is told
//! by the missing end marker, whatever length it was cut at. A section longer than the caps
//! allow, or with more records than they allow, is refused whole, and a file longer than all
//! caps together is not read at all ([`SnapshotLimits::max_file_bytes`]). Decoding never
//! panics and never allocates more than the input: every count is checked against the bytes
//! left.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use super::codec::{CodecError, Reader, Writer, MAX_ADDR_BYTES, MAX_IP_BYTES};
use crate::http::bootstrap::{Announcement, MAX_NAT_BYTES, MAX_TOPIC_BYTES};
use setowire_core::dht::id::ID_BYTES;
use setowire_core::dht::NodeId;
use setowire_core::proto::identity::{decode_hex, encode_hex};
use setowire_core::swarm::store::MAX_KEY_LEN;

pub const MAGIC: [u8; 8] = *b"SWNSTATE";
/// The layout this build writes and the only one it reads.
pub const VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 8 + 4;
const SECTION_HEADER_BYTES: usize = 1 + 8 + 4;
const END_TAG: u8 = 0;
/// Bytes of an announcement's id (40 hex digits).
const ANNOUNCEMENT_ID_BYTES: usize = 20;
/// Most bytes one announcement record takes: id, address, optional LAN address, optional
/// `nat` and `topic`, `relay`, source IP, time.
pub const MAX_ANNOUNCEMENT_BYTES: usize = ANNOUNCEMENT_ID_BYTES
    + MAX_ADDR_BYTES
    + 1
    + MAX_ADDR_BYTES
    + 2
    + MAX_NAT_BYTES
    + 2
    + MAX_TOPIC_BYTES
    + 1
    + MAX_IP_BYTES
    + 8;
/// Bytes a stored value's record takes beyond its key and value: their lengths.
const VALUE_OVERHEAD: usize = 1 + 4;

pub use crate::telemetry::state::StatePart as Part;

/// The tag of a part's section, as written on disk (never renumber).
fn tag(part: Part) -> u8 {
    match part {
        Part::File => END_TAG,
        Part::Dht => 1,
        Part::Announcements => 2,
        Part::Values => 3,
        Part::Peers => 4,
    }
}

fn part_of_tag(tag: u8) -> Option<Part> {
    Part::ALL
        .into_iter()
        .find(|&p| p != Part::File && self::tag(p) == tag)
}

/// Why (a part of) a snapshot was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("not a snapshot file (no \"SWNSTATE\" magic)")]
    NotASnapshot,
    #[error("snapshot version {found}; this node reads version {VERSION}")]
    Version { found: u32 },
    #[error("the header's checksum does not match")]
    HeaderChecksum,
    #[error("{len} bytes, more than the {max} the configured caps allow")]
    TooLarge { len: u64, max: u64 },
    #[error("the section's checksum does not match: corrupt")]
    Checksum,
    #[error("{count} records, more than the {max} the configured caps allow")]
    TooMany { count: usize, max: usize },
    #[error("a second section of this part")]
    Duplicate,
    #[error("unknown section tag {0}")]
    UnknownSection(u8),
    #[error("the {section} section: {source}")]
    Cut {
        section: &'static str,
        source: CodecError,
    },
    #[error("a corrupt end marker")]
    BadEnd,
    #[error("{0} bytes after the end marker")]
    TrailingBytes(usize),
    #[error("{0} bytes of records left over in the section")]
    LeftOver(usize),
}

/// How much a snapshot may hold; the writer keeps to it and the reader refuses more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// Bytes of DHT value records.
    pub dht_bytes: usize,
    pub announcements: usize,
    /// Stored values, and their key and value bytes together.
    pub values: usize,
    pub values_bytes: usize,
    /// Peer addresses.
    pub peers: usize,
}

impl SnapshotLimits {
    fn section_cap(&self, part: Part) -> usize {
        let records = match part {
            Part::File => 0,
            Part::Dht => ID_BYTES.saturating_add(self.dht_bytes),
            Part::Announcements => self.announcements.saturating_mul(MAX_ANNOUNCEMENT_BYTES),
            Part::Values => self
                .values
                .saturating_mul(VALUE_OVERHEAD)
                .saturating_add(self.values_bytes),
            Part::Peers => self.peers.saturating_mul(MAX_ADDR_BYTES),
        };
        // Every section starts with its record count.
        records.saturating_add(4)
    }

    /// The longest file these caps allow: longer ones are refused unread.
    pub fn max_file_bytes(&self) -> u64 {
        let sections = Part::ALL[1..]
            .iter()
            .map(|&p| SECTION_HEADER_BYTES.saturating_add(self.section_cap(p)))
            .fold(0usize, usize::saturating_add);
        (HEADER_BYTES + SECTION_HEADER_BYTES).saturating_add(sections) as u64
    }
}

/// A DHT value kept for another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedDhtValue {
    pub key: NodeId,
    /// JSON text.
    pub value: String,
    /// The source that owns it (an IPv4 address or an IPv6 prefix).
    pub owner: IpAddr,
    pub expires_unix_ms: u64,
}

/// An HTTP bootstrap announcement, with who made it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedAnnouncement {
    pub announcement: Announcement,
    pub source: IpAddr,
    pub announced_unix_ms: u64,
}

/// A stored value: its key and its bytes.
pub type StoredValue = (String, Arc<[u8]>);

/// Everything a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub written_unix_ms: u64,
    /// The DHT node id; the DHT section (and its values) is written only with one.
    pub dht_id: Option<NodeId>,
    /// Soonest to expire first.
    pub dht_values: Vec<SavedDhtValue>,
    /// Oldest first.
    pub announcements: Vec<SavedAnnouncement>,
    /// Stored values, most recently stored first.
    pub values: Vec<StoredValue>,
    /// Addresses of peers to dial again.
    pub peers: Vec<SocketAddr>,
}

/// A part that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartFailure {
    pub part: Part,
    pub error: FormatError,
}

/// What a snapshot file gave: the parts that were read whole (the others are empty) and
/// why the rest were not.
#[derive(Debug, Default)]
pub struct Decoded {
    pub snapshot: Snapshot,
    pub failures: Vec<PartFailure>,
}

/// The snapshot file for `snapshot`, holding no more than `limits` allow: the first records
/// of each list that fit (the lists come in the order worth keeping).
pub fn encode(snapshot: &Snapshot, limits: &SnapshotLimits) -> Vec<u8> {
    let mut out = Writer::default();
    let values: usize = snapshot.values.iter().map(|(k, v)| k.len() + v.len()).sum();
    let dht: usize = snapshot.dht_values.iter().map(|v| v.value.len()).sum();
    out.buf.reserve(
        values
            .saturating_add(dht)
            .min(limits.max_file_bytes() as usize),
    );
    out.raw(&MAGIC);
    out.u32(VERSION);
    out.u64(snapshot.written_unix_ms);
    let crc = crc32fast::hash(&out.buf);
    out.u32(crc);
    if let Some(id) = snapshot.dht_id {
        section(&mut out, Part::Dht, |w| {
            dht_body(w, id, &snapshot.dht_values, limits)
        });
    }
    section(&mut out, Part::Announcements, |w| {
        announcements_body(w, &snapshot.announcements, limits)
    });
    section(&mut out, Part::Values, |w| {
        values_body(w, &snapshot.values, limits)
    });
    section(&mut out, Part::Peers, |w| {
        peers_body(w, &snapshot.peers, limits)
    });
    out.u8(END_TAG);
    out.u64(0);
    out.u32(0);
    out.buf
}

/// A section whose body `body` writes in place; its length and checksum are filled in after.
fn section(out: &mut Writer, part: Part, body: impl FnOnce(&mut Writer)) {
    out.u8(tag(part));
    let header = out.buf.len();
    out.u64(0);
    out.u32(0);
    let start = out.buf.len();
    body(out);
    let len = (out.buf.len() - start) as u64;
    let crc = crc32fast::hash(&out.buf[start..]);
    out.buf[header..header + 8].copy_from_slice(&len.to_le_bytes());
    out.buf[header + 8..start].copy_from_slice(&crc.to_le_bytes());
}

/// Records behind their count, as many as `fits` (given each record's length) lets in.
fn records<T>(
    out: &mut Writer,
    items: &[T],
    mut fits: impl FnMut(&T, usize) -> bool,
    write: impl Fn(&mut Writer, &T),
) {
    let at = out.buf.len();
    out.u32(0);
    let mut count = 0u32;
    for item in items {
        let start = out.buf.len();
        write(out, item);
        if count == u32::MAX || !fits(item, out.buf.len() - start) {
            out.buf.truncate(start);
            break;
        }
        count += 1;
    }
    out.buf[at..at + 4].copy_from_slice(&count.to_le_bytes());
}

fn dht_body(out: &mut Writer, id: NodeId, values: &[SavedDhtValue], limits: &SnapshotLimits) {
    out.raw(&id.0);
    let mut bytes = 0usize;
    records(
        out,
        values,
        |v, len| {
            bytes += len;
            bytes <= limits.dht_bytes && u32::try_from(v.value.len()).is_ok()
        },
        |w, v| {
            w.raw(&v.key.0);
            w.ip(v.owner);
            w.u64(v.expires_unix_ms);
            w.long(v.value.as_bytes());
        },
    );
}

fn announcements_body(out: &mut Writer, list: &[SavedAnnouncement], limits: &SnapshotLimits) {
    let mut count = 0;
    let writable = |s: &SavedAnnouncement| {
        decode_hex(&s.announcement.id).is_some_and(|id| id.len() == ANNOUNCEMENT_ID_BYTES)
            && s.announcement
                .nat
                .as_ref()
                .map_or(true, |n| n.len() <= MAX_NAT_BYTES)
            && s.announcement
                .topic
                .as_ref()
                .map_or(true, |t| t.len() <= MAX_TOPIC_BYTES)
    };
    // Announcements the HTTP listener took always fit; one that does not is skipped.
    let list: Vec<&SavedAnnouncement> = list.iter().filter(|s| writable(s)).collect();
    records(
        out,
        &list,
        |_, _| {
            count += 1;
            count <= limits.announcements
        },
        |w, s| {
            let a = &s.announcement;
            w.raw(&decode_hex(&a.id).unwrap_or_default());
            w.addr(a.addr);
            optional(w, a.local, Writer::addr);
            optional(w, a.nat.as_deref(), |w, n| w.short(n.as_bytes()));
            optional(w, a.topic.as_deref(), |w, t| w.short(t.as_bytes()));
            w.u8(match a.relay {
                None => 0,
                Some(false) => 1,
                Some(true) => 2,
            });
            w.ip(s.source);
            w.u64(s.announced_unix_ms);
        },
    )
}

fn optional<T>(w: &mut Writer, value: Option<T>, write: impl Fn(&mut Writer, T)) {
    match value {
        None => w.u8(0),
        Some(v) => {
            w.u8(1);
            write(w, v);
        }
    }
}

fn values_body(out: &mut Writer, values: &[StoredValue], limits: &SnapshotLimits) {
    let (mut count, mut bytes) = (0usize, 0usize);
    // The store admits no other keys; one that slipped through is skipped, not written.
    let list: Vec<&StoredValue> = values
        .iter()
        .filter(|(k, v)| {
            (1..=MAX_KEY_LEN).contains(&k.len()) && !v.is_empty() && u32::try_from(v.len()).is_ok()
        })
        .collect();
    records(
        out,
        &list,
        |(k, v), _| {
            count += 1;
            bytes = bytes.saturating_add(k.len() + v.len());
            count <= limits.values && bytes <= limits.values_bytes
        },
        |w, (k, v)| {
            w.short(k.as_bytes());
            w.long(v);
        },
    )
}

fn peers_body(out: &mut Writer, peers: &[SocketAddr], limits: &SnapshotLimits) {
    let mut count = 0;
    records(
        out,
        peers,
        |_, _| {
            count += 1;
            count <= limits.peers
        },
        |w, a| w.addr(*a),
    )
}

/// Reads a snapshot file, taking every part that is whole and within `limits`.
pub fn decode(bytes: &[u8], limits: &SnapshotLimits) -> Decoded {
    let mut out = Decoded::default();
    let max = limits.max_file_bytes();
    if bytes.len() as u64 > max {
        out.failures.push(fail(
            Part::File,
            FormatError::TooLarge {
                len: bytes.len() as u64,
                max,
            },
        ));
        return out;
    }
    let mut r = Reader::new(bytes);
    match header(&mut r) {
        Ok(written) => out.snapshot.written_unix_ms = written,
        Err(e) => {
            out.failures.push(fail(Part::File, e));
            return out;
        }
    }
    let mut seen = Vec::new();
    loop {
        let (part, body) = match next_section(&mut r) {
            Ok(None) => {
                if !r.is_empty() {
                    out.failures
                        .push(fail(Part::File, FormatError::TrailingBytes(r.left())));
                }
                return out;
            }
            Ok(Some(section)) => section,
            Err(e) => {
                out.failures.push(fail(Part::File, e));
                return out;
            }
        };
        if seen.contains(&part) {
            out.failures.push(fail(part, FormatError::Duplicate));
            continue;
        }
        seen.push(part);
        if let Err(e) = read_part(part, body, limits, &mut out.snapshot) {
            out.failures.push(fail(part, e));
        }
    }
}

fn fail(part: Part, error: FormatError) -> PartFailure {
    PartFailure { part, error }
}

fn header(r: &mut Reader<'_>) -> Result<u64, FormatError> {
    let fixed = r.take(HEADER_BYTES as u64, "the header")?;
    let mut h = Reader::new(fixed);
    if h.fixed::<8>("the magic")? != MAGIC {
        return Err(FormatError::NotASnapshot);
    }
    let version = h.u32("the version")?;
    let written = h.u64("the time written")?;
    let crc = h.u32("the header checksum")?;
    if crc32fast::hash(&fixed[..HEADER_BYTES - 4]) != crc {
        return Err(FormatError::HeaderChecksum);
    }
    if version != VERSION {
        return Err(FormatError::Version { found: version });
    }
    Ok(written)
}

/// The next section's part and body; `None` at the end marker. A section that cannot be
/// taken leaves the rest of the file unplaced: a failure of the file, naming the section.
fn next_section<'a>(r: &mut Reader<'a>) -> Result<Option<(Part, Body<'a>)>, FormatError> {
    let tag = r.u8("a section tag")?;
    let part = match tag {
        END_TAG => None,
        tag => Some(part_of_tag(tag).ok_or(FormatError::UnknownSection(tag))?),
    };
    let cut = |source| FormatError::Cut {
        section: part.map_or("end", Part::name),
        source,
    };
    let len = r.u64("a section length").map_err(cut)?;
    let crc = r.u32("a section checksum").map_err(cut)?;
    let body = r.take(len, "a section").map_err(cut)?;
    match part {
        None if len == 0 && crc == 0 => Ok(None),
        None => Err(FormatError::BadEnd),
        Some(part) => Ok(Some((part, Body { bytes: body, crc }))),
    }
}

struct Body<'a> {
    bytes: &'a [u8],
    crc: u32,
}

fn read_part(
    part: Part,
    body: Body<'_>,
    limits: &SnapshotLimits,
    into: &mut Snapshot,
) -> Result<(), FormatError> {
    let cap = limits.section_cap(part);
    if body.bytes.len() > cap {
        return Err(FormatError::TooLarge {
            len: body.bytes.len() as u64,
            max: cap as u64,
        });
    }
    if crc32fast::hash(body.bytes) != body.crc {
        return Err(FormatError::Checksum);
    }
    let mut r = Reader::new(body.bytes);
    match part {
        Part::File => {}
        Part::Dht => {
            let (id, values) = read_dht(&mut r)?;
            into.dht_id = Some(id);
            into.dht_values = values;
        }
        Part::Announcements => into.announcements = read_announcements(&mut r, limits)?,
        Part::Values => into.values = read_values(&mut r, limits)?,
        Part::Peers => into.peers = read_peers(&mut r, limits)?,
    }
    if !r.is_empty() {
        return Err(FormatError::LeftOver(r.left()));
    }
    Ok(())
}

fn read_dht(r: &mut Reader<'_>) -> Result<(NodeId, Vec<SavedDhtValue>), FormatError> {
    let id = NodeId(r.fixed("the DHT id")?);
    let n = r.count("DHT values", ID_BYTES + 5 + 8 + 4)?;
    let mut values = Vec::with_capacity(n);
    for _ in 0..n {
        let key = NodeId(r.fixed("a DHT key")?);
        let owner = r.ip("a DHT value's owner")?;
        let expires_unix_ms = r.u64("a DHT value's expiry")?;
        let value = r.long_text("a DHT value")?.to_owned();
        values.push(SavedDhtValue {
            key,
            value,
            owner,
            expires_unix_ms,
        });
    }
    Ok((id, values))
}

fn within(count: usize, max: usize) -> Result<usize, FormatError> {
    if count > max {
        return Err(FormatError::TooMany { count, max });
    }
    Ok(count)
}

fn read_announcements(
    r: &mut Reader<'_>,
    limits: &SnapshotLimits,
) -> Result<Vec<SavedAnnouncement>, FormatError> {
    let n = within(
        r.count("announcements", ANNOUNCEMENT_ID_BYTES + 7 + 4 + 5 + 8)?,
        limits.announcements,
    )?;
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        let id = encode_hex(&r.fixed::<ANNOUNCEMENT_ID_BYTES>("an announcement id")?);
        let addr = r.addr("an announced address")?;
        let local = read_optional(r, "a LAN address", |r| r.addr("a LAN address"))?;
        let nat = read_optional(r, "a NAT type", |r| label(r, "a NAT type", MAX_NAT_BYTES))?;
        let topic = read_optional(r, "a topic", |r| label(r, "a topic", MAX_TOPIC_BYTES))?;
        let relay = match r.u8("a relay flag")? {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return Err(CodecError::Invalid("a relay flag").into()),
        };
        let source = r.ip("an announcing address")?;
        let announced_unix_ms = r.u64("an announcement time")?;
        list.push(SavedAnnouncement {
            announcement: Announcement {
                id,
                addr,
                local,
                nat,
                topic,
                relay,
            },
            source,
            announced_unix_ms,
        });
    }
    Ok(list)
}

fn read_optional<'a, T>(
    r: &mut Reader<'a>,
    what: &'static str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, CodecError>,
) -> Result<Option<T>, CodecError> {
    match r.u8(what)? {
        0 => Ok(None),
        1 => read(r).map(Some),
        _ => Err(CodecError::Invalid(what)),
    }
}

/// A short text of at most `max` bytes without control characters, as the HTTP listener
/// takes them.
fn label(r: &mut Reader<'_>, what: &'static str, max: usize) -> Result<String, CodecError> {
    let text = r.short_text(what)?;
    if text.len() > max || text.chars().any(char::is_control) {
        return Err(CodecError::Invalid(what));
    }
    Ok(text.to_owned())
}

fn read_values(
    r: &mut Reader<'_>,
    limits: &SnapshotLimits,
) -> Result<Vec<StoredValue>, FormatError> {
    let n = within(r.count("stored values", VALUE_OVERHEAD + 2)?, limits.values)?;
    let mut values = Vec::with_capacity(n);
    let mut bytes = 0usize;
    for _ in 0..n {
        let key = r.short_text("a stored value's key")?;
        let value = r.long("a stored value")?;
        if key.is_empty() || value.is_empty() {
            return Err(CodecError::Invalid("an empty stored value or key").into());
        }
        bytes += key.len() + value.len();
        if bytes > limits.values_bytes {
            return Err(FormatError::TooLarge {
                len: bytes as u64,
                max: limits.values_bytes as u64,
            });
        }
        values.push((key.to_owned(), Arc::from(value)));
    }
    Ok(values)
}

fn read_peers(r: &mut Reader<'_>, limits: &SnapshotLimits) -> Result<Vec<SocketAddr>, FormatError> {
    let n = within(r.count("peer addresses", 7)?, limits.peers)?;
    (0..n)
        .map(|_| r.addr("a peer address").map_err(FormatError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SnapshotLimits = SnapshotLimits {
        dht_bytes: 4096,
        announcements: 10,
        values: 10,
        values_bytes: 4096,
        peers: 10,
    };

    fn sample() -> Snapshot {
        Snapshot {
            written_unix_ms: 1_700_000_000_123,
            dht_id: Some(NodeId([7; 20])),
            dht_values: vec![
                SavedDhtValue {
                    key: NodeId::of_key("topic:abc"),
                    value: "\"{\\\"id\\\": \\\"x\\\"}\"".into(),
                    owner: "127.0.0.2".parse().unwrap(),
                    expires_unix_ms: 1_700_000_010_000,
                },
                SavedDhtValue {
                    key: NodeId::of_key("other"),
                    value: "[1, 2]".into(),
                    owner: "2001:db8::".parse().unwrap(),
                    expires_unix_ms: 1_700_000_020_000,
                },
            ],
            announcements: vec![
                SavedAnnouncement {
                    announcement: Announcement {
                        id: "ab".repeat(20),
                        addr: "127.0.0.1:4242".parse().unwrap(),
                        local: Some("192.168.1.5:4242".parse().unwrap()),
                        nat: Some("open".into()),
                        topic: Some("chat".into()),
                        relay: Some(true),
                    },
                    source: "127.0.0.1".parse().unwrap(),
                    announced_unix_ms: 1_700_000_000_000,
                },
                SavedAnnouncement {
                    announcement: Announcement {
                        id: "0c".repeat(20),
                        addr: "[::1]:9".parse().unwrap(),
                        local: None,
                        nat: None,
                        topic: None,
                        relay: Some(false),
                    },
                    source: "::1".parse().unwrap(),
                    announced_unix_ms: 1_700_000_000_001,
                },
            ],
            values: vec![
                ("k1".into(), Arc::from(&b"\x00\x01binary\xff"[..])),
                ("é key".into(), Arc::from(vec![9u8; 300])),
            ],
            peers: vec![
                "127.0.0.1:5000".parse().unwrap(),
                "[::1]:6000".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let snapshot = sample();
        let bytes = encode(&snapshot, &LIMITS);
        assert!(bytes.len() as u64 <= LIMITS.max_file_bytes());
        let decoded = decode(&bytes, &LIMITS);
        assert_eq!(decoded.failures, []);
        assert_eq!(decoded.snapshot, snapshot);
        let empty = Snapshot::default();
        let decoded = decode(&encode(&empty, &LIMITS), &LIMITS);
        assert_eq!((decoded.snapshot, decoded.failures), (empty, vec![]));
    }

    /// Whatever length the file is cut at, the cut is noticed and nothing read is wrong.
    #[test]
    fn truncated_at_every_length_is_an_error_not_a_panic() {
        let snapshot = sample();
        let bytes = encode(&snapshot, &LIMITS);
        for len in 0..bytes.len() {
            let decoded = decode(&bytes[..len], &LIMITS);
            assert!(!decoded.failures.is_empty(), "cut at {len} went unnoticed");
            assert_parts_are_right_or_failed(&decoded, &snapshot, len);
        }
    }

    /// Every byte changed: the part it belongs to is refused, the others are read right.
    #[test]
    fn a_corrupt_byte_costs_its_part_only() {
        let snapshot = sample();
        let bytes = encode(&snapshot, &LIMITS);
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 0x5a;
            let decoded = decode(&corrupt, &LIMITS);
            assert!(!decoded.failures.is_empty(), "byte {at} changed unnoticed");
            assert_parts_are_right_or_failed(&decoded, &snapshot, at);
        }
    }

    fn assert_parts_are_right_or_failed(decoded: &Decoded, original: &Snapshot, at: usize) {
        let failed = |part| decoded.failures.iter().any(|f| f.part == part);
        let file_failed = failed(Part::File);
        let s = &decoded.snapshot;
        let checks = [
            (
                Part::Dht,
                s.dht_id == original.dht_id && s.dht_values == original.dht_values,
            ),
            (
                Part::Announcements,
                s.announcements == original.announcements,
            ),
            (Part::Values, s.values == original.values),
            (Part::Peers, s.peers == original.peers),
        ];
        for (part, right) in checks {
            let empty = match part {
                Part::Dht => s.dht_id.is_none() && s.dht_values.is_empty(),
                Part::Announcements => s.announcements.is_empty(),
                Part::Values => s.values.is_empty(),
                Part::Peers => s.peers.is_empty(),
                Part::File => true,
            };
            assert!(
                right || (empty && (failed(part) || file_failed)),
                "{part:?} at {at}: {:?}",
                decoded.failures
            );
        }
    }

    #[test]
    fn refuses_what_exceeds_the_caps() {
        let snapshot = sample();
        let bytes = encode(&snapshot, &LIMITS);
        let tight = SnapshotLimits {
            peers: 1,
            values: 1,
            ..LIMITS
        };
        let decoded = decode(&bytes, &tight);
        let parts: Vec<Part> = decoded.failures.iter().map(|f| f.part).collect();
        assert_eq!(parts, [Part::Values, Part::Peers], "{:?}", decoded.failures);
        assert!(decoded.snapshot.values.is_empty() && decoded.snapshot.peers.is_empty());
        assert_eq!(decoded.snapshot.announcements, snapshot.announcements);
        // Larger than every cap together: not read at all.
        let tiny = SnapshotLimits {
            dht_bytes: 0,
            announcements: 0,
            values: 0,
            values_bytes: 0,
            peers: 0,
        };
        let decoded = decode(&bytes, &tiny);
        assert!(matches!(
            decoded.failures[..],
            [PartFailure {
                part: Part::File,
                error: FormatError::TooLarge { .. }
            }]
        ));
    }

    #[test]
    fn the_writer_keeps_to_the_caps() {
        let mut snapshot = sample();
        snapshot.peers = (1..=50)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        snapshot.values = (0..50)
            .map(|i| (format!("k{i}"), Arc::from(vec![1u8; 100])))
            .collect();
        let limits = SnapshotLimits {
            values_bytes: 5 * 103,
            ..LIMITS
        };
        let decoded = decode(&encode(&snapshot, &limits), &limits);
        assert_eq!(decoded.failures, []);
        assert_eq!(decoded.snapshot.peers, snapshot.peers[..10]);
        assert_eq!(
            decoded.snapshot.values,
            snapshot.values[..5],
            "newest first"
        );
    }

    #[test]
    fn refuses_other_files_and_versions() {
        let e = |bytes: &[u8]| decode(bytes, &LIMITS).failures[0].error.clone();
        assert_eq!(e(&[b'x'; 64]), FormatError::NotASnapshot);
        let mut bytes = encode(&sample(), &LIMITS);
        bytes[8] = 2;
        let crc = crc32fast::hash(&bytes[..HEADER_BYTES - 4]);
        bytes[HEADER_BYTES - 4..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(e(&bytes), FormatError::Version { found: 2 });
        let mut trailing = encode(&sample(), &LIMITS);
        trailing.push(0);
        let decoded = decode(&trailing, &LIMITS);
        assert_eq!(decoded.failures[0].error, FormatError::TrailingBytes(1));
        assert_eq!(decoded.snapshot, sample(), "the parts before it are whole");
    }
}
