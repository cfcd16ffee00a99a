//! Python <-> Python checks of the interop harness: real py-setowire 0.1.0 peers,
//! driven through `tests/interop/setowire_driver.py`, each test in its own
//! network namespace (as root). These pin down the baseline's observable
//! behaviour that the node has to interoperate with.

mod support;

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::net::TestNet;
use support::peer::{connect, PeerInfo, PyPeer};
use support::{ev_hex, is_event, pattern_bytes, TIMEOUT};

#[track_caller]
fn assert_bytes_eq(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got
            .iter()
            .zip(want)
            .position(|(g, w)| g != w)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: got {} bytes, want {} bytes, first difference at offset {first_diff}",
            got.len(),
            want.len()
        );
    }
}

/// A namespace with two py-setowire peers, `a` having dialled `b`, both connected.
fn connected_pair() -> (TestNet, PyPeer, PyPeer) {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &[]);
    let mut b = PyPeer::spawn(&net, &[]);
    connect(&mut a, &mut b);
    (net, a, b)
}

#[test]
fn two_peers_connect() {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &[]);
    let mut b = PyPeer::spawn(&net, &[]);

    let (on_a, on_b) = connect(&mut a, &mut b);
    assert_eq!(on_a["addr"], b.addr().as_str());
    assert_eq!(on_b["addr"], a.addr().as_str());

    let expect_b = PeerInfo {
        id: b.id8.clone(),
        addr: b.addr(),
        in_mesh: true,
        shard: None,
    };
    let expect_a = PeerInfo {
        id: a.id8.clone(),
        addr: a.addr(),
        in_mesh: true,
        shard: None,
    };
    assert_eq!(a.peers(), vec![expect_b]);
    assert_eq!(b.peers(), vec![expect_a]);

    // The dialer sends HELLO 8 times, 300 ms apart, whatever the answers; every
    // HELLO is answered with HELLO_ACK, and the repeats only refresh the peer:
    // there is exactly one connection event on each side.
    a.assert_no_event(Duration::from_millis(2600), |e| is_event(e, "connection"));
    b.assert_no_event(Duration::ZERO, |e| is_event(e, "connection"));

    // Dialing an already-connected peer again is harmless on both sides.
    let b_addr = b.addr();
    a.dial(&b_addr);
    a.assert_no_event(Duration::from_millis(1000), |e| {
        is_event(e, "connection") || is_event(e, "disconnect")
    });
    b.assert_no_event(Duration::ZERO, |e| {
        is_event(e, "connection") || is_event(e, "disconnect")
    });
}

#[test]
fn seeded_identity_matches_the_spec() {
    // private = SHA-256(seed bytes); id = SHA-256(X25519 public key)[..20].
    let seed_hex = "000102030405060708090a0b0c0d0e0f";
    let private: [u8; 32] = Sha256::digest(hex::decode(seed_hex).unwrap()).into();
    let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(private));
    let id40 = hex::encode(&Sha256::digest(public.as_bytes())[..20]);

    let net = TestNet::new();
    let a = PyPeer::spawn(&net, &["--seed", seed_hex]);
    assert_eq!(a.id40, id40);
    assert_eq!(a.id8, id40[..16]);
}

#[test]
fn small_broadcast_arrives_as_data() {
    let (_net, mut a, mut b) = connected_pair();

    a.broadcast(b"hello from a");
    assert_eq!(b.wait_data_from(&a.id8), b"hello from a");
    b.broadcast(b"hello from b");
    assert_eq!(a.wait_data_from(&b.id8), b"hello from b");

    // Unicast to one peer takes the same path.
    a.send_to(&b.id8, b"unicast to b");
    assert_eq!(b.wait_data_from(&a.id8), b"unicast to b");
    a.send_to("0000000000000000", b"nobody");
    a.wait_event(TIMEOUT, |e| is_event(e, "error"));

    // An empty payload is delivered too (the plaintext is just the 4-byte seq).
    a.broadcast(b"");
    assert_eq!(b.wait_data_from(&a.id8), b"");

    // JSON-looking application payloads are plain data: the sender puts its seq
    // in front, so the receiver's `{` check never sees them.
    let json = br#"{"_gossip": true, "id": "0011223344556677", "ip": "127.0.0.1", "port": 9}"#;
    a.broadcast(json);
    assert_eq!(b.wait_data_from(&a.id8), json);
    b.assert_no_event(Duration::from_millis(500), |e| is_event(e, "connection"));
}

