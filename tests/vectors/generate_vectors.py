#!/usr/bin/env python3
"""Generate Setowire conformance vectors from the reference implementation, py-setowire 0.1.0.

Usage (from the repository root, with py-setowire installed in that interpreter):

    /tmp/pyenv/bin/python tests/vectors/generate_vectors.py

Writes identity.json, session.json and frames.json next to this script (see README.md).

Every byte string in the output is produced by py-setowire itself: identities by its
``crypto.generate_x25519`` and ``swarm.Swarm``, session keys by ``crypto.derive_session``,
DATA frames by a real ``peer.Peer`` send path, and control frames by real ``swarm.Swarm``
objects whose UDP transport is replaced by a recorder. This script only sets up state,
captures what the library sends and annotates it with decoded fields (asserting that the
decoding agrees with what was driven in). Nothing on the wire is built here.

The output is deterministic: the clock, the fragment/STUN/DHT random ids and the local
addresses are pinned. Running the script twice gives identical files.
"""

import asyncio
import hashlib
import json
import os
import socket as real_socket
import struct
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))

# py-setowire installs its modules top-level; make sure nothing here shadows them.
sys.path = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != HERE]

import constants  # noqa: E402
import crypto  # noqa: E402
import dht_lib  # noqa: E402
import framing  # noqa: E402
import peer as peer_mod  # noqa: E402
import structs  # noqa: E402
import swarm as swarm_mod  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey  # noqa: E402

# ---------------------------------------------------------------------------------------
# Determinism: pin everything that is time- or randomness-dependent. None of these
# patches changes how py-setowire lays out bytes; they only fix the values it would
# otherwise draw from the clock or os.urandom.
# ---------------------------------------------------------------------------------------

CLOCK_MS = 1_000_000.0  # py-setowire's clock is time.monotonic() in ms, not wall time


def _fixed_now():
    return CLOCK_MS


for _m in (swarm_mod, peer_mod, structs):
    _m._now_ms = _fixed_now

swarm_mod._local_ip = lambda: "192.168.1.10"
swarm_mod.BLOOM_BITS = 1 << 16  # memory only: the Bloom filter never reaches the wire
swarm_mod.DRAIN_TIMEOUT = 0  # destroy() waits this long after sending GOAWAY


class _CountingRandom:
    """Deterministic stand-in for os.urandom: bytes 0x01, 0x02, ... per call site."""

    def __init__(self, start):
        self.next = start

    def urandom(self, n):
        out = bytes((self.next + i) & 0xFF for i in range(n))
        self.next += 0x10
        return out


def _os_with_urandom(start):
    shim = types.ModuleType("os_shim")
    shim.__dict__.update(os.__dict__)
    shim.urandom = _CountingRandom(start).urandom
    return shim


framing.os = _os_with_urandom(0xF0)  # FRAG ids
swarm_mod.os = _os_with_urandom(0x50)  # STUN transaction ids
dht_lib.os = _os_with_urandom(0xA0)  # DHT rpcIds


# ---------------------------------------------------------------------------------------
# A recording network
# ---------------------------------------------------------------------------------------


class Net:
    def __init__(self):
        self.log = []
        self.step = None

    def take(self, step=None, src=None, dst=None):
        step = step or self.step
        return [
            r
            for r in self.log
            if r["step"] == step
            and (src is None or r["src"] == src)
            and (dst is None or r["dst"] == dst)
        ]


class RecordingTransport:
    """Replaces the asyncio UDP transport: remembers every datagram, delivers nothing."""

    def __init__(self, net, addr):
        self.net = net
        self.addr = addr

    def sendto(self, data, addr):
        self.net.log.append(
            {"step": self.net.step, "src": self.addr, "dst": (addr[0], int(addr[1])), "data": bytes(data)}
        )

    def close(self):
        pass

    def get_extra_info(self, name, default=None):
        return self.addr if name == "sockname" else default

    def get_protocol(self):
        return None


def make_swarm(net, seed, ip, port):
    """A real Swarm whose socket setup is skipped and whose transport records."""
    s = swarm_mod.Swarm({"seed": seed})
    s._init_task.cancel()  # would bind real UDP sockets and start STUN/LAN/HTTP
    t = RecordingTransport(net, (ip, port))
    s._transport = t
    s._lip = ip
    s._lport = port
    s._batch = framing.BatchSender(t)
    s._ready_event.set()
    s.addr = (ip, port)
    return s


