#!/usr/bin/env python3
"""Measures how a node's JSON DHT holds up against a hostile internet, from loopback.

Starts the node binary given as the first argument on 127.0.0.1 and talks to it from
several 127.0.0.x source addresses, which the node sees as different IPs:

- overwrite: 127.0.0.2 stores a key, 127.0.0.3 stores the same key; which value is served?
- fill: 127.0.0.2 fills a small store (--dht-max-values-bytes 100000), then 127.0.0.3 stores
  20 values; how many of them does the node serve?
- reflect: 20 verified nodes fill the node's table and one stores a large value; then a
  victim address sends FIND_NODE, FIND_VALUE, PING and STORE requests it never follows up
  (as an attacker spoofing it would) and never answers the node's PINGs. Bytes the victim
  received over bytes it "sent", per 10 s window and over the whole run, for a victim IP
  that never proved anything (fresh) and for another port of an IP whose first port proved
  itself (port).

Prints one JSON object. Sends only to 127.0.0.1; every loop is bounded in count and time.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import hashlib


def key_hash(key):
    return hashlib.sha1(key.encode()).hexdigest()


def node_id(label):
    return hashlib.sha1(("attack " + label).encode()).hexdigest()


class Node:
    """The node under test, in control mode on an ephemeral loopback port."""

    def __init__(self, binary, extra):
        cmd = [binary, "--udp-listen", "127.0.0.1:0", "--http-listen", "off",
               "--admin-listen", "off", "--control", "stdio", "--shards", "2", *extra]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            ev = json.loads(line)
            if ev.get("event") == "ready":
                self.addr = ("127.0.0.1", ev["port"])
                return
        raise SystemExit("the node did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Client:
    """A DHT client on its own source address; counts the bytes it sends and receives."""

    def __init__(self, ip, node, label):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.02)
        self.node = node
        self.id = node_id(label)
        self.sent = 0
        self.received = 0
        self.log = []  # (time, bytes sent, bytes received)

    def send(self, msg):
        data = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.sock.sendto(data, self.node.addr)
        self.sent += len(data)
        self.log.append((time.time(), len(data), 0))

    def collect(self, wait, answer_pings=False):
        got = []
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                data, _ = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            self.received += len(data)
            self.log.append((time.time(), 0, len(data)))
            try:
                msg = json.loads(data)
            except ValueError:
                continue
            got.append(msg)
            if answer_pings and msg.get("type") == 1:
                self.send({"type": 2, "from": self.id, "rpcId": msg.get("rpcId")})
        return got

    def prove(self):
        """PINGs the node and answers its PINGs until it has pinged us."""
        for attempt in range(10):
            self.send({"type": 1, "from": self.id, "rpcId": "%08x" % attempt})
            if any(m.get("type") == 1 for m in self.collect(0.3, answer_pings=True)):
                self.collect(0.1, answer_pings=True)
                return
        raise SystemExit("the node never pinged " + str(self.sock.getsockname()))

    def store(self, key, value):
        self.send({"type": 3, "from": self.id, "key": key_hash(key), "value": value})

    def find_value(self, key, rpc):
        self.send({"type": 6, "from": self.id, "key": key_hash(key), "rpcId": rpc})
        for msg in self.collect(0.3, answer_pings=True):
            if msg.get("rpcId") == rpc:
                return msg.get("value") if msg.get("type") == 7 else None
        return None


def overwrite(binary):
    node = Node(binary, [])
    try:
        a = Client("127.0.0.2", node, "a")
        b = Client("127.0.0.3", node, "b")
        a.prove()
        b.prove()
        a.store("contested", "from a")
        a.collect(0.2, answer_pings=True)
        b.store("contested", "from b")
        b.collect(0.2, answer_pings=True)
        served = a.find_value("contested", "0000aaaa")
        a.store("contested", "from a again")
        a.collect(0.2, answer_pings=True)
        refreshed = a.find_value("contested", "0000aaab")
        return {"served_after_other_ip_stored": served,
                "overwrite_by_other_ip": "succeeded" if served == "from b" else "refused",
                "owner_replaced": refreshed == "from a again"}
    finally:
        node.stop()


def fill(binary):
    node = Node(binary, ["--dht-max-values-bytes", "100000"])
    try:
        a = Client("127.0.0.2", node, "a")
        b = Client("127.0.0.3", node, "b")
        a.prove()
        value = "x" * 1000
        # Paced well under any per-IP STORE rate: 25/s.
        for i in range(150):
            a.store("a %d" % i, value)
            a.collect(0.04, answer_pings=True)
        kept_a = sum(a.find_value("a %d" % i, "%08x" % i) is not None for i in range(150))
        b.prove()
        for i in range(20):
            b.store("b %d" % i, value)
            b.collect(0.04, answer_pings=True)
        accepted_b = sum(b.find_value("b %d" % i, "%08x" % (1000 + i)) is not None
                         for i in range(20))
        kept_a_after = sum(a.find_value("a %d" % i, "%08x" % (2000 + i)) is not None
                           for i in range(150))
        return {"a_values_served_after_fill": kept_a, "b_stores_accepted_of_20": accepted_b,
                "a_values_served_after_b": kept_a_after}
    finally:
        node.stop()


def windows(log, width):
    """Worst received/sent ratio over windows of `width` seconds that start at each send."""
    worst = 0.0
    sends = [(t, n) for t, n, _ in log if n]
    for start, _ in sends:
        end = start + width
        sent = sum(n for t, n, _ in log if start <= t < end)
        got = sum(r for t, _, r in log if start <= t < end)
        if sent:
            worst = max(worst, got / sent)
    return round(worst, 3)


def reflect(binary, seconds):
    node = Node(binary, [])
    try:
        nodes = [Client("127.0.0.%d" % (10 + i), node, "node %d" % i) for i in range(20)]
        for n in nodes:
            n.prove()
        nodes[0].store("big", "v" * 1000)
        nodes[0].collect(0.2, answer_pings=True)
        results = {}
        for case in ("fresh", "port"):
            ip = "127.0.0.50" if case == "fresh" else "127.0.0.51"
            if case == "port":
                Client(ip, node, "victim proven").prove()
            victims = [Client(ip, node, "victim %d" % i) for i in range(4)]
            requests = [
                {"type": 4, "from": victims[0].id, "target": "0" * 40, "rpcId": "0badf00d"},
                {"type": 6, "from": victims[0].id, "key": key_hash("big"), "rpcId": "0badf00e"},
                {"type": 6, "from": victims[0].id, "key": key_hash("absent"), "rpcId": "1"},
                {"type": 1, "from": victims[0].id, "rpcId": "0badf00f"},
                {"type": 3, "from": victims[0].id, "key": key_hash("spoofed"), "value": "s"},
                b'{"type":4,"target":"0000000000000000000000000000000000000000"}',
                b'{"type":1}',
            ]
            deadline = time.time() + seconds
            i = 0
            # 20 requests/s from each of 4 ports, well under the node's per-IP limits.
            while time.time() < deadline and i < 100000:
                v = victims[i % len(victims)]
                v.send(requests[i % len(requests)])
                i += 1
                for w in victims:
                    w.collect(0.0125)
            for w in victims:
                w.collect(0.5)
            log = sorted(sum((w.log for w in victims), []))
            sent = sum(w.sent for w in victims)
            got = sum(w.received for w in victims)
            results[case] = {"requests": i, "bytes_sent_by_victim": sent,
                             "bytes_received_by_victim": got,
                             "ratio_total": round(got / sent, 3),
                             "worst_ratio_10s": windows(log, 10.0),
                             "worst_ratio_60s": windows(log, 60.0)}
        return results
    finally:
        node.stop()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("--seconds", type=float, default=12.0,
                        help="length of each reflection run (at most 120)")
    args = parser.parse_args()
    seconds = min(max(args.seconds, 1.0), 120.0)
    out = {"binary": os.path.abspath(args.binary), "overwrite": overwrite(args.binary),
           "fill": fill(args.binary), "reflect": reflect(args.binary, seconds)}
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
