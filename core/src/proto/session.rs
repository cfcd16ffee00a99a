//! Per-peer session keys and the sealing/opening of DATA frames.
//!
//! Wire layout of a DATA datagram: `0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)`, ChaCha20-Poly1305
//! (RFC 8439) without associated data, nonce = `session_id u32 ‖ counter u64`, big-endian.
//! Both directions share the session id but use different keys, so a nonce is never reused
//! under one key as long as each direction's counter only grows.
//!
//! The type byte is not authenticated (py-setowire passes no associated data), so it is
//! checked by the dispatcher, not here.
//!
//! Performance note (see `benches/crypto.rs`): per packet the cost is dominated by Poly1305's
//! per-message key setup. poly1305 0.8 picks its AVX2 backend at run time, but that backend's
//! key setup (`State::new`, `PrecomputedMultiplier::mul`) is not compiled with AVX2 enabled,
//! so in a default build each AVX2 intrinsic there becomes an out-of-line call: a 64-byte
//! seal costs ~4x more than with `-C target-feature=+avx2`. Building with
//! `--cfg poly1305_force_soft` avoids that on every x86-64 CPU.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use super::replay::ReplayWindow;

/// First byte of a DATA datagram.
pub const DATA_TYPE: u8 = 0x01;
/// ChaCha20-Poly1305 nonce: `session_id (4) ‖ counter (8)`.
pub const NONCE_LEN: usize = 12;
/// Poly1305 tag length.
pub const TAG_LEN: usize = 16;
/// Bytes before the ciphertext in a DATA datagram: type byte + nonce.
pub const DATA_HEADER_LEN: usize = 1 + NONCE_LEN;
/// Bytes a DATA datagram adds around its plaintext: header + tag.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;
/// HKDF `info` string of the baseline protocol.
pub const HKDF_INFO: &[u8] = b"p2p-v12-session";

/// Why a handshake or a DATA frame was refused. None of these is fatal for the node: the
/// datagram is dropped (and possibly counted).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum CryptoError {
    /// The HELLO carries our own id8: we dialled ourselves (e.g. via PEX or LAN).
    #[error("peer has our own id")]
    SelfConnection,
    /// The peer's public key is a low-order point: the shared secret would be all zeroes
    /// and known to anyone.
    #[error("peer public key is a low-order point")]
    WeakKey,
    /// The sealed input is shorter than nonce + tag.
    #[error("sealed data shorter than nonce and tag")]
    TooShort,
    /// The caller's buffer cannot hold the header, plaintext and tag.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The nonce's session id is not this session's: stale session or another peer.
    #[error("nonce belongs to another session")]
    WrongSessionId,
    /// The counter was already received, or is too old for the replay window.
    #[error("replayed or too old counter")]
    Replay,
    /// The tag did not verify.
    #[error("authentication failed")]
    Auth,
    /// The send counter reached its end; the session must be replaced to keep sending.
    #[error("send counter exhausted")]
    CounterExhausted,
}

/// A first send counter that no earlier run of the same identity can have reached: the Unix
/// time in seconds in the high 32 bits. Session keys depend on the static keys alone, so a
/// node restarted with the same identity would otherwise reuse (key, nonce) pairs; a later
/// start begins 2^32 counters above an earlier one per second between them, more than any
/// session can send. Receivers accept the jump (py-setowire checks nothing, our replay
/// window slides forward).
pub fn restart_safe_counter_base(unix_seconds: u64) -> u64 {
    unix_seconds.min(u64::from(u32::MAX)) << 32
}

/// Output of the session KDF. Which key a side sends with depends on id order, see
/// [`Session::new`].
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// `okm[0..32]`: the key the lower id sends with.
    pub k_lo: [u8; 32],
    /// `okm[32..64]`: the key the higher id sends with.
    pub k_hi: [u8; 32],
    /// `u32(okm[64..68])`, big-endian; the first 4 nonce bytes in both directions.
    pub session_id: u32,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// HKDF-SHA256 over the X25519 shared secret, salt empty, info `"p2p-v12-session"`, 68 bytes.
