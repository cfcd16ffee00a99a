//! Outgoing datagrams, coalesced into BATCH frames.
//!
//! Every send of the engine goes through one [`OutQueue`], drained to the socket once per
//! turn. Consecutive frames to one destination are packed into a BATCH frame
//! (`0x13 ‖ count ‖ count × (len u16 ‖ frame)`) up to [`BATCH_MTU`] bytes, which costs the
//! receiver one datagram instead of many; a lone frame goes out bare, as py-setowire sends it.
//!
//! Frames are encoded straight into one arena buffer at the place they will be sent from:
//! each datagram reserves four header bytes (type, count, first length) before its first frame
//! and two (length) before each later one, so a bare frame is sent from just after its header
//! and a batch from its first header byte. Nothing is copied except, at most, a two-byte shift
//! of a frame that turned out to fit the batch before it. The arena and the datagram list keep
//! their capacity across drains, so a steady state allocates nothing.

use std::net::SocketAddr;

use crate::proto::frame::kind;

/// Largest BATCH datagram built (py-setowire's `BATCH_MTU`).
pub const BATCH_MTU: usize = 1400;

/// Bytes reserved before a datagram's first frame: BATCH type, count, first length.
const HEAD: usize = 4;
/// Bytes before each later frame of a batch: its length.
const LEN: usize = 2;
/// Most frames in one BATCH: the count is one byte.
const MAX_BATCH_COUNT: u8 = u8::MAX;

/// A FIFO of outgoing datagrams with BATCH coalescing.
#[derive(Debug)]
pub struct OutQueue {
    /// Encoded datagrams; only `..used` is meaningful. Its length only grows (up to
    /// `max_bytes`) so that handing out space never re-zeroes it.
    arena: Vec<u8>,
    used: usize,
    max_bytes: usize,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    dst: SocketAddr,
    /// Offset of the four reserved header bytes.
    start: usize,
    /// End of the last frame.
    end: usize,
    count: u8,
}

impl Item {
    /// Whether a frame of `len` bytes may join this datagram as a BATCH entry.
    fn can_take(&self, dst: SocketAddr, len: usize) -> bool {
        self.dst == dst
            && self.count < MAX_BATCH_COUNT
            && self.end - self.start + LEN + len <= BATCH_MTU
    }
}

