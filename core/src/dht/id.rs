//! 160-bit DHT identifiers: node ids and key hashes, their XOR distance and the bucket a
//! distance falls in.

use std::fmt;

use sha1::{Digest, Sha1};

/// Bytes in an id (SHA-1 sized).
pub const ID_BYTES: usize = 20;
/// Bits in an id, and so buckets in a routing table.
pub const ID_BITS: usize = ID_BYTES * 8;

/// A node id or a key hash: 20 bytes, written as 40 lowercase hex characters on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; ID_BYTES]);

impl NodeId {
    /// The key hash of `key`: SHA-1 of its UTF-8 bytes, as py-setowire's `SimpleDHT` does.
    pub fn of_key(key: &str) -> NodeId {
        NodeId(Sha1::digest(key.as_bytes()).into())
    }

    pub fn random(rng: &mut impl rand::RngCore) -> NodeId {
        let mut id = [0u8; ID_BYTES];
        rng.fill_bytes(&mut id);
        NodeId(id)
    }

    /// Parses exactly 40 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<NodeId> {
        Self::from_hex_bytes(text.as_bytes())
    }

    /// [`from_hex`](Self::from_hex) of text given as bytes.
    pub fn from_hex_bytes(text: &[u8]) -> Option<NodeId> {
        /// Each byte's value as a hex digit; 0xff for the others.
        const VALUES: [u8; 256] = {
            let mut values = [0xff; 256];
            let mut i = 0;
            while i < 10 {
                values[b'0' as usize + i] = i as u8;
                i += 1;
            }
            let mut i = 0;
            while i < 6 {
                values[b'a' as usize + i] = 10 + i as u8;
                values[b'A' as usize + i] = 10 + i as u8;
                i += 1;
            }
            values
        };
        if text.len() != ID_BYTES * 2 {
            return None;
        }
        let mut id = [0u8; ID_BYTES];
        let mut bad = 0;
        for (b, pair) in id.iter_mut().zip(text.chunks_exact(2)) {
            let (hi, lo) = (VALUES[usize::from(pair[0])], VALUES[usize::from(pair[1])]);
            bad |= hi | lo;
            *b = (hi << 4) | (lo & 15);
        }
        (bad & 0xf0 == 0).then_some(NodeId(id))
    }

    /// The 40 lowercase hex digits.
    pub fn hex(&self) -> HexId {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; ID_BYTES * 2];
        for (pair, b) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(b >> 4)];
            pair[1] = DIGITS[usize::from(b & 15)];
        }
        HexId(text)
    }

    /// Writes the 40 lowercase hex digits into `out`.
    pub fn write_hex(&self, out: &mut String) {
        out.push_str(self.hex().as_str());
    }

    pub fn to_hex(&self) -> String {
        self.hex().as_str().to_owned()
    }

    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; ID_BYTES];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// The id as a number, the first 16 bytes then the last 4, as [`Distance::key`] gives
    /// a distance: the key of `a.distance(b)` is the XOR of the keys of `a` and `b`.
    pub fn key(&self) -> (u128, u32) {
        Distance(self.0).key()
    }

    /// The bucket `other` belongs in, seen from `self`: the length of the common prefix of
    /// the two ids (0 = differs in the first bit), and the last bucket for an equal id. This
    /// is the index `SimpleDHT` uses.
    pub fn bucket_of(&self, other: &NodeId) -> usize {
        self.distance(other).leading_zeros().min(ID_BITS - 1)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

/// An id spelled as 40 lowercase hex digits, on the stack.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexId([u8; ID_BYTES * 2]);

impl HexId {
    pub fn as_bytes(&self) -> &[u8; ID_BYTES * 2] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).expect("hex digits")
    }
}

impl fmt::Debug for HexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// XOR distance between two ids; compares as a big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; ID_BYTES]);

impl Distance {
    /// The distance as a number (the first 16 bytes, then the last 4), for quick comparisons:
    /// orders exactly as the distance does.
    pub fn key(&self) -> (u128, u32) {
        let (hi, lo) = self.0.split_at(16);
        (
            u128::from_be_bytes(hi.try_into().expect("16 bytes")),
            u32::from_be_bytes(lo.try_into().expect("4 bytes")),
        )
    }

    /// Bit `i` (0: the most significant).
    pub fn bit(&self, i: usize) -> bool {
        self.0[i / 8] & (0x80 >> (i % 8)) != 0
    }

    pub fn leading_zeros(&self) -> usize {
        let mut zeros = 0;
        for b in self.0 {
            if b != 0 {
                return zeros + b.leading_zeros() as usize;
            }
            zeros += 8;
        }
        zeros
    }
}

/// `th` of py-setowire's topic keys: the first 12 hex digits of SHA-1 of the topic's hex
/// spelling (lowercase, as Python's `bytes.hex()` writes it).
pub fn topic_hash(topic: &[u8]) -> String {
    let mut spelled = String::with_capacity(topic.len() * 2);
    for b in topic {
        spelled.push_str(&format!("{b:02x}"));
    }
    NodeId(Sha1::digest(spelled.as_bytes()).into()).to_hex()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects() {
        let id = NodeId([0xab; 20]);
        assert_eq!(NodeId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(NodeId::from_hex(&"AB".repeat(20)), Some(id));
        assert_eq!(NodeId::from_hex(&"ab".repeat(19)), None);
        assert_eq!(NodeId::from_hex(&format!("{}zz", "ab".repeat(19))), None);
        assert_eq!(NodeId::from_hex(&format!("{}é", "a".repeat(38))), None);
    }

    #[test]
    fn key_hash_is_sha1() {
        // SHA-1("abc").
        assert_eq!(
            NodeId::of_key("abc").to_hex(),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn buckets_follow_the_common_prefix() {
        let me = NodeId([0; 20]);
        let mut other = [0u8; 20];
        other[0] = 0x80;
        assert_eq!(me.bucket_of(&NodeId(other)), 0);
        other[0] = 0x01;
        assert_eq!(me.bucket_of(&NodeId(other)), 7);
        other[0] = 0;
        other[19] = 1;
        assert_eq!(me.bucket_of(&NodeId(other)), 159);
        assert_eq!(me.bucket_of(&me), 159);
    }

    #[test]
    fn topic_hash_matches_py_setowire() {
        // hashlib.sha1(b"\x01\x02".hex().encode()).hexdigest()[:12]
        assert_eq!(topic_hash(&[1, 2]), "f47de373dc27");
    }
}
