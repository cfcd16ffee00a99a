//! Reassembly of values sent in pieces, and splitting of values to send.
//!
//! Two frames carry a value in pieces: FRAG (a DATA payload longer than
//! [`FRAG_THRESHOLD`], keyed by its random 8-byte fragment id, per peer) and multi-piece CHUNK
//! (a stored value longer than [`CHUNK_PIECE_LEN`], keyed by its key). Both are unauthenticated
//! and arrive in any order, so every assembly is bounded in pieces, bytes and lifetime, and the
//! number of concurrent assemblies is capped.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// DATA payloads longer than this are sent as FRAG pieces (py-setowire's `MAX_PAYLOAD`).
pub const FRAG_THRESHOLD: usize = 1200;
/// Payload bytes per FRAG piece: the threshold less the 12-byte FRAG header.
pub const FRAG_PIECE_LEN: usize = 1188;
/// Value bytes per CHUNK piece (py-setowire's `SYNC_CHUNK_SIZE`).
pub const CHUNK_PIECE_LEN: usize = 900;

/// Bounds for one kind of reassembly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceLimits {
    /// An assembly not completed this long after its first piece is dropped.
    pub timeout: Duration,
    /// Assemblies in progress at once; a new one beyond it evicts the oldest.
    pub max_assemblies: usize,
    /// Largest `total` accepted.
    pub max_total_pieces: u16,
    /// Largest reassembled value, in bytes.
    pub max_bytes: usize,
}

impl PieceLimits {
    /// FRAG, per peer: py-setowire's 10 s timeout; 256 pieces of 1188 bytes cover 256 KiB.
    pub const FRAG: PieceLimits = PieceLimits {
        timeout: Duration::from_secs(10),
        max_assemblies: 8,
        max_total_pieces: 256,
        max_bytes: 256 * 1024,
    };
    /// CHUNK: py-setowire's 30 s fetch timeout; 1200 pieces of 900 bytes cover 1 MiB.
    pub const CHUNK: PieceLimits = PieceLimits {
        timeout: Duration::from_secs(30),
        max_assemblies: 64,
        max_total_pieces: 1200,
        max_bytes: 1024 * 1024,
    };
}

/// Why a piece was refused.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum PieceError {
    /// `total` exceeds [`PieceLimits::max_total_pieces`].
    #[error("value announced in too many pieces")]
    TooManyPieces,
    /// The piece, or the value it belongs to, exceeds [`PieceLimits::max_bytes`]; the
    /// assembly is dropped.
    #[error("value too large")]
    TooLarge,
    /// `index` is not below `total`, or `total` differs from the assembly's first piece (the
    /// assembly in progress is kept).
    #[error("piece index or total inconsistent")]
    TotalMismatch,
    /// Never returned by [`PieceAssembler`], which evicts its oldest assembly instead so that
    /// a peer cannot block reassembly until its stale assemblies time out. Kept for callers
    /// that match on it.
    #[error("too many assemblies in progress")]
    Full,
}

/// Reassembles values from pieces, keyed by `K`.
#[derive(Debug)]
pub struct PieceAssembler<K: Eq + Hash + Clone> {
    limits: PieceLimits,
    assemblies: HashMap<K, Assembly>,
    /// Heap bytes all assemblies take: piece buffers, slot tables, table entries.
    memory: usize,
}

#[derive(Debug)]
struct Assembly {
    started: Instant,
    total: u16,
    received: u16,
    /// Piece bytes in arrival order.
    data: Vec<u8>,
    /// Where each piece sits in `data`, by index.
    slots: Vec<Option<Slot>>,
}

impl Assembly {
    /// What this assembly costs in memory under key type `K`: its buffers as allocated and
    /// its entry in the table (with the table's own overhead per entry, about one word).
    fn memory<K>(&self) -> usize {
        std::mem::size_of::<(K, Assembly)>()
            + std::mem::size_of::<usize>()
            + self.data.capacity()
            + self.slots.capacity() * std::mem::size_of::<Option<Slot>>()
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
}

impl<K: Eq + Hash + Clone> PieceAssembler<K> {
    /// An empty assembler; allocates nothing until the first multi-piece value arrives.
    pub fn new(limits: PieceLimits) -> Self {
        Self {
            limits,
            assemblies: HashMap::new(),
            memory: 0,
        }
    }

    pub fn limits(&self) -> &PieceLimits {
        &self.limits
    }