async def settle():
    """Let queued drains (call_soon) and the 2 ms batch flush run."""
    await asyncio.sleep(0.02)


def id8hex(s):
    return s._id[:16]


async def connect(net, dialer, target, step):
    """dialer sends HELLO; target answers HELLO_ACK; both register each other."""
    net.step = step
    dialer._send_hello(*target.addr)
    await settle()
    hello = net.take(src=dialer.addr, dst=target.addr)[-1]["data"]
    target._recv(hello, dialer.addr)
    await settle()
    ack = [r for r in net.take(src=target.addr, dst=dialer.addr) if r["data"][0] == 0xA2][-1]["data"]
    dialer._recv(ack, target.addr)
    await settle()
    return hello, ack


# ---------------------------------------------------------------------------------------
# Decoding (annotation only; asserted against the driven inputs)
# ---------------------------------------------------------------------------------------

NAMES = {
    0xA1: "HELLO", 0xA2: "HELLO_ACK", 0x01: "DATA", 0x03: "PING", 0x04: "PONG",
    0x07: "IHAVE", 0x09: "LAN", 0x0A: "GOAWAY", 0x0B: "FRAG", 0x10: "HAVE", 0x11: "WANT",
    0x12: "CHUNK", 0x13: "BATCH", 0x20: "RELAY_ANN", 0x21: "RELAY_REQ", 0x22: "RELAY_FWD",
    0x30: "PEX",
}


def blob(b):
    """Short byte strings as hex, long ones by length and digest (the frame hex has them)."""
    if len(b) <= 64:
        return {"hex": b.hex()}
    return {"len": len(b), "sha256": hashlib.sha256(b).hexdigest()}


class Reader:
    def __init__(self, buf, off=1):
        self.buf = buf
        self.off = off

    def take(self, n):
        out = self.buf[self.off:self.off + n]
        assert len(out) == n, "truncated frame"
        self.off += n
        return out

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def rest(self):
        out = self.buf[self.off:]
        self.off = len(self.buf)
        return out

    def done(self):
        assert self.off == len(self.buf), "trailing bytes"


def decode(buf):
    t = buf[0]
    name = NAMES.get(t)
    if buf[:1] == b"{":
        return {"type": "DHT", "json": json.loads(buf)}
    if len(buf) >= 8 and buf[0] == 0x00 and buf[4:8] == b"\x21\x12\xa4\x42":
        r = Reader(buf, 0)
        f = {"type": "STUN", "msg_type": r.u16(), "length": r.u16(), "cookie": r.take(4).hex(),
             "txid": r.take(12).hex()}
        r.done()
        return f
    f = {"type": name}
    r = Reader(buf)
    if t in (0xA1, 0xA2):
        f.update(id8=r.take(8).hex(), public=r.take(32).hex())
    elif t == 0x01:
        f.update(session_id=struct.unpack(">I", r.take(4))[0], counter=r.u64())
        f["ciphertext_len"] = len(r.rest()) - 16
    elif t == 0x03:
        f.update(timestamp_ms=r.u64(), id40=r.take(20).hex())
    elif t == 0x04:
        f.update(id40=r.take(20).hex())
    elif t == 0x07:
        body = r.rest()
        assert len(body) % 8 == 0
        f["hashes"] = [body[i:i + 8].hex() for i in range(0, len(body), 8)]
    elif t == 0x09:
        f["text"] = r.rest().decode()
        parts = f["text"].split(":")
        f.update(id40=parts[0], ip=parts[1], port=int(parts[2]), topic_hash=parts[3])
    elif t == 0x0A:
        pass
    elif t == 0x0B:
        f.update(frag_id=r.take(8).hex(), idx=r.u16(), total=r.u16(), piece=blob(r.rest()))
    elif t == 0x10:
        n = r.u8()
        f["keys"] = [r.take(r.u8()).decode() for _ in range(n)]
    elif t == 0x11:
        f["key"] = r.take(r.u8()).decode()
    elif t == 0x12:
        f["key"] = r.take(r.u8()).decode()
        vlen = r.u16()
        if vlen == 0xFFFF:
            f.update(large=True, idx=r.u16(), total=r.u16(), piece=blob(r.rest()))
        else:
            f.update(large=False, value=blob(r.take(vlen)))
    elif t == 0x13:
        n = r.u8()
        f["frames"] = []
        for _ in range(n):
            inner = r.take(r.u16())
            f["frames"].append({"len": len(inner), **decode(inner)})
    elif t == 0x20:
        f.update(id8=r.take(8).hex(), ip=r.take(r.u8()).decode(), port=r.u16())
    elif t == 0x21:
        f.update(from_id8=r.take(8).hex(), to_id8=r.take(8).hex(), ip=r.take(r.u8()).decode(), port=r.u16())
    elif t == 0x22:
        f.update(from_id8=r.take(8).hex(), ip=r.take(r.u8()).decode(), port=r.u16())
    elif t == 0x30:
        n = r.u8()
        f["peers"] = []
        for _ in range(n):
            pid = r.take(r.u8()).hex()
            ip = r.take(r.u8()).decode()
            f["peers"].append({"id": pid, "ip": ip, "port": r.u16()})
    else:
        raise AssertionError(f"unknown frame type 0x{t:02x}")
    r.done()
    return f