#[test]
fn identical_payloads_are_delivered_once() {
    let (_net, mut a, mut b) = connected_pair();

    // The receiver de-duplicates by payload content (Bloom filter, 5 min), not
    // by seq: the second copy is dropped. Delivery is in seq order, so once
    // "end" is in, the duplicate would have been too.
    a.broadcast(b"same");
    a.broadcast(b"same");
    a.broadcast(b"end");
    assert_eq!(b.wait_data_from(&a.id8), b"same");
    assert_eq!(b.wait_data_from(&a.id8), b"end");
    b.assert_no_event(Duration::from_millis(300), |e| is_event(e, "data"));
}

#[test]
fn fragmented_payloads_arrive_intact() {
    let (_net, mut a, mut b) = connected_pair();

    // 1200 is the largest unfragmented payload; above it the baseline sends
    // cleartext FRAG pieces of <= 1188 bytes (no seq, so no ordering with DATA).
    let sizes = [1200usize, 1201, 2376, 2377, 9000, 60_000];
    let payloads: Vec<Vec<u8>> = sizes.iter().map(|&n| pattern_bytes(n as u64, n)).collect();
    for p in &payloads {
        a.broadcast(p);
    }
    let mut got: Vec<Vec<u8>> = (0..payloads.len())
        .map(|_| b.wait_data_from(&a.id8))
        .collect();
    got.sort_by_key(|p| p.len());
    for (g, w) in got.iter().zip(&payloads) {
        assert_bytes_eq(g, w, &format!("{}-byte payload", w.len()));
    }
    b.assert_no_event(Duration::from_millis(300), |e| is_event(e, "data"));
}

#[test]
fn store_then_fetch() {
    let (_net, mut a, mut b) = connected_pair();

    let small = b"small value".to_vec();
    let big = pattern_bytes(9000, 9000); // 10 CHUNK pieces of <= 900 bytes
    a.store("k-small", &small);
    a.store("k-big", &big);
    // The storer answers its own fetch from the local store.
    assert_eq!(a.fetch("k-small", 1000).unwrap(), small);

    assert_eq!(b.fetch("k-small", 5000).unwrap(), small);
    assert_bytes_eq(&b.fetch("k-big", 5000).unwrap(), &big, "k-big");
    // The fetcher also reports each value it received as `sync`.
    assert_eq!(b.wait_sync("k-small"), small);
    assert_bytes_eq(&b.wait_sync("k-big"), &big, "k-big sync");

    // A key nobody has: fetch fails after its timeout.
    let t = Instant::now();
    let err = b.fetch("k-missing", 500).unwrap_err();
    assert!(err.contains("timeout"), "unexpected error {err:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "failed too early"
    );

    // A fetch waiting when the key is stored elsewhere: store() sends HAVE to
    // mesh peers, and a HAVE for a pending key triggers a new WANT.
    b.send(&serde_json::json!({"cmd": "fetch", "key": "k-late", "timeout_ms": 10_000}));
    std::thread::sleep(Duration::from_millis(300));
    a.store("k-late", b"late value");
    let ev = b.wait_event(TIMEOUT, |e| {
        (is_event(e, "fetched") || is_event(e, "fetch_failed")) && e["key"] == "k-late"
    });
    assert!(is_event(&ev, "fetched"), "{ev}");
    assert_eq!(ev_hex(&ev, "hex"), b"late value");
}