    /// Adds piece `index` of `total`; returns the whole value when the last missing piece
    /// arrives. A piece received twice is ignored.
    pub fn add(
        &mut self,
        now: Instant,
        key: K,
        index: u16,
        total: u16,
        piece: &[u8],
    ) -> Result<Option<Vec<u8>>, PieceError> {
        if index >= total {
            return Err(PieceError::TotalMismatch);
        }
        if total > self.limits.max_total_pieces {
            return Err(PieceError::TooManyPieces);
        }
        if piece.len() > self.limits.max_bytes {
            self.remove(&key);
            return Err(PieceError::TooLarge);
        }
        if total == 1 {
            self.remove(&key);
            return Ok(Some(piece.to_vec()));
        }

        // An assembly past its timeout that expire() has not reached yet starts over.
        if let Some(a) = self.assemblies.get(&key) {
            if now.saturating_duration_since(a.started) >= self.limits.timeout {
                self.remove(&key);
            }
        }
        if !self.assemblies.contains_key(&key) {
            if self.limits.max_assemblies == 0 {
                return Err(PieceError::Full);
            }
            while self.assemblies.len() >= self.limits.max_assemblies {
                self.evict_oldest();
            }
            let assembly = Assembly {
                started: now,
                total,
                received: 0,
                data: Vec::new(),
                slots: vec![None; usize::from(total)],
            };
            self.memory += assembly.memory::<K>();
            self.assemblies.insert(key.clone(), assembly);
        }
        let Some(a) = self.assemblies.get_mut(&key) else {
            return Ok(None);
        };
        if a.total != total {
            return Err(PieceError::TotalMismatch);
        }
        let Some(slot) = a.slots.get_mut(usize::from(index)) else {
            return Err(PieceError::TotalMismatch);
        };
        if slot.is_some() {
            return Ok(None);
        }
        if a.data.len() + piece.len() > self.limits.max_bytes {
            self.remove(&key);
            return Err(PieceError::TooLarge);
        }
        // Both fit in u32: max_bytes bounds them and is checked above.
        *slot = Some(Slot {
            start: a.data.len() as u32,
            len: piece.len() as u32,
        });
        let capacity = a.data.capacity();
        a.data.extend_from_slice(piece);
        a.received += 1;
        self.memory += a.data.capacity() - capacity;
        if a.received < a.total {
            return Ok(None);
        }

        let Some(a) = self.assemblies.remove(&key) else {
            return Ok(None);
        };
        self.memory -= a.memory::<K>();
        let mut value = Vec::with_capacity(a.data.len());
        for slot in a.slots.iter().flatten() {
            let start = slot.start as usize;
            value.extend_from_slice(&a.data[start..start + slot.len as usize]);
        }
        Ok(Some(value))
    }

    /// Forgets assemblies older than the timeout; returns how many were dropped.
    pub fn expire(&mut self, now: Instant) -> usize {
        let timeout = self.limits.timeout;
        let before = self.assemblies.len();
        let mut freed = 0;
        self.assemblies.retain(|_, a| {
            let keep = now.saturating_duration_since(a.started) < timeout;
            if !keep {
                freed += a.memory::<K>();
            }
            keep
        });
        self.memory -= freed;
        before - self.assemblies.len()
    }

    /// When the oldest assembly times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.assemblies
            .values()
            .map(|a| a.started + self.limits.timeout)
            .min()
    }

    pub fn is_empty(&self) -> bool {
        self.assemblies.is_empty()
    }

    /// Assemblies in progress.
    pub fn len(&self) -> usize {
        self.assemblies.len()
    }

    /// Heap bytes held by all assemblies in progress (not the assembler's own table), for
    /// a node-wide memory budget.
    pub fn memory(&self) -> usize {
        self.memory
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(a) = self.assemblies.remove(key) {
            self.memory -= a.memory::<K>();
        }
        if self.assemblies.is_empty() && self.assemblies.capacity() > 0 {
            // Give the table back: an assembler lives in every peer.
            self.assemblies = HashMap::new();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .assemblies
            .iter()
            .min_by_key(|(_, a)| a.started)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => self.remove(&key),
            None => self.assemblies.clear(),
        }
    }
}

/// Pieces needed to send `len` bytes in pieces of `piece_len`: rounded up, at least 1 (an
/// empty value still takes one empty piece).
pub fn piece_count(len: usize, piece_len: usize) -> usize {
    len.div_ceil(piece_len.max(1)).max(1)
}