def entry(name, rec, note=None, **extra):
    e = {"name": name, "hex": rec["data"].hex(), "len": len(rec["data"]),
         "src": "%s:%d" % rec["src"], "dst": "%s:%d" % rec["dst"], "fields": decode(rec["data"])}
    if note:
        e["note"] = note
    e.update(extra)
    return e


def only(recs, what):
    assert len(recs) == 1, f"{what}: expected one datagram, got {len(recs)}"
    return recs[0]


# ---------------------------------------------------------------------------------------
# identity.json
# ---------------------------------------------------------------------------------------

IDENTITY_SEEDS = [
    b"",
    b"\x00",
    b"setowire-node test 1",
    bytes(range(32)),
    bytes.fromhex("ff" * 16),
    b"a much longer seed that is hashed all the same, " * 2,
]


async def gen_identity():
    net = Net()
    out = []
    for i, seed in enumerate(IDENTITY_SEEDS):
        kp = crypto.generate_x25519(seed)
        # A str seed is hex-decoded by py-setowire: feed half the cases that way.
        s = make_swarm(net, seed.hex() if i % 2 else seed, "10.9.0.1", 1000 + i)
        assert s._my_x25519["pub_raw"] == kp["pub_raw"]
        assert kp["private_key"].private_bytes_raw() == hashlib.sha256(seed).digest()
        out.append({
            "seed": seed.hex(),
            "secret": kp["private_key"].private_bytes_raw().hex(),
            "public": kp["pub_raw"].hex(),
            "id40": s._id,
            "id8": id8hex(s),
        })
    return {
        "source": "py-setowire 0.1.0 crypto.generate_x25519 / swarm.Swarm",
        "identities": out,
    }


# ---------------------------------------------------------------------------------------
# session.json
# ---------------------------------------------------------------------------------------

SESSION_PAIRS = [
    (b"alice", b"bob"),
    (b"setowire-node test 1", b"setowire-node test 2"),
    (bytes(range(32)), bytes(range(1, 33))),
    (b"relay-seed", b"client-seed"),
]

# (counter, seq, payload) sealed by each side of every pair.
# Counters only grow, so one receiving session can open a side's frames in order.
SEALS = [
    (0, 0, b"hello setowire"),
    (0x1_0000_0005, 41, bytes(range(64))),
]
BIG_SEAL = (0x1_0000_0006, 42, bytes((i * 7) & 0xFF for i in range(300)))

WEAK_PUBLICS = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
]


async def seal_via_peer(net, sender, receiver, counter, seq, payload, step):
    """Send `payload` through py-setowire's real Peer.write path with a chosen counter/seq."""
    p = sender._peers[id8hex(receiver)]
    p._session["send_ctr"] = counter
    p._send_seq = seq
    net.step = step
    assert p.write(payload)
    await settle()
    frame = only(net.take(src=sender.addr, dst=receiver.addr), step)["data"]
    back = receiver._peers[id8hex(sender)]
    plain = crypto.decrypt(back._session, frame[1:])
    assert plain == struct.pack(">I", seq) + payload, "receiver must open it"
    return {"from": None, "counter": counter, "seq": seq, "payload": payload.hex(), "frame": frame.hex()}