pub fn derive_session_keys(shared_secret: &[u8; 32]) -> SessionKeys {
    let mut okm = [0u8; 68];
    Hkdf::<Sha256>::new(Some(&[]), shared_secret)
        .expand(HKDF_INFO, &mut okm)
        .expect("68 bytes is within HKDF-SHA256's output limit");
    let mut keys = SessionKeys {
        k_lo: [0; 32],
        k_hi: [0; 32],
        session_id: u32::from_be_bytes([okm[64], okm[65], okm[66], okm[67]]),
    };
    keys.k_lo.copy_from_slice(&okm[..32]);
    keys.k_hi.copy_from_slice(&okm[32..64]);
    okm.fill(0);
    keys
}

/// An established session with one peer: both directions' ciphers, the send counter and
/// the receive-side replay window.
///
/// The ciphers are keyed once here; per packet only the nonce changes.
pub struct Session {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
    session_id: u32,
    send_counter: u64,
    replay: ReplayWindow,
}

impl Session {
    /// `i_am_lo`: our id8 sorts below the peer's, so we send with `k_lo` and receive with
    /// `k_hi`. `first_send_counter` is the first nonce counter we send; a node that restarts
    /// with a persisted identity must start above every counter it used before, because the
    /// keys depend on the static keys only.
    pub fn new(keys: &SessionKeys, i_am_lo: bool, first_send_counter: u64) -> Self {
        let (send, recv) = if i_am_lo {
            (&keys.k_lo, &keys.k_hi)
        } else {
            (&keys.k_hi, &keys.k_lo)
        };
        Self {
            send: ChaCha20Poly1305::new(Key::from_slice(send)),
            recv: ChaCha20Poly1305::new(Key::from_slice(recv)),
            session_id: keys.session_id,
            send_counter: first_send_counter,
            replay: ReplayWindow::new(),
        }
    }

    /// The session id shared by both directions.
    pub fn session_id(&self) -> u32 {
        self.session_id
    }

    /// The counter the next sealed frame will carry.
    pub fn send_counter(&self) -> u64 {
        self.send_counter
    }

    /// The receive direction's replay window (e.g. for metrics).
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Seals a DATA frame in place. `frame[..DATA_HEADER_LEN]` is room for the header,
    /// `frame[DATA_HEADER_LEN..len - TAG_LEN]` holds the plaintext and the last `TAG_LEN`
    /// bytes are room for the tag. Writes the type byte, the nonce, the ciphertext and the
    /// tag, then advances the send counter.
    ///
    /// The counter stops at `u64::MAX - 1`: `u64::MAX` is never sent, so receivers can use
    /// it as a sentinel.
    pub fn seal_data(&mut self, frame: &mut [u8]) -> Result<(), CryptoError> {
        if frame.len() < DATA_OVERHEAD {
            return Err(CryptoError::BufferTooSmall);
        }
        let counter = self.send_counter;
        if counter == u64::MAX {
            return Err(CryptoError::CounterExhausted);
        }
        let nonce = make_nonce(self.session_id, counter);
        let (header, rest) = frame.split_at_mut(DATA_HEADER_LEN);
        let (body, tag_out) = rest.split_at_mut(rest.len() - TAG_LEN);
        let tag = self
            .send
            .encrypt_in_place_detached(Nonce::from_slice(&nonce), &[], body)
            // Only refused beyond 256 GiB of plaintext.
            .map_err(|_| CryptoError::BufferTooSmall)?;
        header[0] = DATA_TYPE;
        header[1..].copy_from_slice(&nonce);
        tag_out.copy_from_slice(&tag);
        self.send_counter = counter + 1;
        Ok(())
    }