/// Splits `payload` into `(index, total, piece)` triples of at most `piece_len` bytes.
///
/// The caller guarantees `piece_count(payload.len(), piece_len) <= u16::MAX`; past that only
/// the first `u16::MAX` pieces are produced.
pub fn pieces(payload: &[u8], piece_len: usize) -> impl Iterator<Item = (u16, u16, &[u8])> {
    let piece_len = piece_len.max(1);
    let total = piece_count(payload.len(), piece_len).min(usize::from(u16::MAX)) as u16;
    (0..total).map(move |index| {
        let start = (usize::from(index) * piece_len).min(payload.len());
        let end = start.saturating_add(piece_len).min(payload.len());
        (index, total, &payload[start..end])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn piece_count_rounds_up() {
        assert_eq!(piece_count(0, 900), 1);
        assert_eq!(piece_count(1, 900), 1);
        assert_eq!(piece_count(900, 900), 1);
        assert_eq!(piece_count(901, 900), 2);
        assert_eq!(piece_count(9000, FRAG_PIECE_LEN), 8);
        assert_eq!(piece_count(5, 0), 5);
    }

    #[test]
    fn pieces_cover_the_payload() {
        let p = payload(2500);
        let got: Vec<_> = pieces(&p, 1000).collect();
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|&(_, total, _)| total == 3));
        assert_eq!(got[0].0, 0);
        assert_eq!(got[2].2.len(), 500);
        let joined: Vec<u8> = got
            .iter()
            .flat_map(|&(_, _, piece)| piece.to_vec())
            .collect();
        assert_eq!(joined, p);
        let empty: Vec<_> = pieces(&[], 900).collect();
        assert_eq!(empty, [(0, 1, &[][..])]);
    }

    #[test]
    fn reassembles_in_any_order() {
        let now = Instant::now();
        let p = payload(9000);
        let mut parts: Vec<_> = pieces(&p, FRAG_PIECE_LEN).collect();
        parts.reverse();
        parts.swap(1, 4);
        let mut asm = PieceAssembler::new(PieceLimits::FRAG);
        let last = parts.len() - 1;
        for (n, (index, total, piece)) in parts.into_iter().enumerate() {
            let got = asm.add(now, [7u8; 8], index, total, piece).unwrap();
            if n == last {
                assert_eq!(got.as_deref(), Some(&p[..]));
            } else {
                assert_eq!(got, None);
                assert!(asm.memory() > 0);
            }
        }
        assert!(asm.is_empty());
        assert_eq!(asm.memory(), 0);
    }

    #[test]
    fn duplicates_are_idempotent() {
        let now = Instant::now();
        let mut asm = PieceAssembler::new(PieceLimits::CHUNK);
        let k = "key".to_string();
        assert_eq!(asm.add(now, k.clone(), 0, 2, b"ab").unwrap(), None);
        let after_first = asm.memory();
        assert_eq!(asm.add(now, k.clone(), 0, 2, b"zz").unwrap(), None);
        assert_eq!(asm.memory(), after_first);
        assert_eq!(
            asm.add(now, k.clone(), 1, 2, b"cd").unwrap(),
            Some(b"abcd".to_vec())
        );
        // A late duplicate after completion starts a new assembly, harmlessly.
        assert_eq!(asm.add(now, k, 1, 2, b"cd").unwrap(), None);
        assert_eq!(asm.len(), 1);
    }

    #[test]
    fn single_piece_value_needs_no_assembly() {
        let mut asm: PieceAssembler<u8> = PieceAssembler::new(PieceLimits::FRAG);
        assert_eq!(
            asm.add(Instant::now(), 1, 0, 1, b"x").unwrap(),
            Some(b"x".to_vec())
        );
        assert!(asm.is_empty());
    }

    #[test]
    fn refuses_bad_shapes() {
        let now = Instant::now();
        let mut asm: PieceAssembler<u8> = PieceAssembler::new(PieceLimits::FRAG);
        assert_eq!(asm.add(now, 1, 0, 0, b"x"), Err(PieceError::TotalMismatch));
        assert_eq!(asm.add(now, 1, 3, 3, b"x"), Err(PieceError::TotalMismatch));
        assert_eq!(
            asm.add(now, 1, 0, 257, b"x"),
            Err(PieceError::TooManyPieces)
        );
        assert_eq!(asm.add(now, 1, 0, 3, b"x"), Ok(None));
        assert_eq!(asm.add(now, 1, 1, 4, b"y"), Err(PieceError::TotalMismatch));
        // The assembly in progress survives the mismatch.
        assert_eq!(asm.add(now, 1, 1, 3, b"y"), Ok(None));
        assert_eq!(asm.add(now, 1, 2, 3, b"z"), Ok(Some(b"xyz".to_vec())));
    }

    #[test]
    fn byte_limit_drops_the_assembly() {
        let now = Instant::now();
        let limits = PieceLimits {
            max_bytes: 10,
            ..PieceLimits::FRAG
        };
        let mut asm: PieceAssembler<u8> = PieceAssembler::new(limits);
        assert_eq!(asm.add(now, 1, 0, 3, &[0; 6]), Ok(None));
        assert_eq!(asm.add(now, 1, 1, 3, &[0; 6]), Err(PieceError::TooLarge));
        assert!(asm.is_empty());
        assert_eq!(asm.memory(), 0);
        assert_eq!(asm.add(now, 2, 0, 1, &[0; 11]), Err(PieceError::TooLarge));
    }

    #[test]
    fn oldest_assembly_is_evicted_when_full() {
        let t0 = Instant::now();
        let mut asm: PieceAssembler<u32> = PieceAssembler::new(PieceLimits::FRAG);
        for k in 0..8u32 {
            let t = t0 + Duration::from_millis(u64::from(k));
            assert_eq!(asm.add(t, k, 0, 2, b"a"), Ok(None));
        }
        assert_eq!(
            asm.add(t0 + Duration::from_millis(20), 99, 0, 2, b"a"),
            Ok(None)
        );
        assert_eq!(asm.len(), 8);
        // Key 0 was evicted, so its second piece begins afresh instead of completing it.
        assert_eq!(asm.add(t0, 0, 1, 2, b"b"), Ok(None));
        // Key 2 is still there.
        assert_eq!(asm.add(t0, 2, 1, 2, b"b"), Ok(Some(b"ab".to_vec())));
    }

    #[test]
    fn zero_assemblies_allowed_reports_full() {
        let limits = PieceLimits {
            max_assemblies: 0,
            ..PieceLimits::FRAG
        };
        let mut asm: PieceAssembler<u8> = PieceAssembler::new(limits);
        assert_eq!(
            asm.add(Instant::now(), 1, 0, 2, b"a"),
            Err(PieceError::Full)
        );
    }

    #[test]
    fn expiry_forgets_stale_assemblies() {
        let t0 = Instant::now();
        let mut asm: PieceAssembler<u8> = PieceAssembler::new(PieceLimits::FRAG);
        assert_eq!(asm.next_deadline(), None);
        asm.add(t0, 1, 0, 2, b"a").unwrap();
        asm.add(t0 + Duration::from_secs(5), 2, 0, 2, b"a").unwrap();
        assert_eq!(asm.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(asm.expire(t0 + Duration::from_secs(9)), 0);
        let both = asm.memory();
        assert_eq!(asm.expire(t0 + Duration::from_secs(10)), 1);
        assert!(asm.memory() > 0 && asm.memory() < both);
        assert_eq!(asm.next_deadline(), Some(t0 + Duration::from_secs(15)));
        // A piece for a timed-out assembly that expire() missed starts over.
        assert_eq!(
            asm.add(t0 + Duration::from_secs(16), 2, 1, 2, b"b"),
            Ok(None)
        );
        assert_eq!(asm.len(), 1);
        asm.remove(&2);
        assert!(asm.is_empty());
        assert_eq!(asm.memory(), 0);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let now = Instant::now();
        let mut asm: PieceAssembler<u8> = PieceAssembler::new(PieceLimits {
            max_assemblies: 3,
            ..PieceLimits::FRAG
        });
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 5) as u8;
            let total = ((x >> 8) % 6) as u16;
            let index = ((x >> 16) % 7) as u16;
            let len = ((x >> 24) % 3000) as usize;
            let _ = asm.add(now, key, index, total, &vec![0; len]);
            assert!(asm.len() <= 3);
            // Buffers may be allocated up to twice what they hold.
            assert!(asm.memory() <= 3 * (2 * PieceLimits::FRAG.max_bytes + 4096));
        }
    }

    /// A one-byte piece of a 256-piece value costs its slot table, not one byte: what a
    /// node-wide memory cap must count.
    #[test]
    fn memory_counts_the_slot_table() {
        let now = Instant::now();
        let mut asm: PieceAssembler<[u8; 8]> = PieceAssembler::new(PieceLimits::FRAG);
        asm.add(now, [1; 8], 0, 256, b"x").unwrap();
        assert!(
            asm.memory() >= 256 * std::mem::size_of::<Option<Slot>>(),
            "{}",
            asm.memory()
        );
        asm.remove(&[1; 8]);
        assert_eq!(asm.memory(), 0);
    }
}