#[test]
fn quit_sends_a_goaway_the_baseline_ignores() {
    let (_net, mut a, mut b) = connected_pair();

    // destroy() sends a 1-byte GOAWAY, then lingers 2 s (DRAIN_TIMEOUT) before
    // closing its socket.
    let t = Instant::now();
    assert!(b.quit().success());
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "quit took {took:?}"
    );

    // Receivers drop every datagram shorter than 2 bytes, so that GOAWAY is
    // lost: `a` only notices through its 60 s silence timeout (checked by the
    // slow test below). Assert the fast part:
    // no disconnect for a while, and `b` still listed.
    a.assert_no_event(Duration::from_secs(4), |e| is_event(e, "disconnect"));
    assert!(a.peers().iter().any(|p| p.id == b.id8));
}

#[test]
fn stdin_eof_quits_and_bad_commands_are_reported() {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &[]);
    for bad in [
        "this is not json",
        "[1, 2]",
        r#"{"no_cmd": 1}"#,
        r#"{"cmd": "no-such-command"}"#,
        r#"{"cmd": "broadcast", "hex": "zz"}"#,
        r#"{"cmd": "dial", "addr": "127.0.0.1"}"#,
    ] {
        a.send_line(bad);
        let ev = a.wait_event(TIMEOUT, |e| is_event(e, "error"));
        assert!(ev["message"].is_string(), "{bad}: {ev}");
    }
    a.close_stdin();
    assert!(a.wait_exit(TIMEOUT).success());
}

#[test]
fn two_byte_goaway_drops_the_peer_at_once() {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &[]);
    let mut b = PyPeer::spawn(&net, &[]);
    let dialed = Instant::now();
    connect(&mut a, &mut b);
    // The dialer keeps sending HELLO for 2.1 s after dialing, and a HELLO from
    // a peer that was just dropped registers it again as new: let the punch
    // window end first, or the GOAWAY below may be undone.
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(dialed.elapsed()));

    // Sent from a's own socket, so b attributes it to a by source address.
    let b_addr = b.addr();
    a.send_raw(&b_addr, &[0x0A]);
    b.assert_no_event(Duration::from_millis(1500), |e| is_event(e, "disconnect"));
    a.send_raw(&b_addr, &[0x0A, 0x00]);
    b.wait_disconnect(&a.id8);
    assert!(b.peers().is_empty());

    // The drop is one-sided: a still lists b (b keeps answering a's PINGs, which
    // keeps it alive), and a's DATA to b is now ignored.
    assert!(a.peers().iter().any(|p| p.id == b.id8));
    a.broadcast(b"after goaway");
    b.assert_no_event(Duration::from_millis(1000), |e| is_event(e, "data"));

    // Dialing again re-establishes b's side only (a never lost b). A dial to an
    // address is ignored while an earlier dial to it is still "in progress",
    // which for a dial without a known id lasts 5.4 s (8 x 300 ms + 3 s).
    std::thread::sleep(Duration::from_millis(5600).saturating_sub(dialed.elapsed()));
    a.dial(&b_addr);
    b.wait_connection(&a.id8);
    a.assert_no_event(Duration::from_millis(500), |e| is_event(e, "connection"));
}

#[test]
// Takes over a minute (the baseline's 60 s peer timeout); other tests run beside it.
fn silent_peer_times_out_after_a_minute() {
    let (_net, mut a, mut b) = connected_pair();
    let t = Instant::now();
    assert!(b.quit().success());
    let ev = a.wait_event(Duration::from_secs(90), |e| is_event(e, "disconnect"));
    assert_eq!(ev["peer"], b.id8.as_str());
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(55), "disconnect after {took:?}");
}

