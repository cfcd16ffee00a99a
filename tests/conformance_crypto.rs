//! Checks the identity and session layer against vectors produced by py-setowire 0.1.0
//! (tests/vectors/identity.json and session.json, see tests/vectors/README.md).

use serde_json::Value;
use setowire_core::proto::identity::{peer_id_of, CryptoError, Identity};
use setowire_core::proto::session::{
    derive_session_keys, Session, DATA_HEADER_LEN, DATA_OVERHEAD, NONCE_LEN,
};
use x25519_dalek::{PublicKey, StaticSecret};

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr32(v: &Value) -> [u8; 32] {
    bytes(v).try_into().expect("32 bytes")
}

fn seal(session: &mut Session, plaintext: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; plaintext.len() + DATA_OVERHEAD];
    frame[DATA_HEADER_LEN..DATA_HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
    session.seal_data(&mut frame).expect("seal");
    frame
}

#[test]
fn identities_match_py_setowire() {
    let v = load("identity.json");
    let ids = v["identities"].as_array().unwrap();
    assert!(ids.len() >= 4);
    for case in ids {
        let seed = bytes(&case["seed"]);
        let me = Identity::from_seed(&seed);
        assert_eq!(
            hex::encode(me.secret_bytes()),
            case["secret"],
            "secret of seed {seed:02x?}"
        );
        assert_eq!(
            hex::encode(me.public_key()),
            case["public"],
            "public of seed {seed:02x?}"
        );
        assert_eq!(me.id_hex(), case["id40"]);
        assert_eq!(hex::encode(me.id8()), case["id8"]);
        assert_eq!(me.id(), &peer_id_of(me.public_key()));
        // The hex-string form of the seed is what py-setowire does with a str seed.
        let from_hex = Identity::from_seed_hex(case["seed"].as_str().unwrap()).unwrap();
        assert_eq!(from_hex.id(), me.id());
        // Persisting and reloading the secret keeps the identity.
        assert_eq!(Identity::from_secret(me.secret_bytes()).id(), me.id());
    }
}

#[test]
fn session_keys_and_direction_match_py_setowire() {
    let v = load("session.json");
    let pairs = v["pairs"].as_array().unwrap();
    let mut seen_lo = [false; 2];
    for p in pairs {
        let a = Identity::from_seed(&bytes(&p["a_seed"]));
        let b = Identity::from_seed(&bytes(&p["b_seed"]));
        assert_eq!(hex::encode(a.public_key()), p["a_public"]);
        assert_eq!(hex::encode(b.public_key()), p["b_public"]);
        assert_eq!(a.id_hex(), p["a_id40"]);
        assert_eq!(b.id_hex(), p["b_id40"]);

        let shared = StaticSecret::from(a.secret_bytes())
            .diffie_hellman(&PublicKey::from(*b.public_key()))
            .to_bytes();
        assert_eq!(hex::encode(shared), p["shared"]);
        let keys = derive_session_keys(&shared);
        assert_eq!(hex::encode(keys.k_lo), p["k_lo"]);
        assert_eq!(hex::encode(keys.k_hi), p["k_hi"]);
        assert_eq!(
            u64::from(keys.session_id),
            p["session_id"].as_u64().unwrap()
        );

        let a_is_lo = a.id8() < b.id8();
        assert_eq!(if a_is_lo { "a" } else { "b" }, p["lo"]);
        // id8 byte order is the same as py-setowire's hex-string order.
        assert_eq!(a_is_lo, a.id_hex()[..16] < b.id_hex()[..16]);
        seen_lo[usize::from(a_is_lo)] = true;

        let sa = a.derive_session(b.public_key(), &b.id8(), 0).unwrap();
        let sb = b.derive_session(a.public_key(), &a.id8(), 0).unwrap();
        assert_eq!(sa.session_id(), keys.session_id);
        assert_eq!(sb.session_id(), keys.session_id);
    }
    assert_eq!(seen_lo, [true, true], "vectors cover both key directions");
}

#[test]
fn python_sealed_frames_open_and_reseal_identically() {
    let v = load("session.json");
    let pairs = v["pairs"].as_array().unwrap();
    let idents: Vec<(Identity, Identity)> = pairs
        .iter()
        .map(|p| {
            (
                Identity::from_seed(&bytes(&p["a_seed"])),
                Identity::from_seed(&bytes(&p["b_seed"])),
            )
        })
        .collect();
    // One receiving session per (pair, direction), fed in file order: counters only grow.
    let mut receivers: Vec<[Session; 2]> = idents
        .iter()
        .map(|(a, b)| {
            [
                b.derive_session(a.public_key(), &a.id8(), 0).unwrap(), // receives from a
                a.derive_session(b.public_key(), &b.id8(), 0).unwrap(), // receives from b
            ]
        })
        .collect();

    let frames = v["frames"].as_array().unwrap();
    assert!(frames.len() >= 8);
    for f in frames {
        let pair = f["pair"].as_u64().unwrap() as usize;
        let from_a = f["from"] == "a";
        let (a, b) = &idents[pair];
        let (sender, receiver) = if from_a { (a, b) } else { (b, a) };
        let counter = f["counter"].as_u64().unwrap();
        let seq = u32::try_from(f["seq"].as_u64().unwrap()).unwrap();
        let frame = bytes(&f["frame"]);
        let mut plaintext = seq.to_be_bytes().to_vec();
        plaintext.extend_from_slice(&bytes(&f["payload"]));

        // Open with our session.
        let rx = &mut receivers[pair][usize::from(!from_a)];
        assert_eq!(frame[0], 0x01);
        let mut out = vec![0u8; frame.len()];
        let n = rx
            .open_data(&frame[1..], &mut out)
            .expect("python frame opens");
        assert_eq!(&out[..n], &plaintext[..], "pair {pair} counter {counter}");
        // And it is now a replay.
        assert_eq!(
            rx.open_data(&frame[1..], &mut out),
            Err(CryptoError::Replay)
        );

        // The in-place variant on a fresh session gives the same plaintext.
        let mut fresh = receiver
            .derive_session(sender.public_key(), &sender.id8(), 0)
            .unwrap();
        let mut copy = frame.clone();
        let n = fresh.open_data_in_place(&mut copy[1..]).unwrap();
        assert_eq!(&copy[1 + NONCE_LEN..1 + NONCE_LEN + n], &plaintext[..]);

        // Sealing the same plaintext with the same counter gives the same bytes.
        let mut tx = sender
            .derive_session(receiver.public_key(), &receiver.id8(), counter)
            .unwrap();
        assert_eq!(hex::encode(seal(&mut tx, &plaintext)), f["frame"]);
        assert_eq!(tx.send_counter(), counter + 1);
    }
}

#[test]
fn weak_public_keys_are_refused_like_py_setowire() {
    let v = load("session.json");
    let me = Identity::from_seed(&bytes(&v["weak_publics"]["private_seed"]));
    let cases = v["weak_publics"]["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for c in cases {
        let public = arr32(&c["public"]);
        let ours = me.derive_session(&public, &[0xEE; 8], 0);
        if c["rejected"].as_bool().unwrap() {
            assert_eq!(ours.unwrap_err(), CryptoError::WeakKey, "{}", c["public"]);
        } else {
            assert!(ours.is_ok(), "{}", c["public"]);
        }
    }
}