async def gen_session():
    pairs = []
    frames = []
    for n, (seed_a, seed_b) in enumerate(SESSION_PAIRS):
        net = Net()
        a = make_swarm(net, seed_a, "10.1.0.1", 20000 + 2 * n)
        b = make_swarm(net, seed_b, "10.1.0.2", 20001 + 2 * n)
        await connect(net, a, b, f"connect{n}")
        priv_a = a._my_x25519["private_key"]
        pub_b = b._my_x25519["pub_raw"]
        shared = priv_a.exchange(X25519PublicKey.from_public_bytes(pub_b))
        raw = crypto.derive_session(priv_a, pub_b)
        raw_b = crypto.derive_session(b._my_x25519["private_key"], a._my_x25519["pub_raw"])
        assert raw == raw_b
        sess_a = a._peers[id8hex(b)]._session
        lo = "a" if sess_a["send_key"] == raw["send_key"] else "b"
        assert (lo == "a") == (id8hex(a) < id8hex(b))
        for side, (snd, rcv) in (("a", (a, b)), ("b", (b, a))):
            seals = SEALS + ([BIG_SEAL] if n == 0 and side == "a" else [])
            for k, (ctr, seq, payload) in enumerate(seals):
                f = await seal_via_peer(net, snd, rcv, ctr, seq, payload, f"seal{n}{side}{k}")
                f["from"] = side
                frames.append({"pair": n, **f})
        pairs.append({
            "a_seed": seed_a.hex(), "b_seed": seed_b.hex(),
            "a_public": a._my_x25519["pub_raw"].hex(), "b_public": pub_b.hex(),
            "a_id40": a._id, "b_id40": b._id,
            "shared": shared.hex(),
            "k_lo": raw["send_key"].hex(), "k_hi": raw["recv_key"].hex(),
            "session_id": raw["session_id"],
            "lo": lo,
        })
    assert {p["lo"] for p in pairs} == {"a", "b"}, "cover both key directions"

    weak = []
    kp = crypto.generate_x25519(b"alice")
    for pub in WEAK_PUBLICS:
        try:
            crypto.derive_session(kp["private_key"], bytes.fromhex(pub))
            rejected = False
        except ValueError:
            rejected = True
        weak.append({"public": pub, "rejected": rejected})
    return {
        "source": "py-setowire 0.1.0 crypto.derive_session / peer.Peer._send_encrypted",
        "hkdf": {"hash": "SHA-256", "salt": "", "info": "p2p-v12-session", "length": 68},
        "pairs": pairs,
        "frames": frames,
        "weak_publics": {"private_seed": b"alice".hex(), "cases": weak},
    }


# ---------------------------------------------------------------------------------------
# frames.json
# ---------------------------------------------------------------------------------------


class FakeMcastSocket:
    """Stands in for the LAN multicast socket; sendto goes to the recorder."""

    def __init__(self, net, src):
        self.net = net
        self.src = src
        self._pair = real_socket.socketpair()

    def setsockopt(self, *a):
        pass

    def bind(self, *a):
        pass

    def setblocking(self, *a):
        pass

    def fileno(self):
        return self._pair[0].fileno()

    def recvfrom(self, n):
        raise BlockingIOError

    def sendto(self, data, addr):
        self.net.log.append({"step": self.net.step, "src": self.src, "dst": (addr[0], int(addr[1])),
                             "data": bytes(data)})


