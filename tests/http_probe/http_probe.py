#!/usr/bin/env python3
"""Probes a node's public HTTP listener the way an attacker and its victims would, with
Python's own clients (sockets and urllib), from chosen loopback source addresses.

Every subcommand prints one JSON object on stdout and exits 0 unless its arguments are
wrong; the caller (tests/http_hardening.rs, or a person measuring a build) judges the
figures. Everything is bounded in count and time, and only loopback targets are accepted.

  idle      --target IP:PORT --attacker SRC --victim SRC --count N [--settle S] [--hold S]
            N idle connections from SRC; S s later the victim's bootstrap and rendezvous.
  takeover  --target IP:PORT --owner SRC --thief SRC --observer SRC
            The thief re-announces the owner's id; what an observer is then told.
  evict     --target IP:PORT --legit SRC --legit-ids N --attack-net A.B.C --attack-ips N
            --ids-per-ip N --observer SRC
            Attackers fill the registry; how many legitimate ids the observer is shown.
  oversize  --target IP:PORT --bytes N --clients N [--path P] [--source SRC]
            N urllib clients POST N-byte bodies at once; how many read the 413.
  pipe      --target IP:PORT --path P --bytes N [--source SRC]
            One sender and one receiver (urllib) on a path: statuses, bytes, seconds.
"""

import argparse
import http.client
import ipaddress
import json
import os
import resource
import select
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

# Longest any single request may take.
REQUEST_TIMEOUT = 10.0


def loopback(text):
    ip = ipaddress.ip_address(text)
    if not ip.is_loopback:
        raise argparse.ArgumentTypeError(f"{text} is not a loopback address")
    return str(ip)


def target(text):
    host, _, port = text.rpartition(":")
    loopback(host)
    return host, int(port)


class SourceConnection(http.client.HTTPConnection):
    """An HTTPConnection from a chosen source address (urllib's handler for http://)."""

    source = None

    def __init__(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0) if self.source else None
        super().__init__(*args, **kwargs)


def opener(source):
    """A urllib opener whose connections leave from `source`, never through a proxy."""

    class Handler(urllib.request.HTTPHandler):
        def http_open(self, req):
            conn = type("Conn", (SourceConnection,), {"source": source})
            return self.do_open(conn, req)

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), Handler)