#[test]
fn send_window_opens_only_on_return_traffic() {
    let (_net, mut a, mut b) = connected_pair();

    // The congestion window starts at 16 DATA frames in flight; only DATA or a
    // PONG from the receiver acknowledges one (and grows the window by one).
    // PONGs come once a second, so without return traffic a burst stalls after
    // ~16 and then trickles at ~2 frames per second.
    let sent: Vec<Vec<u8>> = (0..30).map(|i| format!("w{i:02}").into_bytes()).collect();
    for p in &sent {
        a.broadcast(p);
    }
    let first = b.wait_data_from(&a.id8);
    std::thread::sleep(Duration::from_millis(400));
    let burst = b
        .events_so_far()
        .iter()
        .filter(|e| is_event(e, "data"))
        .count();
    assert!(
        (16..=22).contains(&burst),
        "expected the first burst to stop near 16, got {burst}"
    );

    // DATA flowing back acknowledges one frame each and lets the rest through.
    for i in 0..16 {
        b.broadcast(format!("r{i:02}").as_bytes());
    }
    let t = Instant::now();
    let mut got = vec![first];
    while got.len() < sent.len() {
        got.push(b.wait_data_from(&a.id8));
    }
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "the window did not open on return traffic ({:?})",
        t.elapsed()
    );
    // In order: delivery follows seq.
    assert_eq!(got, sent);
}

#[test]
fn gossip_surfaces_as_data_and_introduces_nobody() {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &[]);
    let mut b = PyPeer::spawn(&net, &[]);
    let mut c = PyPeer::spawn(&net, &[]);
    connect(&mut a, &mut b);
    connect(&mut c, &mut b);

    // b tells its other peers about c with a DATA payload
    // {"_gossip": true, "id": <c id8>, "ip": ..., "port": ...}. It goes through
    // the normal send path (seq first), so a's `{` check misses it: a surfaces
    // it as application data and does not dial c.
    let raw = a.wait_data_from(&b.id8);
    let gossip: serde_json::Value = serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&raw)));
    assert_eq!(gossip["_gossip"], true);
    assert_eq!(gossip["id"], c.id8.as_str());
    assert_eq!(gossip["ip"], "127.0.0.1");
    assert_eq!(gossip["port"], c.port);
    a.assert_no_event(Duration::from_millis(2500), |e| is_event(e, "connection"));
    c.assert_no_event(Duration::ZERO, |e| {
        is_event(e, "connection") && e["peer"] == a.id8.as_str()
    });
}

#[test]
fn a_full_peer_still_answers_hello() {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &["--max-peers", "1"]);
    let mut b = PyPeer::spawn(&net, &[]);
    let mut c = PyPeer::spawn(&net, &[]);
    connect(&mut b, &mut a);

    // a is full, but it sends HELLO_ACK before checking: c believes it is
    // connected while a never registers c and ignores c's DATA.
    let a_addr = a.addr();
    c.dial(&a_addr);
    c.wait_connection(&a.id8);
    c.broadcast(b"from c");
    a.assert_no_event(Duration::from_millis(1500), |e| {
        is_event(e, "data") || (is_event(e, "connection") && e["peer"] == c.id8.as_str())
    });
    assert_eq!(a.peers().len(), 1);
}

#[test]
fn dialing_its_own_address_connects_to_itself() {
    let net = TestNet::new();
    let mut a = PyPeer::spawn(&net, &[]);

    // The "is this me?" checks compare the 16-hex id8 from the wire with the
    // 40-hex own id, so they never match: a peer handed its own address (by
    // HTTP bootstrap, PEX, a dial) registers itself. The self-session has its
    // send and receive keys swapped, so nothing it sends itself is delivered,
    // and answering its own PINGs keeps the entry alive.
    let own = a.addr();
    a.dial(&own);
    let me = a.id8.clone();
    let ev = a.wait_connection(&me);
    assert_eq!(ev["addr"], own.as_str());
    assert_eq!(a.peers().len(), 1);
    a.broadcast(b"to myself");
    a.assert_no_event(Duration::from_millis(800), |e| is_event(e, "data"));
}