async def gen_frames():
    net = Net()
    out = []
    a = make_swarm(net, b"frames-a", "10.0.0.1", 40001)
    others = [make_swarm(net, f"frames-{c}".encode(), f"10.0.0.{i + 2}", 40002 + i)
              for i, c in enumerate("bcdefgh")]
    b, c, h = others[0], others[1], others[-1]

    # B holds a key before connecting, so it announces it (HAVE) on connect.
    b.store("remote-small", b"small value")
    b.store("remote-large", bytes((i * 13) & 0xFF for i in range(901)))

    hello, ack = await connect(net, a, b, "connect-b")
    hello_rec = net.take("connect-b", a.addr, b.addr)[0]
    out.append(entry("HELLO", hello_rec))
    ack_rec = [r for r in net.take("connect-b", b.addr, a.addr) if r["data"][0] == 0xA2][0]
    out.append(entry("HELLO_ACK", ack_rec))
    for e in out[-2:]:
        assert e["fields"]["public"] in (a._my_x25519["pub_raw"].hex(), b._my_x25519["pub_raw"].hex())
    have_rec = only([r for r in net.take("connect-b", b.addr, a.addr) if r["data"][0] == 0x10], "HAVE")
    out.append(entry("HAVE on connect", have_rec, note="summary of up to 64 stored keys, sent when a peer connects"))
    assert out[-1]["fields"]["keys"] == ["remote-small", "remote-large"]

    # C connects: A introduces C to B with a gossip DATA frame.
    await connect(net, a, c, "connect-c")
    g = only(net.take("connect-c", a.addr, b.addr), "gossip")
    plain = crypto.decrypt(b._peers[id8hex(a)]._session, g["data"][1:])
    seq, body = struct.unpack(">I", plain[:4])[0], plain[4:]
    gossip = json.loads(body)
    assert gossip == {"_gossip": True, "id": id8hex(c), "ip": c.addr[0], "port": c.addr[1]}
    out.append(entry(
        "DATA gossip", g,
        note="gossip goes through the normal DATA path, so it carries the seq prefix; "
             "py-setowire's receiver checks for '{' before stripping seq and so never recognises it",
        sender_seed=b"frames-a".hex(), receiver_seed=b"frames-b".hex(),
        decrypted={"plaintext": plain.hex(), "seq": seq, "json_text": body.decode(), "json": gossip},
    ))

    for i, o in enumerate(others[2:]):
        await connect(net, a, o, f"connect-{i}")
    assert [p.in_mesh for p in a.peers] == [True] * 6 + [False], "H is the only non-mesh peer"

    # B -> A DATA; A re-floods it and queues its hash for IHAVE.
    net.step = "b-data"
    b._peers[id8hex(a)].write(b"app message")
    await settle()
    d = only(net.take("b-data", b.addr, a.addr), "b-data")
    a._recv(d["data"], b.addr)
    await settle()
    flood = net.take("b-data", a.addr, c.addr)
    assert len(flood) == 1 and flood[0]["data"][0] == 0x01

    # One heartbeat tick: PING to every peer, IHAVE to non-mesh peers.
    net.step = "heartbeat"
    a._heartbeat()
    await asyncio.sleep(1.1)
    a._hb_handle.cancel()
    ping = only(net.take("heartbeat", a.addr, b.addr), "PING")
    out.append(entry("PING", ping, note="timestamp is py-setowire's monotonic clock in ms (pinned here), not Unix time"))
    assert out[-1]["fields"] == {"type": "PING", "timestamp_ms": int(CLOCK_MS), "id40": a._id}
    ihave = only([r for r in net.take("heartbeat", a.addr, h.addr) if r["data"][0] == 0x07], "IHAVE")
    b_plain = struct.pack(">I", 0) + b"app message"
    out.append(entry("IHAVE", ihave, note="hash = framing.xor_hash of the whole DATA plaintext, seq prefix included",
                     hashed_plaintext=b_plain.hex()))
    assert framing.xor_hash(b_plain) in json.dumps(out[-1]["fields"])

    net.step = "pong"
    b._recv(ping["data"], a.addr)
    await settle()
    out.append(entry("PONG", only(net.take("pong", b.addr, a.addr), "PONG")))
    assert out[-1]["fields"]["id40"] == b._id

    # HAVE after store(); two stores within 2 ms are coalesced into a BATCH.
    net.step = "store-one"
    a.store("greeting", b"hello")
    await settle()
    out.append(entry("HAVE after store", only(net.take("store-one", a.addr, b.addr), "HAVE")))
    net.step = "store-two"
    a.store("k1", b"v1")
    a.store("k2", b"v2")
    await settle()
    out.append(entry("BATCH of two HAVE", only(net.take("store-two", a.addr, b.addr), "BATCH")))
    assert [f["keys"] for f in out[-1]["fields"]["frames"]] == [["k1"], ["k2"]]

    # fetch() -> WANT -> CHUNK (small) ...
    net.step = "want-small"
    fetch = asyncio.ensure_future(a.fetch("remote-small"))
    await settle()
    want = only(net.take("want-small", a.addr, b.addr), "WANT")
    out.append(entry("WANT", want))
    net.step = "chunk-small"
    b._recv(want["data"], a.addr)
    await settle()
    chunk = only(net.take("chunk-small", b.addr, a.addr), "CHUNK")
    out.append(entry("CHUNK small", chunk))
    a._recv(chunk["data"], b.addr)
    assert await asyncio.wait_for(fetch, 1) == b"small value"

    # ... and a large value in 900-byte pieces, all sent at once (coalesced by the batcher).
    net.step = "want-large"
    fetch = asyncio.ensure_future(a.fetch("remote-large"))
    await settle()
    want = only(net.take("want-large", a.addr, b.addr), "WANT")
    net.step = "chunk-large"
    b._recv(want["data"], a.addr)
    await settle()
    recs = net.take("chunk-large", b.addr, a.addr)
    for r in recs:
        a._recv(r["data"], b.addr)
    assert await asyncio.wait_for(fetch, 1) == b._store.get("remote-large")
    out.append(entry("CHUNK large pieces in a BATCH", only(recs, "CHUNK large"),
                     note="value of 901 bytes: pieces of 900 and 1 byte"))

    # FRAG: a payload over 1200 bytes is split and sent in clear, without seq.
    net.step = "frag"
    big = bytes((i * 3) & 0xFF for i in range(1201))
    a._peers[id8hex(b)].write(big)
    await settle()
    recs = net.take("frag", a.addr, b.addr)
    for r in recs:
        b._recv(r["data"], a.addr)
    out.append(entry("FRAG pieces in a BATCH", only(recs, "FRAG"),
                     note="1201-byte payload: pieces of 1188 and 13 bytes, frag_id from os.urandom (pinned)",
                     payload_sha256=hashlib.sha256(big).hexdigest()))

    # PEX to B lists A's other peers.
    net.step = "pex"
    a._send_pex(a._peers[id8hex(b)])
    await settle()
    out.append(entry("PEX", only(net.take("pex", a.addr, b.addr), "PEX")))
    assert [p["id"] for p in out[-1]["fields"]["peers"]] == [id8hex(o) for o in others[1:]]

    # Relay: A becomes a relay and announces itself; H asks A to introduce it to B.
    a._is_relay = True
    a._ext = {"ip": "203.0.113.1", "port": 50001}
    net.step = "relay-ann"
    a._announce_relay()
    await settle()
    ann = only(net.take("relay-ann", a.addr, h.addr), "RELAY_ANN")
    out.append(entry("RELAY_ANN", ann))
    h._recv(ann["data"], a.addr)
    net.step = "relay-req"
    assert h._request_via_relay(id8hex(b))
    req = only(net.take("relay-req", h.addr), "RELAY_REQ")
    out.append(entry("RELAY_REQ", req, note="sent to the relay's announced address; carries the sender's local ip and port"))
    net.step = "relay-fwd"
    a._recv(req["data"], h.addr)
    await settle()
    out.append(entry("RELAY_FWD", only(net.take("relay-fwd", a.addr, b.addr), "RELAY_FWD")))

    # LAN multicast announcement after join().
    topic = b"setowire-vectors"
    await a.join(topic)
    net.step = "lan"
    mcast = FakeMcastSocket(net, (a._lip, constants.MCAST_PORT))
    swarm_mod.socket = types.SimpleNamespace(
        **{k: getattr(real_socket, k) for k in dir(real_socket) if k.isupper()},
        socket=lambda *args: mcast, inet_aton=real_socket.inet_aton,
    )
    a._init_lan()
    await asyncio.sleep(5.1)
    asyncio.get_event_loop().remove_reader(mcast.fileno())
    lan = [r for r in net.take("lan") if r["data"][0] == 0x09][0]
    swarm_mod.socket = real_socket
    out.append(entry("LAN", lan, topic_hex=topic.hex()))
    assert out[-1]["fields"]["topic_hash"] == a._topic_hash

    # STUN binding request (py-setowire 0.1.0 sends it but never reads the answer).
    net.step = "stun"
    await a._stun_probe({"host": "192.0.2.10", "port": 3478}, 0.01)
    out.append(entry("STUN binding request", only(net.take("stun"), "STUN")))

    # GOAWAY: what destroy() sends to each peer.
    net.step = "goaway"
    await a.destroy()
    out.append(entry("GOAWAY", only(net.take("goaway", a.addr, b.addr), "GOAWAY"),
                     note="1 byte; py-setowire itself drops datagrams shorter than 2 bytes"))

    dht = await gen_dht(net, a)
    return {"source": "py-setowire 0.1.0 swarm.Swarm / dht_lib.SimpleDHT with a recording transport",
            "nodes": {"a": {"seed": b"frames-a".hex(), "id40": a._id, "addr": "%s:%d" % a.addr},
                      **{ch: {"seed": f"frames-{ch}".encode().hex(), "id40": o._id,
                                          "addr": "%s:%d" % o.addr}
                         for ch, o in zip("bcdefgh", others)}},
            "frames": out, "dht": dht}


