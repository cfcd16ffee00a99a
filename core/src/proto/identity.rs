//! Node identity: a static X25519 key pair and the peer id derived from it.
//!
//! The protocol has no signatures and no ephemeral keys: the id is a hash of the public key,
//! and session keys come from static-static Diffie-Hellman. Holding the secret of an id is
//! what lets a peer read and write DATA for it.

use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};

pub use super::session::CryptoError;
use super::session::{derive_session_keys, Session};

/// Full peer id: `SHA-256(public key)[..20]`. PING/PONG carry all of it.
pub type PeerId = [u8; 20];
/// The first 8 bytes of a [`PeerId`]: what HELLO, RELAY and PEX frames carry.
pub type Id8 = [u8; 8];

/// Our X25519 key pair with its cached public key and id.
#[derive(Clone)]
pub struct Identity {
    secret: StaticSecret,
    public: [u8; 32],
    id: PeerId,
}

impl Identity {
    /// A fresh identity from the OS random number generator.
    pub fn generate() -> Self {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self::from_secret(secret)
    }

    /// Deterministic identity, as py-setowire derives it from its `seed` option: the secret
    /// scalar bytes are `SHA-256(seed)` (clamped by X25519 when used, not stored clamped).
    /// py-setowire hex-decodes a string seed first; see [`Self::from_seed_hex`].
    pub fn from_seed(seed: &[u8]) -> Self {
        Self::from_secret(Sha256::digest(seed).into())
    }

    /// Like [`Self::from_seed`] for a seed given as a hex string, which is how py-setowire
    /// treats a `str` seed. `None` if `seed` is not valid hex.
    pub fn from_seed_hex(seed: &str) -> Option<Self> {
        decode_hex(seed).map(|bytes| Self::from_seed(&bytes))
    }

    /// Identity from raw secret scalar bytes (e.g. loaded from disk).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret).to_bytes();
        Self {
            secret,
            public,
            id: peer_id_of(&public),
        }
    }

    /// The raw secret scalar bytes, for persisting the identity.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }

    /// Our X25519 public key, as sent in HELLO / HELLO_ACK.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// Our 20-byte peer id.
    pub fn id(&self) -> &PeerId {
        &self.id
    }

    /// The first 8 bytes of our id.
    pub fn id8(&self) -> Id8 {
        id8_of(&self.id)
    }

    /// Our id as 40 lowercase hex characters (`id40`).
    pub fn id_hex(&self) -> String {
        encode_hex(&self.id)
    }

    /// Session with a peer that sent HELLO / HELLO_ACK with `their_id8` and `their_public`.
    ///
    /// Refuses our own id8 ([`CryptoError::SelfConnection`]; py-setowire's own check never
    /// fires, as it compares an id8 with an id40) and low-order public keys
    /// ([`CryptoError::WeakKey`]; the all-zero secret would be public). The side whose id8
    /// is lower — byte order, which equals py-setowire's hex-string order — sends with
    /// `k_lo`. `first_send_counter` lets a node restarted with a persisted identity continue
    /// above the counters it used before, since the keys do not change between runs.
    ///
    /// The peer's id8 is not checked against its public key here: py-setowire does not bind
    /// them either. Use [`peer_id_of`] when that matters.
    pub fn derive_session(
        &self,
        their_public: &[u8; 32],
        their_id8: &Id8,
        first_send_counter: u64,
    ) -> Result<Session, CryptoError> {
        let my_id8 = self.id8();
        if *their_id8 == my_id8 {
            return Err(CryptoError::SelfConnection);
        }
        let shared = self.secret.diffie_hellman(&PublicKey::from(*their_public));
        if !shared.was_contributory() {
            return Err(CryptoError::WeakKey);
        }
        let keys = derive_session_keys(shared.as_bytes());
        Ok(Session::new(&keys, my_id8 < *their_id8, first_send_counter))
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id_hex())
            .finish_non_exhaustive()
    }
}

/// The peer id of a public key: `SHA-256(public)[..20]`.
pub fn peer_id_of(public: &[u8; 32]) -> PeerId {
    let digest = Sha256::digest(public);
    let mut id = [0u8; 20];
    id.copy_from_slice(&digest[..20]);
    id
}

/// The id8 of a full id.
pub fn id8_of(id: &PeerId) -> Id8 {
    let mut id8 = [0u8; 8];
    id8.copy_from_slice(&id[..8]);
    id8
}