def request(source, url, data=None, method=None, timeout=REQUEST_TIMEOUT, headers=None):
    """(status, body, error): status 0 and the exception's name when no answer was read."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with opener(source).open(req, timeout=timeout) as resp:
            return resp.status, resp.read(), None
    except urllib.error.HTTPError as e:
        return e.code, e.read(), None
    except (OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        return 0, b"", type(reason).__name__


def announce(base, source, ident, ip, port, topic=None):
    fields = {"id": ident, "ip": ip, "port": port}
    if topic:
        fields["topic"] = topic
    body = json.dumps(fields).encode()
    status, reply, error = request(
        source, f"{base}/announce", body, headers={"Content-Type": "application/json"}
    )
    return {"status": status, "error": error, "reply": reply.decode(errors="replace")}


def listed(base, source, topic=None):
    query = f"&topic={topic}" if topic else ""
    status, body, error = request(source, f"{base}/peers?limit=1000{query}")
    if status != 200:
        return None, {"status": status, "error": error}
    return json.loads(body), None


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


def open_idle(addr, source, count, deadline, batch=100):
    """Opens up to `count` connections that send nothing; returns (open sockets, failed).
    They are opened `batch` at a time, each batch given time to be accepted: a burst beyond
    the server's accept backlog would leave connections the server never completes."""
    connected, failed = [], 0
    while len(connected) + failed < count and time.monotonic() < deadline:
        pending = []
        for _ in range(min(batch, count - len(connected) - failed)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.bind((source, 0))
                s.connect_ex(addr)
            except OSError:
                s.close()
                failed += 1
                continue
            pending.append(s)
        batch_deadline = min(deadline, time.monotonic() + 5)
        while pending and time.monotonic() < batch_deadline:
            poller = select.poll()
            by_fd = {s.fileno(): s for s in pending}
            for fd in by_fd:
                poller.register(fd, select.POLLOUT)
            for fd, _ in poller.poll(200):
                s = by_fd[fd]
                pending.remove(s)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    connected.append(s)
                else:
                    s.close()
                    failed += 1
        # Still in SYN_SENT: the server's backlog is full.
        failed += len(pending)
        for s in pending:
            s.close()
        time.sleep(0.05)
    return connected, failed


def closed_by_server(sockets):
    """How many of `sockets` the server has closed (EOF or reset)."""
    closed = 0
    for s in sockets:
        try:
            if s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


def pipe(base, source, path, payload, timeout=REQUEST_TIMEOUT):
    """A receiver waits on `path`, a sender posts `payload`; both with urllib."""
    got = {}

    def receive():
        got["status"], got["body"], got["error"] = request(
            source, f"{base}{path}", timeout=timeout
        )

    receiver = threading.Thread(target=receive)
    started = time.monotonic()
    receiver.start()
    time.sleep(0.3)
    sent_status, sent_body, sent_error = request(
        source, f"{base}{path}", payload, method="PUT", timeout=timeout
    )
    receiver.join(timeout + 1)
    return {
        "sender_status": sent_status,
        "sender_error": sent_error,
        "sender_reply": sent_body.decode(errors="replace")[-200:],
        "receiver_status": got.get("status", 0),
        "receiver_error": got.get("error", "no answer"),
        "received_bytes": len(got.get("body", b"")),
        "intact": got.get("body") == payload,
        "seconds": round(time.monotonic() - started, 3),
    }


def cmd_idle(args):
    raise_fd_limit(args.count + 256)
    base = f"http://{args.target[0]}:{args.target[1]}"
    started = time.monotonic()
    held, failed = open_idle(args.target, args.attacker, args.count, started + 60)
    # Give the server time to accept what it will accept.
    time.sleep(args.settle)
    refused_at_once = closed_by_server(held)
    t0 = time.monotonic()
    peers_status, _, peers_error = request(args.victim, f"{base}/peers", timeout=5)
    victim = {
        "peers_status": peers_status,
        "peers_error": peers_error,
        "peers_seconds": round(time.monotonic() - t0, 3),
        "announce": announce(base, args.victim, "ab" * 20, args.victim, 40001)["status"],
        "rendezvous": pipe(base, args.victim, "/p2p-0123456789ab-announce",
                           b'{"id":"probe"}', timeout=5),
    }
    time.sleep(max(0.0, args.hold - (time.monotonic() - started)))
    result = {
        "attacker_connected": len(held),
        "attacker_failed": failed,
        "attacker_closed_by_server_at_once": refused_at_once,
        "attacker_closed_by_server_after_hold": closed_by_server(held),
        "hold_seconds": round(time.monotonic() - started, 3),
        "victim": victim,
    }
    for s in held:
        s.close()
    return result


def entry_for(entries, ident):
    return next((e for e in entries or [] if e.get("id") == ident), None)


def cmd_takeover(args):
    base = f"http://{args.target[0]}:{args.target[1]}"
    ident = "cd" * 20
    owner = announce(base, args.owner, ident, args.owner, 41000)
    thief = announce(base, args.thief, ident, args.thief, 42000)
    entries, error = listed(base, args.observer)
    entry = entry_for(entries, ident)
    shown = f'{entry["ip"]}:{entry["port"]}' if entry else None
    return {
        "owner_status": owner["status"],
        "thief_status": thief["status"],
        "thief_reply": thief["reply"],
        "observer_sees": shown,
        "taken_over": shown == f"{args.thief}:42000",
        "list_error": error,
    }


def cmd_evict(args):
    base = f"http://{args.target[0]}:{args.target[1]}"
    legit_ids = [f"{n:040x}" for n in range(1, args.legit_ids + 1)]
    legit_ok = sum(
        announce(base, args.legit, i, args.legit, 30000 + n, "legit")["status"] == 200
        for n, i in enumerate(legit_ids)
    )
    counts = {"accepted": 0, "refused": 0, "failed": 0}
    lock = threading.Lock()
    started = time.monotonic()

    def attacker(k):
        source = f"{args.attack_net}.{k}"
        for n in range(args.ids_per_ip):
            ident = f"{0xFF:02x}{k:08x}{n:030x}"
            status = announce(base, source, ident, source, 20000 + n)["status"]
            key = "accepted" if status == 200 else "failed" if status == 0 else "refused"
            with lock:
                counts[key] += 1

    workers = [threading.Thread(target=attacker, args=(k,)) for k in range(1, args.attack_ips + 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    seconds = round(time.monotonic() - started, 3)
    # The legitimate ids carry a topic of their own, so the listing shows all of them.
    entries, error = listed(base, args.observer, "legit")
    listed_ids = {e.get("id") for e in entries or []}
    return {
        "legit_announced": legit_ok,
        "attack_requests": counts,
        "attack_seconds": seconds,
        "legit_still_listed": sum(i in listed_ids for i in legit_ids),
        "list_error": error,
    }


def cmd_oversize(args):
    base = f"http://{args.target[0]}:{args.target[1]}"
    body = b'{"pad":"' + b"x" * max(0, args.bytes - 10) + b'"}'
    outcomes = []
    lock = threading.Lock()

    def client():
        status, _, error = request(
            args.source, f"{base}{args.path}", body,
            headers={"Content-Type": "application/json"}, timeout=30,
        )
        with lock:
            outcomes.append(str(status) if status else error)

    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    tally = {}
    for o in outcomes:
        tally[o] = tally.get(o, 0) + 1
    return {
        "bytes": len(body),
        "clients": args.clients,
        "got_413": tally.get("413", 0),
        "outcomes": tally,
        "seconds": round(time.monotonic() - started, 3),
    }


def cmd_pipe(args):
    base = f"http://{args.target[0]}:{args.target[1]}"
    payload = os.urandom(args.bytes)
    return pipe(base, args.source, args.path, payload, timeout=args.timeout)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    idle = sub.add_parser("idle")
    idle.add_argument("--attacker", type=loopback, required=True)
    idle.add_argument("--victim", type=loopback, required=True)
    idle.add_argument("--count", type=int, required=True)
    idle.add_argument("--settle", type=float, default=3.0)
    idle.add_argument("--hold", type=float, default=0.0)

    takeover = sub.add_parser("takeover")
    for role in ("--owner", "--thief", "--observer"):
        takeover.add_argument(role, type=loopback, required=True)

    evict = sub.add_parser("evict")
    evict.add_argument("--legit", type=loopback, required=True)
    evict.add_argument("--legit-ids", type=int, default=20)
    evict.add_argument("--attack-net", default="127.0.1")
    evict.add_argument("--attack-ips", type=int, default=200)
    evict.add_argument("--ids-per-ip", type=int, default=20)
    # Who asks for the list at the end: a client of its own, not the announcers.
    evict.add_argument("--observer", type=loopback, required=True)

    oversize = sub.add_parser("oversize")
    oversize.add_argument("--bytes", type=int, required=True)
    oversize.add_argument("--clients", type=int, required=True)
    oversize.add_argument("--path", default="/announce")
    oversize.add_argument("--source", type=loopback, default="127.0.0.1")

    pipe_cmd = sub.add_parser("pipe")
    pipe_cmd.add_argument("--path", required=True)
    pipe_cmd.add_argument("--bytes", type=int, required=True)
    pipe_cmd.add_argument("--source", type=loopback, default="127.0.0.1")
    pipe_cmd.add_argument("--timeout", type=float, default=REQUEST_TIMEOUT)

    for sp in (idle, takeover, evict, oversize, pipe_cmd):
        sp.add_argument("--target", type=target, required=True)
    args = p.parse_args(argv)
    if args.cmd == "evict":
        loopback(f"{args.attack_net}.1")
    if min(getattr(args, n, 1) for n in ("count", "clients", "attack_ips", "ids_per_ip")) < 1:
        p.error("counts must be positive")
    if getattr(args, "count", 0) > 20000 or getattr(args, "clients", 0) > 200:
        p.error("counts are bounded: at most 20000 connections and 200 clients")
    run = {"idle": cmd_idle, "takeover": cmd_takeover, "evict": cmd_evict,
           "oversize": cmd_oversize, "pipe": cmd_pipe}[args.cmd]
    print(json.dumps(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