async def gen_dht(net, a):
    out = []
    d1 = dht_lib.SimpleDHT({"node_id": "11" * 20})
    d2 = dht_lib.SimpleDHT({"node_id": "22" * 20})
    d1._transport = RecordingTransport(net, ("10.0.0.1", 41001))
    d2._transport = RecordingTransport(net, ("10.0.0.2", 41002))

    def deliver(rec, to):
        to._on_message(json.loads(rec["data"]), rec["src"])

    d1.add_node({"id": d2.node_id, "ip": "10.0.0.2", "port": 41002})
    net.step = "dht-store"
    key = f"topic:{a._topic_hash}:{a._id}"
    d1.put(key, json.dumps(a._me()))
    store = only(net.take("dht-store"), "STORE")
    out.append(entry("DHT STORE", store, key_string=key))
    assert out[-1]["fields"]["json"]["key"] == hashlib.sha1(key.encode()).hexdigest()
    deliver(store, d2)

    net.step = "dht-find-node"
    task = asyncio.ensure_future(d1.bootstrap([]))
    await settle()
    find = only(net.take("dht-find-node"), "FIND_NODE")
    out.append(entry("DHT FIND_NODE", find))
    deliver(find, d2)
    found = only(net.take("dht-find-node", d2._transport.addr), "FOUND_NODE")
    out.append(entry("DHT FOUND_NODE", found))
    deliver(found, d1)
    await task

    net.step = "dht-find-value"
    task = asyncio.ensure_future(d1.find_value("some other key"))
    await settle()
    d2.storage[hashlib.sha1(b"some other key").hexdigest()] = "some value"
    fv = only(net.take("dht-find-value"), "FIND_VALUE")
    out.append(entry("DHT FIND_VALUE", fv))
    deliver(fv, d2)
    val = only(net.take("dht-find-value", d2._transport.addr), "FOUND_VAL")
    out.append(entry("DHT FOUND_VAL", val))
    deliver(val, d1)
    assert await task == "some value"

    # py-setowire never sends a DHT PING, but answers one.
    net.step = "dht-ping"
    d2._on_message({"type": 1, "from": d1.node_id, "rpcId": "0a0b0c0d"}, ("10.0.0.1", 41001))
    out.append(entry("DHT PONG", only(net.take("dht-ping"), "PONG"),
                     note='answer to {"type": 1, "from": "11...11", "rpcId": "0a0b0c0d"}'))
    return out


# ---------------------------------------------------------------------------------------


def write_json(name, obj):
    """One JSON value per line for the long lists, so diffs stay readable."""
    path = os.path.join(HERE, name)
    lines = ["{"]
    items = list(obj.items())
    for i, (k, v) in enumerate(items):
        sep = "," if i + 1 < len(items) else ""
        if isinstance(v, list):
            lines.append(f"{json.dumps(k)}: [")
            for j, item in enumerate(v):
                isep = "," if j + 1 < len(v) else ""
                lines.append(json.dumps(item, separators=(",", ":"), sort_keys=True) + isep)
            lines.append("]" + sep)
        else:
            lines.append(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'), sort_keys=True)}{sep}")
    lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path))  # must stay valid JSON
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


async def main():
    write_json("identity.json", await gen_identity())
    write_json("session.json", await gen_session())
    write_json("frames.json", await gen_frames())


if __name__ == "__main__":
    asyncio.run(main())
