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
        let mut id = [0u8; ID_BYTES];
        hex::decode_to_slice(text, &mut id).ok()?;
        Some(NodeId(id))
    }

    /// Writes the 40 lowercase hex digits into `out`.
    pub fn write_hex(&self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
    }

    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(ID_BYTES * 2);
        self.write_hex(&mut s);
        s
    }

    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; ID_BYTES];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        Distance(d)
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
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// XOR distance between two ids; compares as a big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Distance(pub [u8; ID_BYTES]);

impl Distance {
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
