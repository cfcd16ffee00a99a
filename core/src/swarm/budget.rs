//! What the engine may send to an address on its own initiative: three times what it
//! received from that address (QUIC's anti-amplification rule, RFC 9000 §8).
//!
//! The baseline protocol cannot prove that an address receives: a py-setowire peer echoes
//! nothing the node chooses, and a HELLO from a forged source opens a session like any other.
//! So everything the node sends toward a session's address other than application data and
//! PONG (smaller than the PING it answers) — handshake answers, PINGs, HAVE, stored values,
//! introductions, PEX, RELAY_FWD — and everything it makes other peers send there (an
//! introduction makes the introduced peer send a burst of HELLOs) is paid from this credit.
//! Whatever sends to an address, the bytes it gets stay within three times what came from it.

/// Bytes of credit earned per byte received.
pub(crate) const AMPLIFICATION: usize = 3;
/// What one frame may add on the wire beyond its own bytes: the out queue packs frames to
/// one address into a BATCH, which costs two bytes of header and two of length per frame,
/// at most three bytes a frame for the two or more frames a BATCH holds.
pub(crate) const FRAME_OVERHEAD: usize = 3;
/// Credit stops accumulating here: an address cannot bank an unbounded burst, and the cap
/// still covers a whole stored value (1 MiB by default is sent as it is earned).
const CREDIT_CAP: usize = 256 << 10;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendBudget {
    credit: u32,
}

impl SendBudget {
    /// The credit of an address that has sent `bytes`.
    pub(crate) fn after_receiving(bytes: usize) -> Self {
        let mut budget = Self::default();
        budget.earn(bytes);
        budget
    }

    /// Credits a datagram of `bytes` received from the address.
    pub(crate) fn earn(&mut self, bytes: usize) {
        let credit = (self.credit as usize).saturating_add(bytes.saturating_mul(AMPLIFICATION));
        self.credit = credit.min(CREDIT_CAP) as u32;
    }

    /// Takes what one frame of `bytes` costs (with [`FRAME_OVERHEAD`]) if the credit
    /// covers it.
    pub(crate) fn try_spend(&mut self, bytes: usize) -> bool {
        let cost = bytes + FRAME_OVERHEAD;
        if cost > self.credit as usize {
            return false;
        }
        self.credit -= cost as u32;
        true
    }

    pub(crate) fn available(&self) -> usize {
        self.credit as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_times_what_was_received_and_no_more() {
        let mut b = SendBudget::after_receiving(41);
        assert_eq!(b.available(), 123);
        assert!(b.try_spend(41 - FRAME_OVERHEAD));
        assert!(!b.try_spend(83 - FRAME_OVERHEAD));
        assert!(b.try_spend(82 - FRAME_OVERHEAD));
        assert!(!b.try_spend(0));
        b.earn(10);
        assert!(b.try_spend(30 - FRAME_OVERHEAD));
    }

    #[test]
    fn credit_is_capped() {
        let mut b = SendBudget::default();
        for _ in 0..1000 {
            b.earn(65_507);
        }
        assert_eq!(b.available(), CREDIT_CAP);
    }
}