/// Lowercase hex, as py-setowire prints ids.
pub fn encode_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes hex (either case); `None` on odd length or a non-hex digit.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::super::session::{DATA_HEADER_LEN, DATA_OVERHEAD};
    use super::*;

    fn roundtrip(from: &mut Session, to: &mut Session, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut frame = vec![0u8; msg.len() + DATA_OVERHEAD];
        frame[DATA_HEADER_LEN..DATA_HEADER_LEN + msg.len()].copy_from_slice(msg);
        from.seal_data(&mut frame)?;
        let mut out = vec![0u8; msg.len()];
        let n = to.open_data(&frame[1..], &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn seed_is_deterministic_and_hashed() {
        let a = Identity::from_seed(b"alpha");
        let b = Identity::from_seed(b"alpha");
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.secret_bytes(), <[u8; 32]>::from(Sha256::digest(b"alpha")));
        assert_eq!(a.id(), &peer_id_of(a.public_key()));
        assert_eq!(a.id_hex().len(), 40);
        assert_eq!(a.id_hex(), encode_hex(a.id()));
        assert_eq!(&a.id8()[..], &a.id()[..8]);
        let c = Identity::from_secret(a.secret_bytes());
        assert_eq!(c.id(), a.id());
    }

    #[test]
    fn hex_seed() {
        let a = Identity::from_seed_hex("00ff10").unwrap();
        assert_eq!(a.id(), Identity::from_seed(&[0x00, 0xff, 0x10]).id());
        assert!(Identity::from_seed_hex("0g").is_none());
        assert!(Identity::from_seed_hex("abc").is_none());
        assert_eq!(decode_hex("ABcd"), Some(vec![0xab, 0xcd]));
    }

    #[test]
    fn generated_identities_differ() {
        assert_ne!(Identity::generate().id(), Identity::generate().id());
    }

    #[test]
    fn sessions_agree_and_direction_follows_id_order() {
        for (sa, sb) in [
            (b"a" as &[u8], b"b" as &[u8]),
            (b"node-1", b"node-2"),
            (b"x", b"yy"),
        ] {
            let a = Identity::from_seed(sa);
            let b = Identity::from_seed(sb);
            let mut sa = a.derive_session(b.public_key(), &b.id8(), 0).unwrap();
            let mut sb = b.derive_session(a.public_key(), &a.id8(), 0).unwrap();
            assert_eq!(sa.session_id(), sb.session_id());
            assert_eq!(roundtrip(&mut sa, &mut sb, b"a->b").unwrap(), b"a->b");
            assert_eq!(roundtrip(&mut sb, &mut sa, b"b->a").unwrap(), b"b->a");

            // The lower id uses k_lo: check against explicitly built sessions.
            let shared = StaticSecret::from(a.secret_bytes())
                .diffie_hellman(&PublicKey::from(*b.public_key()));
            let keys = derive_session_keys(shared.as_bytes());
            let a_is_lo = a.id8() < b.id8();
            let mut explicit_b = Session::new(&keys, !a_is_lo, 0);
            assert_eq!(roundtrip(&mut sa, &mut explicit_b, b"x").unwrap(), b"x");
            let mut wrong_b = Session::new(&keys, a_is_lo, 0);
            assert_eq!(
                roundtrip(&mut sa, &mut wrong_b, b"x"),
                Err(CryptoError::Auth)
            );
        }
    }

    #[test]
    fn self_connection_is_refused() {
        let a = Identity::from_seed(b"me");
        assert_eq!(
            a.derive_session(a.public_key(), &a.id8(), 0).unwrap_err(),
            CryptoError::SelfConnection
        );
    }

    #[test]
    fn low_order_points_are_refused() {
        let a = Identity::from_seed(b"me");
        let other = [1u8; 8];
        // Zero, one, and the order-8 points of Curve25519 (plus non-canonical encodings).
        let mut p1 = [0u8; 32];
        p1[0] = 1;
        let order8 =
            decode_hex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800").unwrap();
        let p_minus_1 =
            decode_hex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f").unwrap();
        for p in [
            [0u8; 32],
            p1,
            order8.try_into().unwrap(),
            p_minus_1.try_into().unwrap(),
        ] {
            assert_eq!(
                a.derive_session(&p, &other, 0).unwrap_err(),
                CryptoError::WeakKey,
                "{}",
                encode_hex(&p)
            );
        }
    }

    #[test]
    fn first_send_counter_is_used() {
        let a = Identity::from_seed(b"a");
        let b = Identity::from_seed(b"b");
        let s = a.derive_session(b.public_key(), &b.id8(), 1 << 32).unwrap();
        assert_eq!(s.send_counter(), 1 << 32);
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let a = Identity::from_seed(b"a");
        let dbg = format!("{a:?}");
        assert!(dbg.contains(&a.id_hex()));
        assert!(!dbg.contains(&encode_hex(&a.secret_bytes())));
    }
}
