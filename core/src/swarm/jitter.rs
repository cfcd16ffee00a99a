//! Per-peer in-order delivery of DATA payloads by sequence number.
//!
//! UDP reorders, so a message that arrives ahead of a gap is held until the gap fills or has
//! waited [`JitterBuffer::GAP_WAIT`]; then delivery skips the gap, as py-setowire does. Unlike
//! py-setowire, the hold is bounded in count and bytes, a timed-out gap always resumes at
//! the lowest held message so that nothing held is ever stranded behind the delivery point,
//! and a message that arrives after its gap was skipped is delivered late instead of being
//! dropped: on a link whose jitter exceeds the wait (hundreds of milliseconds on a congested
//! or mobile path) py-setowire loses every such message. Copies of what was delivered
//! already are the content filter's to drop, as for every flooded payload.
//!
//! One buffer lives in every peer, so the idle state is 16 bytes and allocates nothing; the
//! holding area is allocated when a message first arrives out of order and freed when it empties.

use std::time::{Duration, Instant};

/// What became of a message given to [`JitterBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Delivered in order, or held until its turn.
    InOrder,
    /// Behind the delivery point: delivered at once, out of order.
    Late,
    /// Held already: nothing stored.
    Duplicate,
}

/// Reorders one peer's DATA payloads by `seq`.
///
/// Sequence numbers do not wrap: py-setowire starts at 0 and cannot encode a number past
/// `u32::MAX`, so once `u32::MAX` has been delivered every later message counts as old.
#[derive(Debug, Default)]
pub(crate) struct JitterBuffer {
    /// The next sequence number to deliver; `u32::MAX + 1` once everything has been delivered.
    next: u64,
    held: Option<Box<Held>>,
}

#[derive(Debug, Default)]
struct Held {
    /// Sorted by `seq`, all greater than `next`.
    entries: Vec<Entry>,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    seq: u32,
    arrived: Instant,
    payload: Vec<u8>,
}

impl JitterBuffer {
    /// How long a gap is waited for, counted from the arrival of the earliest held message.
    pub(crate) const GAP_WAIT: Duration = Duration::from_millis(50);
    /// Out-of-order messages held; beyond it the oldest gap is skipped at once.
    pub(crate) const MAX_PENDING: usize = 128;
    /// Payload bytes held; beyond it the oldest gap is skipped at once, as for the count.
    pub(crate) const MAX_PENDING_BYTES: usize = 256 * 1024;

    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The sequence number delivery waits for next (`u32::MAX + 1` when exhausted).
    #[cfg(test)]
    pub(crate) fn next_seq(&self) -> u64 {
        self.next
    }

