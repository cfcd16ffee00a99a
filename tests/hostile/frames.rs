//! The frames the attacks send, built with the core crate's codec.

use std::net::SocketAddrV4;

use rand::RngCore;
use setowire_core::proto::frame::{
    encode_batch, encode_pex, Endpoint, Fragment, Frame, Handshake, PexEntry,
};
use setowire_core::proto::identity::{id8_of, peer_id_of, Id8, Identity, PeerId};

/// A HELLO from `identity`.
pub fn hello(identity: &Identity) -> Vec<u8> {
    encode(&Frame::Hello(Handshake {
        id8: identity.id8(),
        public_key: *identity.public_key(),
    }))
}

/// A HELLO with a fresh key nobody holds the secret of, and the id it claims: any 32 bytes
/// are an X25519 public key, so flooding handshakes costs the attacker a hash, and the node a
/// Diffie-Hellman.
pub fn hello_with_random_key(rng: &mut impl RngCore) -> (Vec<u8>, PeerId) {
    let mut public_key = [0u8; 32];
    rng.fill_bytes(&mut public_key);
    let id = peer_id_of(&public_key);
    let id8 = id8_of(&id);
    (encode(&Frame::Hello(Handshake { id8, public_key })), id)
}

/// A PING from the peer with this full id.
pub fn ping(id: &PeerId, timestamp_ms: u64) -> Vec<u8> {
    encode(&Frame::Ping {
        timestamp_ms,
        id: *id,
    })
}

/// The 2-byte GOAWAY the node itself sends.
pub fn goaway() -> Vec<u8> {
    encode(&Frame::Goaway)
}

pub fn want(key: &str) -> Vec<u8> {
    encode(&Frame::Want { key })
}

/// RELAY_REQ "introduce `from` to `to`", claiming `at` as the requester's address.
pub fn relay_req(from: Id8, to: Id8, at: SocketAddrV4) -> Vec<u8> {
    let ip = at.ip().to_string();
    encode(&Frame::RelayReq {
        from,
        to,
        endpoint: Endpoint {
            ip: &ip,
            port: at.port(),
        },
    })
}

/// PEX listing each `(id, address)`.
pub fn pex(entries: &[(Id8, SocketAddrV4)]) -> Vec<u8> {
    let ips: Vec<String> = entries.iter().map(|(_, a)| a.ip().to_string()).collect();
    let list = entries.iter().zip(&ips).map(|((id, addr), ip)| PexEntry {
        id: &id[..],
        endpoint: Endpoint {
            ip,
            port: addr.port(),
        },
    });
    let mut out = vec![0u8; 2048];
    let n = encode_pex(list, &mut out).expect("PEX encodes");
    out.truncate(n);
    out
}

/// The introduction py-setowire acts on, sent as a whole DATA plaintext.
pub fn gossip(id: Id8, at: SocketAddrV4) -> Vec<u8> {
    format!(
        "{{\"_gossip\":true,\"id\":\"{}\",\"ip\":\"{}\",\"port\":{}}}",
        hex::encode(id),
        at.ip(),
        at.port()
    )
    .into_bytes()
}

/// One FRAG piece.
pub fn frag(frag_id: [u8; 8], index: u16, total: u16, piece: &[u8]) -> Vec<u8> {
    encode(&Frame::Frag(Fragment {
        frag_id,
        index,
        total,
        piece,
    }))
}

/// A BATCH around already-encoded frames.
pub fn batch(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0u8; 65_536];
    let n = encode_batch(frames.iter().map(Vec::as_slice), &mut out).expect("BATCH encodes");
    out.truncate(n);
    out
}

/// A random id8, as an attacker makes up for peers that do not exist.
pub fn random_id8(rng: &mut impl RngCore) -> Id8 {
    let mut id = [0u8; 8];
    rng.fill_bytes(&mut id);
    id
}

fn encode(frame: &Frame<'_>) -> Vec<u8> {
    frame.to_vec().expect("the attack's frames encode")
}