    /// Opens the sealed part of a DATA frame (everything after the type byte:
    /// `nonce ‖ ciphertext ‖ tag`), decrypting into `out[..ct_len]`; returns the plaintext
    /// length.
    ///
    /// The session id and the replay window are checked before any cryptography, and the
    /// counter is marked only after the tag verified, so forged frames cost one MAC and
    /// cannot move the window.
    pub fn open_data(&mut self, sealed: &[u8], out: &mut [u8]) -> Result<usize, CryptoError> {
        let (counter, ct_len) = self.precheck(sealed)?;
        let out = out.get_mut(..ct_len).ok_or(CryptoError::BufferTooSmall)?;
        out.copy_from_slice(&sealed[NONCE_LEN..NONCE_LEN + ct_len]);
        self.decrypt(sealed, counter, out)?;
        Ok(ct_len)
    }

    /// Like [`Self::open_data`] but decrypts inside `sealed` itself: on success the
    /// plaintext is `sealed[NONCE_LEN..NONCE_LEN + n]`. Saves a copy on the receive path.
    pub fn open_data_in_place(&mut self, sealed: &mut [u8]) -> Result<usize, CryptoError> {
        let (counter, ct_len) = self.precheck(sealed)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[..NONCE_LEN]);
        let (body, tag) = sealed[NONCE_LEN..].split_at_mut(ct_len);
        self.recv
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &[], body, Tag::from_slice(tag))
            .map_err(|_| CryptoError::Auth)?;
        self.replay.mark(counter);
        Ok(ct_len)
    }

    /// Length, session id and replay checks; returns the counter and the ciphertext length.
    fn precheck(&self, sealed: &[u8]) -> Result<(u64, usize), CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::TooShort);
        }
        let session_id = u32::from_be_bytes([sealed[0], sealed[1], sealed[2], sealed[3]]);
        if session_id != self.session_id {
            return Err(CryptoError::WrongSessionId);
        }
        let mut ctr = [0u8; 8];
        ctr.copy_from_slice(&sealed[4..NONCE_LEN]);
        let counter = u64::from_be_bytes(ctr);
        if !self.replay.check(counter) {
            return Err(CryptoError::Replay);
        }
        Ok((counter, sealed.len() - NONCE_LEN - TAG_LEN))
    }

    /// Verifies and decrypts `out` (holding the ciphertext) and marks the counter.
    fn decrypt(&mut self, sealed: &[u8], counter: u64, out: &mut [u8]) -> Result<(), CryptoError> {
        let tag = &sealed[sealed.len() - TAG_LEN..];
        self.recv
            .decrypt_in_place_detached(
                Nonce::from_slice(&sealed[..NONCE_LEN]),
                &[],
                out,
                Tag::from_slice(tag),
            )
            .map_err(|_| CryptoError::Auth)?;
        self.replay.mark(counter);
        Ok(())
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .field("send_counter", &self.send_counter)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

fn make_nonce(session_id: u32, counter: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..4].copy_from_slice(&session_id.to_be_bytes());
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SessionKeys {
        derive_session_keys(&[7u8; 32])
    }

    #[test]
    fn a_later_start_counts_above_everything_an_earlier_one_could_send() {
        let earlier = restart_safe_counter_base(1_800_000_000);
        let later = restart_safe_counter_base(1_800_000_001);
        assert!(later - earlier >= 1 << 32);
        // A restarted sender's first frame is accepted by the peer's window.
        let k = keys();
        let (mut a, mut b) = (Session::new(&k, true, earlier), Session::new(&k, false, 0));
        let first = seal(&mut a, b"before restart");
        assert!(b.open_data(&first[1..], &mut [0u8; 64]).is_ok());
        let mut restarted = Session::new(&k, true, later);
        let again = seal(&mut restarted, b"after restart");
        assert!(b.open_data(&again[1..], &mut [0u8; 64]).is_ok());
        assert_ne!(first[1..13], again[1..13], "no nonce is reused");
    }

    /// A (lo) and B (hi) ends of one session.
    fn pair() -> (Session, Session) {
        let k = keys();
        (Session::new(&k, true, 0), Session::new(&k, false, 0))
    }

    fn seal(s: &mut Session, plaintext: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; plaintext.len() + DATA_OVERHEAD];
        frame[DATA_HEADER_LEN..DATA_HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
        s.seal_data(&mut frame).unwrap();
        frame
    }

    fn open(s: &mut Session, frame: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut out = vec![0u8; frame.len()];
        let n = s.open_data(&frame[1..], &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn round_trip_both_directions() {
        let (mut a, mut b) = pair();
        for len in [0usize, 1, 4, 63, 64, 65, 1200] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = seal(&mut a, &msg);
            assert_eq!(f[0], DATA_TYPE);
            assert_eq!(f.len(), len + DATA_OVERHEAD);
            assert_eq!(open(&mut b, &f).unwrap(), msg);
            let g = seal(&mut b, &msg);
            assert_eq!(open(&mut a, &g).unwrap(), msg);
        }
        assert_eq!(a.send_counter(), 7);
        assert_eq!(b.send_counter(), 7);
    }

    #[test]
    fn nonce_layout() {
        let (mut a, _) = pair();
        let k = keys();
        let mut a5 = Session::new(&k, true, 0x0102_0304_0506_0708);
        let f = seal(&mut a5, b"x");
        assert_eq!(&f[1..5], &k.session_id.to_be_bytes());
        assert_eq!(&f[5..13], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let f0 = seal(&mut a, b"x");
        assert_eq!(&f0[5..13], &[0; 8]);
    }

    #[test]
    fn key_direction_lo_sends_with_k_lo() {
        let k = keys();
        let mut lo = Session::new(&k, true, 0);
        let mut hi = Session::new(&k, false, 0);
        // A receiver that uses the same key as the sender (same side) cannot open it.
        let mut lo2 = Session::new(&k, true, 0);
        let mut hi2 = Session::new(&k, false, 0);
        let f = seal(&mut lo, b"from lo");
        assert_eq!(open(&mut lo2, &f), Err(CryptoError::Auth));
        assert_eq!(open(&mut hi, &f).unwrap(), b"from lo");
        let g = seal(&mut hi, b"from hi");
        assert_eq!(open(&mut hi2, &g), Err(CryptoError::Auth));
        assert_eq!(open(&mut lo, &g).unwrap(), b"from hi");

        // And the lo direction really is k_lo.
        let mut body = *b"from lo";
        let tag = ChaCha20Poly1305::new(Key::from_slice(&k.k_lo))
            .encrypt_in_place_detached(Nonce::from_slice(&f[1..13]), &[], &mut body)
            .unwrap();
        assert_eq!(&f[13..20], &body);
        assert_eq!(&f[20..], tag.as_slice());
    }

    #[test]
    fn tamper_is_auth_error_and_does_not_mark() {
        let (mut a, mut b) = pair();
        let f = seal(&mut a, b"hello world");
        for i in DATA_HEADER_LEN..f.len() {
            let mut t = f.clone();
            t[i] ^= 0x80;
            assert_eq!(open(&mut b, &t), Err(CryptoError::Auth), "byte {i}");
        }
        // Flipping a counter byte changes the nonce: Auth, not Replay.
        let mut t = f.clone();
        t[12] ^= 1;
        assert_eq!(open(&mut b, &t), Err(CryptoError::Auth));
        // The genuine frame still opens: forgeries did not mark its counter.
        assert_eq!(open(&mut b, &f).unwrap(), b"hello world");
    }

    #[test]
    fn replay_is_rejected() {
        let (mut a, mut b) = pair();
        let f = seal(&mut a, b"once");
        assert!(open(&mut b, &f).is_ok());
        assert_eq!(open(&mut b, &f), Err(CryptoError::Replay));
    }

    #[test]
    fn reorder_within_window_is_accepted() {
        let (mut a, mut b) = pair();
        let frames: Vec<_> = (0..200u32)
            .map(|i| seal(&mut a, &i.to_be_bytes()))
            .collect();
        for i in (0..200).rev() {
            assert_eq!(open(&mut b, &frames[i]).unwrap(), (i as u32).to_be_bytes());
        }
        for f in &frames {
            assert_eq!(open(&mut b, f), Err(CryptoError::Replay));
        }
    }

    #[test]
    fn far_old_counter_is_rejected() {
        let k = keys();
        let mut a = Session::new(&k, true, 0);
        let old = seal(&mut a, b"old");
        let mut a_later = Session::new(&k, true, ReplayWindow::WINDOW);
        let new = seal(&mut a_later, b"new");
        let mut b = Session::new(&k, false, 0);
        assert!(open(&mut b, &new).is_ok());
        assert_eq!(open(&mut b, &old), Err(CryptoError::Replay));
    }

    #[test]
    fn big_forward_jump_is_accepted() {
        let k = keys();
        let mut b = Session::new(&k, false, 0);
        let mut a = Session::new(&k, true, 0);
        assert!(open(&mut b, &seal(&mut a, b"a")).is_ok());
        let mut a_far = Session::new(&k, true, 1 << 48);
        assert!(open(&mut b, &seal(&mut a_far, b"b")).is_ok());
        assert_eq!(b.replay_window().highest(), Some(1 << 48));
    }

    #[test]
    fn wrong_session_id() {
        let (mut a, _) = pair();
        let mut other = Session::new(&derive_session_keys(&[8u8; 32]), false, 0);
        let f = seal(&mut a, b"x");
        assert_eq!(open(&mut other, &f), Err(CryptoError::WrongSessionId));
    }

    #[test]
    fn short_and_small_inputs_never_panic() {
        let (mut a, mut b) = pair();
        let mut out = [0u8; 64];
        for len in 0..NONCE_LEN + TAG_LEN {
            let junk = vec![0u8; len];
            assert_eq!(b.open_data(&junk, &mut out), Err(CryptoError::TooShort));
            let mut junk = junk;
            assert_eq!(b.open_data_in_place(&mut junk), Err(CryptoError::TooShort));
        }
        let f = seal(&mut a, &[9u8; 40]);
        assert_eq!(
            b.open_data(&f[1..], &mut out[..39]),
            Err(CryptoError::BufferTooSmall)
        );
        for len in 0..DATA_OVERHEAD {
            let mut buf = vec![0u8; len];
            assert_eq!(a.seal_data(&mut buf), Err(CryptoError::BufferTooSmall));
        }
        // Empty plaintext: exactly the overhead.
        let mut buf = [0u8; DATA_OVERHEAD];
        a.seal_data(&mut buf).unwrap();
        assert_eq!(b.open_data(&buf[1..], &mut []), Ok(0));
    }

    #[test]
    fn in_place_open_matches() {
        let (mut a, mut b) = pair();
        let mut f = seal(&mut a, b"in place");
        let n = b.open_data_in_place(&mut f[1..]).unwrap();
        assert_eq!(&f[1 + NONCE_LEN..1 + NONCE_LEN + n], b"in place");
        let mut f2 = seal(&mut a, b"x");
        f2[14] ^= 1;
        assert_eq!(b.open_data_in_place(&mut f2[1..]), Err(CryptoError::Auth));
    }

    #[test]
    fn counter_exhaustion() {
        let k = keys();
        let mut a = Session::new(&k, true, u64::MAX - 1);
        let mut b = Session::new(&k, false, 0);
        let f = seal(&mut a, b"last");
        assert!(open(&mut b, &f).is_ok());
        let mut buf = [0u8; DATA_OVERHEAD];
        assert_eq!(a.seal_data(&mut buf), Err(CryptoError::CounterExhausted));
        assert_eq!(a.send_counter(), u64::MAX);
    }
}