    /// Accepts message `seq`; appends every message now deliverable to `out`.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        seq: u32,
        payload: &[u8],
        out: &mut Vec<Vec<u8>>,
    ) -> Arrival {
        let seq64 = u64::from(seq);
        if seq64 < self.next {
            out.push(payload.to_vec());
            return Arrival::Late;
        }
        if seq64 == self.next {
            out.push(payload.to_vec());
            self.next += 1;
            self.flush(out);
            return Arrival::InOrder;
        }
        let held = self.held.get_or_insert_with(Box::default);
        let at = match held.entries.binary_search_by_key(&seq, |e| e.seq) {
            Ok(_) => return Arrival::Duplicate,
            Err(at) => at,
        };
        held.entries.insert(
            at,
            Entry {
                seq,
                arrived: now,
                payload: payload.to_vec(),
            },
        );
        held.bytes += payload.len();
        while self.held.as_ref().is_some_and(|h| {
            h.entries.len() > Self::MAX_PENDING || h.bytes > Self::MAX_PENDING_BYTES
        }) {
            self.skip_gap(out);
        }
        Arrival::InOrder
    }

    /// Skips every gap that has waited [`Self::GAP_WAIT`] since the earliest held message
    /// arrived: delivery jumps to the lowest held `seq` and flushes. Appends deliverables.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<Vec<u8>>) {
        while self.next_deadline().is_some_and(|deadline| deadline <= now) {
            self.skip_gap(out);
        }
    }

    /// When [`Self::expire`] next has work to do.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let held = self.held.as_ref()?;
        let earliest = held.entries.iter().map(|e| e.arrived).min()?;
        Some(earliest + Self::GAP_WAIT)
    }

    /// True when nothing is held.
    pub(crate) fn is_idle(&self) -> bool {
        self.held.is_none()
    }

    /// Messages currently held out of order.
    #[cfg(test)]
    pub(crate) fn held_len(&self) -> usize {
        self.held.as_ref().map_or(0, |h| h.entries.len())
    }

    /// Moves delivery to the lowest held message and delivers from there.
    fn skip_gap(&mut self, out: &mut Vec<Vec<u8>>) {
        let lowest = self
            .held
            .as_ref()
            .and_then(|h| h.entries.first())
            .map(|e| u64::from(e.seq));
        match lowest {
            Some(seq) => {
                self.next = seq;
                self.flush(out);
            }
            None => self.held = None,
        }
    }

    /// Delivers held messages while they continue the sequence; frees the holding area once
    /// it is empty.
    fn flush(&mut self, out: &mut Vec<Vec<u8>>) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let ready = held
            .entries
            .iter()
            .zip(self.next..)
            .take_while(|(e, want)| u64::from(e.seq) == *want)
            .count();
        if ready > 0 {
            for entry in held.entries.drain(..ready) {
                held.bytes -= entry.payload.len();
                out.push(entry.payload);
            }
            self.next += ready as u64;
        }
        if held.entries.is_empty() {
            self.held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn msg(seq: u32) -> Vec<u8> {
        seq.to_be_bytes().to_vec()
    }

    fn seqs(out: &[Vec<u8>]) -> Vec<u32> {
        out.iter()
            .map(|p| u32::from_be_bytes(p[..4].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn idle_state_is_small() {
        assert_eq!(std::mem::size_of::<JitterBuffer>(), 16);
        let j = JitterBuffer::new();
        assert!(j.is_idle());
        assert_eq!(j.next_deadline(), None);
    }

    #[test]
    fn in_order_delivery_is_immediate() {
        let now = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for s in 0..5 {
            assert_eq!(j.push(now, s, &msg(s), &mut out), Arrival::InOrder);
        }
        assert_eq!(seqs(&out), [0, 1, 2, 3, 4]);
        assert!(j.is_idle());
    }

    #[test]
    fn reordered_messages_come_out_in_order() {
        let now = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for s in [2, 1, 4] {
            assert_eq!(j.push(now, s, &msg(s), &mut out), Arrival::InOrder);
        }
        assert!(out.is_empty());
        assert_eq!(j.held_len(), 3);
        assert_eq!(j.push(now, 0, &msg(0), &mut out), Arrival::InOrder);
        assert_eq!(seqs(&out), [0, 1, 2]);
        assert!(!j.is_idle());
        j.push(now, 3, &msg(3), &mut out);
        assert_eq!(seqs(&out), [0, 1, 2, 3, 4]);
        assert!(j.is_idle());
    }

    #[test]
    fn held_duplicates_are_dropped_and_old_messages_delivered_late() {
        let now = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        j.push(now, 0, &msg(0), &mut out);
        assert_eq!(j.push(now, 5, &msg(5), &mut out), Arrival::InOrder);
        assert_eq!(j.push(now, 5, b"other", &mut out), Arrival::Duplicate);
        assert_eq!(j.held_len(), 1);
        assert_eq!(j.push(now, 0, &msg(0), &mut out), Arrival::Late);
        assert_eq!(seqs(&out), [0, 0]);
    }

    #[test]
    fn gap_is_skipped_after_the_wait() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        j.push(t0, 3, &msg(3), &mut out);
        j.push(t0 + ms(10), 4, &msg(4), &mut out);
        j.push(t0 + ms(20), 7, &msg(7), &mut out);
        assert_eq!(j.next_deadline(), Some(t0 + JitterBuffer::GAP_WAIT));
        j.expire(t0 + ms(49), &mut out);
        assert!(out.is_empty());
        j.expire(t0 + ms(50), &mut out);
        assert_eq!(seqs(&out), [3, 4]);
        // 7 waits from its own arrival.
        assert_eq!(j.next_deadline(), Some(t0 + ms(70)));
        // An arrival behind the skip is delivered late; 5 still fills its gap.
        assert_eq!(j.push(t0 + ms(55), 0, &msg(0), &mut out), Arrival::Late);
        assert_eq!(j.push(t0 + ms(55), 5, &msg(5), &mut out), Arrival::InOrder);
        assert_eq!(seqs(&out), [3, 4, 0, 5]);
        j.expire(t0 + ms(70), &mut out);
        assert_eq!(seqs(&out), [3, 4, 0, 5, 7]);
        assert!(j.is_idle());
        assert_eq!(j.next_seq(), 8);
    }

    #[test]
    fn a_late_lower_message_is_not_stranded() {
        // py-setowire jumps to whichever held message timed out first, which strands a lower
        // one that arrived later; here delivery resumes at the lowest held seq, and no held
        // message waits longer than GAP_WAIT.
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        j.push(t0, 9, &msg(9), &mut out);
        j.push(t0 + ms(30), 4, &msg(4), &mut out);
        j.expire(t0 + ms(49), &mut out);
        assert!(out.is_empty());
        j.expire(t0 + ms(50), &mut out);
        assert_eq!(seqs(&out), [4, 9]);
        assert!(j.is_idle());
    }

    #[test]
    fn expire_handles_several_gaps_at_once() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        for s in [2, 5, 9] {
            j.push(t0, s, &msg(s), &mut out);
        }
        j.expire(t0 + ms(1000), &mut out);
        assert_eq!(seqs(&out), [2, 5, 9]);
        assert!(j.is_idle());
    }

    #[test]
    fn overflow_skips_the_oldest_gap_at_once() {
        let now = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        let max = JitterBuffer::MAX_PENDING as u32;
        for s in 2..2 + max {
            j.push(now, s, &msg(s), &mut out);
        }
        assert!(out.is_empty());
        assert_eq!(j.held_len(), JitterBuffer::MAX_PENDING);
        // One more: the gap at 0..2 is skipped and the whole run delivered.
        j.push(now, 2 + max + 1, &msg(2 + max + 1), &mut out);
        assert_eq!(out.len(), JitterBuffer::MAX_PENDING);
        assert_eq!(seqs(&out)[0], 2);
        assert_eq!(j.held_len(), 1);
        assert!(j.held_len() <= JitterBuffer::MAX_PENDING);
    }

    #[test]
    fn byte_bound_holds() {
        let now = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        let big = vec![0u8; 60 * 1024];
        for s in (10..40).step_by(2) {
            j.push(now, s, &big, &mut out);
            let held = j.held.as_ref().map_or(0, |h| h.bytes);
            assert!(held <= JitterBuffer::MAX_PENDING_BYTES);
        }
        assert!(!out.is_empty());
    }

    #[test]
    fn sequence_end_does_not_overflow() {
        let now = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        j.push(now, u32::MAX, b"last", &mut out);
        j.expire(now + ms(50), &mut out);
        assert_eq!(out, [b"last".to_vec()]);
        assert_eq!(j.next_seq(), u64::from(u32::MAX) + 1);
        assert_eq!(j.push(now, u32::MAX, b"again", &mut out), Arrival::Late);
        assert_eq!(j.push(now, 0, b"zero", &mut out), Arrival::Late);
        assert!(j.is_idle());
    }

    #[test]
    fn random_arrivals_deliver_each_message_once_in_order() {
        // A deterministic shuffle with drops, within the gap wait: every delivered seq is
        // unique and increasing, none late.
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        let mut out = Vec::new();
        let mut x: u32 = 0x9E37_79B9;
        let mut t = t0;
        for base in (0..2000u32).step_by(16) {
            let mut batch: Vec<u32> = (base..base + 16).collect();
            for i in (1..batch.len()).rev() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                batch.swap(i, x as usize % (i + 1));
            }
            for s in batch {
                if s % 7 != 3 {
                    assert_ne!(j.push(t, s, &msg(s), &mut out), Arrival::Late);
                }
                t += ms(1);
                j.expire(t, &mut out);
            }
        }
        j.expire(t + ms(1000), &mut out);
        let got = seqs(&out);
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        assert!(j.is_idle());
        assert!(got.len() > 1500);
    }
}
