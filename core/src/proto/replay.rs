//! Sliding anti-replay window for DATA counters.
//!
//! py-setowire receivers accept any counter, so a captured DATA datagram can be replayed
//! forever. The node keeps, per session, the highest counter seen and a bitmap of the
//! [`ReplayWindow::WINDOW`] counters just below it (the WireGuard / RFC 6479 scheme). A
//! py-setowire sender only ever increments its counter, so honest traffic is never refused
//! unless it arrives more than `WINDOW` packets late.
//!
//! Memory matters (one window per peer, 100 k peers): the window is 16 `u64` words plus the
//! high-water mark, 136 bytes. Unlike WireGuard, bits are retired one by one rather than a
//! word at a time, so all 1024 slots are usable instead of 1024 − 64.

/// Number of `u64` words in the bitmap.
const WORDS: usize = (ReplayWindow::WINDOW / 64) as usize;

/// Anti-replay state for one receive direction.
///
/// A counter `c` is acceptable when it is newer than anything seen, or when it is one of the
/// `WINDOW` most recent counters (`c > highest - WINDOW`) and has not been marked yet.
/// `u64::MAX` is never acceptable: senders stop before reaching it (see
/// [`crate::proto::session::CryptoError::CounterExhausted`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest counter marked so far plus one; 0 while nothing has been marked.
    next: u64,
    /// Bit `c % WINDOW` is set when counter `c` (within the window) has been marked.
    bits: [u64; WORDS],
}

impl ReplayWindow {
    /// How many counters below the highest one are still remembered (and so accepted once).
    pub const WINDOW: u64 = 1024;

    /// An empty window: every counter below `u64::MAX` is acceptable.
    pub fn new() -> Self {
        Self {
            next: 0,
            bits: [0; WORDS],
        }
    }

    /// Whether `counter` may be accepted. Does not change the state: call [`Self::mark`] only
    /// once the packet carrying `counter` has been authenticated, so that forged packets
    /// cannot advance or poison the window.
    pub fn check(&self, counter: u64) -> bool {
        if counter == u64::MAX {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        // Here next >= 1 and counter <= next - 1 = highest.
        if self.next - 1 - counter >= Self::WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] & bit == 0
    }

    /// Records `counter` as received. Counters too old for the window (or `u64::MAX`) are
    /// ignored; a counter beyond the highest one slides the window forward.
    pub fn mark(&mut self, counter: u64) {
        if counter == u64::MAX {
            return;
        }
        if counter >= self.next {
            self.retire(self.next, counter);
            self.next = counter + 1;
        } else if self.next - 1 - counter >= Self::WINDOW {
            return;
        }
        let (word, bit) = Self::slot(counter);
        self.bits[word] |= bit;
    }

    /// Highest counter marked so far, if any.
    pub fn highest(&self) -> Option<u64> {
        self.next.checked_sub(1)
    }

    /// Clears the slots of counters `from..=to`, which now take the place of counters that
    /// fall out of the window.
    fn retire(&mut self, from: u64, to: u64) {
        if to - from >= Self::WINDOW - 1 {
            self.bits = [0; WORDS];
            return;
        }
        let mut pos = from % Self::WINDOW;
        let mut left = to - from + 1; // 1..=WINDOW-1 slots, possibly wrapping around
        while left > 0 {
            let word = (pos / 64) as usize;
            let offset = pos % 64;
            let take = (64 - offset).min(left);
            let mask = if take == 64 {
                u64::MAX
            } else {
                ((1u64 << take) - 1) << offset
            };
            self.bits[word] &= !mask;
            left -= take;
            pos = (pos + take) % Self::WINDOW;
        }
    }

    fn slot(counter: u64) -> (usize, u64) {
        let pos = counter % Self::WINDOW;
        ((pos / 64) as usize, 1u64 << (pos % 64))
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, c: u64) -> bool {
        if w.check(c) {
            w.mark(c);
            true
        } else {
            false
        }
    }

    #[test]
    fn small_footprint() {
        assert_eq!(std::mem::size_of::<ReplayWindow>(), 136);
    }

    #[test]
    fn in_order_then_replay() {
        let mut w = ReplayWindow::new();
        for c in 0..3000 {
            assert!(accept(&mut w, c), "fresh counter {c}");
        }
        for c in 3000 - ReplayWindow::WINDOW..3000 {
            assert!(!accept(&mut w, c), "replayed counter {c}");
        }
        assert_eq!(w.highest(), Some(2999));
    }

    #[test]
    fn reorder_within_window_is_accepted_once() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 5000));
        // Every counter of the window below the highest one is still acceptable, once.
        for c in (5000 - ReplayWindow::WINDOW + 1..5000).rev() {
            assert!(accept(&mut w, c), "late counter {c}");
            assert!(!accept(&mut w, c), "duplicate counter {c}");
        }
        assert!(!accept(&mut w, 5000));
    }

    #[test]
    fn far_old_counter_is_rejected() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 5000));
        assert!(!w.check(5000 - ReplayWindow::WINDOW));
        assert!(!w.check(0));
        assert!(w.check(5000 - ReplayWindow::WINDOW + 1));
        // Marking a too-old counter changes nothing.
        let before = w.clone();
        w.mark(10);
        assert_eq!(w, before);
    }

    #[test]
    fn big_forward_jump_clears_everything() {
        let mut w = ReplayWindow::new();
        for c in 0..100 {
            assert!(accept(&mut w, c));
        }
        let far = 1u64 << 40;
        assert!(accept(&mut w, far));
        assert!(!accept(&mut w, far));
        assert!(!w.check(50));
        // Counters that map to the same slots as the old ones are fresh again.
        assert!(accept(&mut w, far - 1));
        assert!(accept(&mut w, far - ReplayWindow::WINDOW + 1));
    }

    #[test]
    fn partial_slide_keeps_recent_bits() {
        let mut w = ReplayWindow::new();
        for c in 0..1024 {
            assert!(accept(&mut w, c));
        }
        // Slide by 100 with a hole: 1024..1123 not yet seen.
        assert!(accept(&mut w, 1123));
        for c in 1024..1123 {
            assert!(w.check(c), "{c} is in window and unseen");
        }
        for c in 100..1024 {
            assert!(!w.check(c), "{c} was seen");
        }
        for c in 0..100 {
            assert!(!w.check(c), "{c} fell out of the window");
        }
    }

    #[test]
    fn extreme_counters() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(u64::MAX));
        w.mark(u64::MAX);
        assert_eq!(w.highest(), None);
        assert!(accept(&mut w, u64::MAX - 1));
        assert!(!w.check(u64::MAX - 1));
        assert!(w.check(u64::MAX - 2));
        assert!(!w.check(0));
    }

    #[test]
    fn matches_a_naive_model() {
        // Deterministic pseudo-random walk compared with a set-based reference.
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut highest: Option<u64> = None;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut base = 0u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let c = match x % 8 {
                0 => base + 1500 + x % 3000,
                1..=5 => (base + x % 1400).saturating_sub(700),
                _ => base + x % 64,
            };
            base = base.max(c.saturating_sub(500));
            let expected = match highest {
                None => true,
                Some(h) => c > h || (h - c < ReplayWindow::WINDOW && !seen.contains(&c)),
            };
            assert_eq!(w.check(c), expected, "counter {c}, highest {highest:?}");
            if expected {
                w.mark(c);
                seen.insert(c);
                highest = Some(highest.map_or(c, |h| h.max(c)));
            }
        }
    }
}