impl OutQueue {
    /// A queue whose arena holds at most `max_bytes` (frames plus their batch headers);
    /// pushes beyond it are refused. Nothing is allocated until the first push.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            arena: Vec::new(),
            used: 0,
            max_bytes,
            items: Vec::new(),
        }
    }

    /// Queues one frame for `dst`, encoded by `write` straight into the queue: `write` gets a
    /// slice of exactly `max_len` bytes and returns how many it wrote.
    ///
    /// Returns `Ok(false)`, queueing nothing, when the queue has no room for `max_len` bytes
    /// (the caller counts a drop), or when `write` reports an empty frame or more bytes than
    /// it was given; `Err` when `write` fails.
    pub fn push_with<E>(
        &mut self,
        dst: SocketAddr,
        max_len: usize,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<bool, E> {
        if max_len == 0 {
            return Ok(false);
        }
        // When even a frame of the full `max_len` fits the last batch, write it in place;
        // otherwise write it as a datagram of its own and shift it if it turns out to fit.
        let sure_merge = self.fits_last(dst, max_len);
        let Some(buf) = self.reserve(sure_merge, max_len) else {
            return Ok(false);
        };
        let n = write(buf)?;
        if n == 0 || n > max_len {
            return Ok(false);
        }
        let merge = sure_merge || (n < max_len && self.fits_last(dst, n));
        if merge && !sure_merge {
            let alone_at = self.used + HEAD;
            self.arena
                .copy_within(alone_at..alone_at + n, self.used + LEN);
        }
        self.commit(dst, n, merge);
        Ok(true)
    }

    /// Queues an already-encoded frame; false when the queue is full or `frame` is empty.
    /// Its length is known up front, so it is copied once, straight to its final place.
    // Inlined, the copy of a frame of fixed length (a PONG) is a few moves instead of a call
    // to memcpy, and the call frame goes too (measured).
    #[inline(always)]
    pub fn push(&mut self, dst: SocketAddr, frame: &[u8]) -> bool {
        if frame.is_empty() {
            return false;
        }
        let merge = self.fits_last(dst, frame.len());
        let Some(buf) = self.reserve(merge, frame.len()) else {
            return false;
        };
        buf.copy_from_slice(frame);
        self.commit(dst, frame.len(), merge);
        true
    }

    /// Whether a frame of `len` bytes for `dst` may join the last datagram.
    fn fits_last(&self, dst: SocketAddr, len: usize) -> bool {
        self.items
            .last()
            .is_some_and(|item| item.can_take(dst, len))
    }

    /// The `len` arena bytes a frame is written to: right after the last frame as a batch
    /// entry when `merge`, else after the header of a new datagram. `None` when they would
    /// go past `max_bytes`.
    fn reserve(&mut self, merge: bool, len: usize) -> Option<&mut [u8]> {
        let at = self.used + if merge { LEN } else { HEAD };
        let end = at.checked_add(len).filter(|&end| end <= self.max_bytes)?;
        if self.arena.len() < end {
            self.arena.resize(end, 0);
        }
        Some(&mut self.arena[at..end])
    }

    /// Accounts for a frame of `n` bytes written where `reserve(merge, _)` said.
    #[inline]
    fn commit(&mut self, dst: SocketAddr, n: usize, merge: bool) {
        if merge {
            self.set_len16(self.used, n);
            self.used += LEN + n;
            if let Some(item) = self.items.last_mut() {
                item.end = self.used;
                item.count += 1;
            }
        } else {
            let start = self.used;
            self.set_len16(start + 2, n);
            self.used = start + HEAD + n;
            self.items.push(Item {
                dst,
                start,
                end: self.used,
                count: 1,
            });
        }
    }

    /// Hands every queued datagram to `sink` in order, then empties the queue keeping its
    /// capacity.
    pub fn drain(&mut self, mut sink: impl FnMut(SocketAddr, &[u8])) {
        for item in &self.items {
            if item.count == 1 {
                sink(item.dst, &self.arena[item.start + HEAD..item.end]);
            } else {
                self.arena[item.start] = kind::BATCH;
                self.arena[item.start + 1] = item.count;
                sink(item.dst, &self.arena[item.start..item.end]);
            }
        }
        self.items.clear();
        self.used = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Datagrams queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Arena bytes in use, headers included.
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// Writes a BATCH entry length; frames too long for it never share a batch, so the
    /// truncation only ever touches the unused header of a bare datagram.
    fn set_len16(&mut self, at: usize, len: usize) {
        let bytes = (len as u16).to_be_bytes();
        self.arena[at..at + 2].copy_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::frame::{EncodeError, Frame};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn frame(tag: u8, len: usize) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[0] = kind::GOAWAY;
        f
    }

    fn collect(q: &mut OutQueue) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        q.drain(|dst, d| out.push((dst, d.to_vec())));
        out
    }

    /// The frames a datagram carries: a BATCH's entries, or the datagram itself.
    fn unbatch(datagram: &[u8]) -> Vec<Vec<u8>> {
        match Frame::parse(datagram).unwrap() {
            Frame::Batch(entries) => entries.datagrams().map(<[u8]>::to_vec).collect(),
            _ => vec![datagram.to_vec()],
        }
    }

    #[test]
    fn lone_frame_goes_bare() {
        let mut q = OutQueue::new(64 * 1024);
        assert!(q.is_empty());
        let f = frame(1, 30);
        assert!(q.push(addr(1), &f));
        assert_eq!(q.len(), 1);
        assert_eq!(collect(&mut q), [(addr(1), f)]);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn consecutive_frames_to_one_destination_are_batched() {
        let mut q = OutQueue::new(64 * 1024);
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 10 + usize::from(i) * 3)).collect();
        for f in &frames {
            assert!(q.push(addr(1), f));
        }
        assert_eq!(q.len(), 1);
        let out = collect(&mut q);
        assert_eq!(out.len(), 1);
        let datagram = &out[0].1;
        assert_eq!(datagram[..2], [kind::BATCH, 5]);
        assert_eq!(unbatch(datagram), frames);
        let expected_len = 2 + frames.iter().map(|f| 2 + f.len()).sum::<usize>();
        assert_eq!(datagram.len(), expected_len);
    }

    #[test]
    fn batches_follow_destination_changes_in_order() {
        let mut q = OutQueue::new(64 * 1024);
        let dsts = [1, 1, 2, 1, 1, 1, 3];
        let mut sent = Vec::new();
        for (i, &d) in dsts.iter().enumerate() {
            let f = frame(i as u8, 20);
            assert!(q.push(addr(d), &f));
            sent.push((addr(d), f));
        }
        let out = collect(&mut q);
        let dst_order: Vec<u16> = out.iter().map(|(a, _)| a.port()).collect();
        assert_eq!(dst_order, [1, 2, 1, 3]);
        let received: Vec<(SocketAddr, Vec<u8>)> = out
            .iter()
            .flat_map(|(a, d)| unbatch(d).into_iter().map(move |f| (*a, f)))
            .collect();
        assert_eq!(received, sent);
    }

    #[test]
    fn batches_stay_within_the_mtu() {
        let mut q = OutQueue::new(1 << 20);
        let frames: Vec<Vec<u8>> = (0..40)
            .map(|i| frame(i, 100 + usize::from(i) * 7))
            .collect();
        for f in &frames {
            assert!(q.push(addr(9), f));
        }
        let out = collect(&mut q);
        assert!(out.len() > 1);
        assert!(out.iter().all(|(_, d)| d.len() <= BATCH_MTU));
        let received: Vec<Vec<u8>> = out.iter().flat_map(|(_, d)| unbatch(d)).collect();
        assert_eq!(received, frames);
    }

    #[test]
    fn batch_fills_to_exactly_the_mtu() {
        let mut q = OutQueue::new(1 << 16);
        // Header 2, then two entries of 2 + 697 bytes: 1400 in all.
        assert!(q.push(addr(1), &frame(1, 697)));
        assert!(q.push(addr(1), &frame(2, 697)));
        assert!(q.push(addr(1), &frame(3, 1)));
        let out = collect(&mut q);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1.len(), BATCH_MTU);
        assert_eq!(out[1].1, frame(3, 1));
    }

    #[test]
    fn at_most_255_entries_per_batch() {
        let mut q = OutQueue::new(1 << 16);
        for i in 0..300u32 {
            assert!(q.push(addr(1), &frame(i as u8, 2)));
        }
        let out = collect(&mut q);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1[1], 255);
        assert_eq!(unbatch(&out[0].1).len(), 255);
        assert_eq!(unbatch(&out[1].1).len(), 45);
    }

    #[test]
    fn large_frames_go_bare_and_take_no_company() {
        let mut q = OutQueue::new(1 << 16);
        let small = frame(1, 10);
        let big = frame(2, BATCH_MTU - HEAD + 1);
        let huge = frame(3, 9000);
        for f in [&small, &big, &small, &huge, &small] {
            assert!(q.push(addr(1), f));
        }
        let out = collect(&mut q);
        let lens: Vec<usize> = out.iter().map(|(_, d)| d.len()).collect();
        assert_eq!(lens, [10, big.len(), 10, huge.len(), 10]);
        assert_eq!(out[1].1, big);
        assert_eq!(out[3].1, huge);
    }

    #[test]
    fn frame_filling_the_mtu_takes_no_company() {
        let mut q = OutQueue::new(1 << 16);
        let f = frame(1, BATCH_MTU - HEAD);
        assert!(q.push(addr(1), &f));
        assert!(q.push(addr(1), &frame(2, 1)));
        let out = collect(&mut q);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1, f);
    }

    #[test]
    fn push_with_writes_in_place_and_shifts_when_it_fits() {
        let mut q = OutQueue::new(1 << 16);
        let pong = Frame::Pong { id: [7; 20] };
        let encode = |buf: &mut [u8]| pong.encode(buf);
        // Tight bound: written straight at its batch position.
        assert_eq!(q.push_with(addr(1), 21, encode), Ok(true));
        assert_eq!(q.push_with(addr(1), 21, encode), Ok(true));
        // Loose bound (larger than what still fits): written alone, then shifted into the batch.
        assert_eq!(q.push_with(addr(1), BATCH_MTU, encode), Ok(true));
        let out = collect(&mut q);
        assert_eq!(out.len(), 1);
        let expected = pong.to_vec().unwrap();
        assert_eq!(
            unbatch(&out[0].1),
            [expected.clone(), expected.clone(), expected]
        );
    }

    #[test]
    fn write_errors_and_bad_lengths_queue_nothing() {
        let mut q = OutQueue::new(1 << 16);
        let pong = Frame::Pong { id: [7; 20] };
        assert_eq!(
            q.push_with(addr(1), 10, |buf| pong.encode(buf)),
            Err(EncodeError::BufferTooSmall)
        );
        assert_eq!(q.push_with(addr(1), 10, |_| Ok::<_, ()>(0)), Ok(false));
        assert_eq!(q.push_with(addr(1), 10, |_| Ok::<_, ()>(11)), Ok(false));
        assert_eq!(q.push_with(addr(1), 0, |_| Ok::<_, ()>(0)), Ok(false));
        assert!(!q.push(addr(1), &[]));
        assert!(q.is_empty());
        assert!(q.push(addr(1), b"\x0a\x00"));
        assert_eq!(collect(&mut q), [(addr(1), b"\x0a\x00".to_vec())]);
    }

    #[test]
    fn full_queue_refuses_then_recovers_after_drain() {
        let mut q = OutQueue::new(100);
        assert!(q.push(addr(1), &frame(1, 40)));
        assert!(q.push(addr(2), &frame(2, 40)));
        assert!(!q.push(addr(3), &frame(3, 40)));
        assert_eq!(q.len(), 2);
        assert!(q.bytes() <= 100);
        assert_eq!(collect(&mut q).len(), 2);
        assert!(q.push(addr(3), &frame(3, 40)));
        assert!(!q.push(addr(3), &frame(3, 200)));
    }

    #[test]
    fn steady_state_reuses_capacity() {
        let mut q = OutQueue::new(1 << 16);
        let round = |q: &mut OutQueue| {
            for i in 0..64u16 {
                assert!(q.push(addr(i % 8), &frame(i as u8, 40)));
            }
            let mut n = 0;
            q.drain(|_, _| n += 1);
            n
        };
        assert_eq!(round(&mut q), 64);
        let (arena_ptr, arena_cap) = (q.arena.as_ptr(), q.arena.capacity());
        let items_cap = q.items.capacity();
        for _ in 0..10 {
            round(&mut q);
        }
        assert_eq!(q.arena.as_ptr(), arena_ptr);
        assert_eq!(q.arena.capacity(), arena_cap);
        assert_eq!(q.items.capacity(), items_cap);
    }

    #[test]
    fn random_traffic_round_trips() {
        let mut q = OutQueue::new(1 << 18);
        let mut x: u32 = 0xDEAD_BEEF;
        let mut sent = Vec::new();
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let dst = addr((x % 3) as u16);
            let len = 1 + (x >> 8) as usize % 1600;
            let f = frame(i as u8, len);
            if q.push(dst, &f) {
                sent.push((dst, f));
            }
        }
        let out = collect(&mut q);
        assert!(out.iter().all(|(_, d)| !d.is_empty()));
        assert!(out
            .iter()
            .filter(|(_, d)| d[0] == kind::BATCH)
            .all(|(_, d)| d.len() <= BATCH_MTU));
        let received: Vec<(SocketAddr, Vec<u8>)> = out
            .iter()
            .flat_map(|(a, d)| unbatch(d).into_iter().map(move |f| (*a, f)))
            .collect();
        assert_eq!(received, sent);
    }
}
