"""Drive one py-setowire 0.1.0 `Swarm` over a JSON-lines control channel.

Commands arrive on stdin, one JSON object per line; events leave on stdout, one
JSON object per line, flushed each time. Everything else the process prints
(Python warnings, asyncio logging, tracebacks) goes to stderr.

The control protocol is shared with `setowire-node --control stdio`, so the Rust
test harness can drive both kinds of process the same way.

Events:
  {"event":"ready","id":"<id40>","port":<udp port>}
  {"event":"connection","peer":"<id8 hex>","addr":"ip:port"}
  {"event":"disconnect","peer":"<id8 hex>"}
  {"event":"data","peer":"<id8 hex>","hex":"<payload hex>"}
  {"event":"sync","key":"<key>","hex":"<value hex>"}
  {"event":"fetched","key":"k","hex":"..."} / {"event":"fetch_failed","key":"k","error":"..."}
  {"event":"peers","peers":[{"id":"<id8>","addr":"ip:port","in_mesh":bool}]}
  {"event":"error","message":"..."}

Commands:
  {"cmd":"dial","addr":"ip:port"}
  {"cmd":"broadcast","hex":"..."}
  {"cmd":"send","peer":"<id8 hex>","hex":"..."}       (to one connected peer)
  {"cmd":"store","key":"k","hex":"..."}
  {"cmd":"fetch","key":"k","timeout_ms":N}
  {"cmd":"peers"}
  {"cmd":"join","topic":"<hex>"}
  {"cmd":"send_raw","addr":"ip:port","hex":"..."}   (driver only: one raw datagram
                                                    from the swarm's own UDP socket)
  {"cmd":"quit"}                                    (EOF on stdin means the same)

The process never reaches outside the machine: STUN hosts, HTTP bootstrap hosts,
piping servers and hard-coded seeds are emptied before the swarm module is loaded,
the local-address guess is pinned to 127.0.0.1 (or --local-ip), HTTP proxies are ignored, the STUN
task is not started, and LAN multicast stays off unless --lan is given.
"""

import argparse
import asyncio
import json
import os
import sys
import threading
import traceback
import urllib.request


def _claim_stdout():
    """Keep the real stdout for events only; send fd 1 and sys.stdout to stderr."""
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "wb", buffering=0)


def _isolate_from_outside_world():
    import constants

    for name in ("STUN_HOSTS", "HARDCODED_HTTP_BOOTSTRAP", "PIPING_SERVERS", "HARDCODED_SEEDS"):
        getattr(constants, name).clear()

    # Only explicit --bootstrap-http URLs are ever fetched, and never via a proxy.
    urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))


def _parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", help="identity seed, hex")
    p.add_argument("--bootstrap-http", action="append", default=[], metavar="URL")
    p.add_argument("--max-peers", type=int)
    p.add_argument("--lan", action="store_true", help="enable LAN multicast discovery")
    p.add_argument("--local-ip", default="127.0.0.1",
                   help="the LAN address the swarm announces (inside a test's own namespace)")
    return p.parse_args(argv)


def _split_addr(addr):
    if not isinstance(addr, str) or ":" not in addr:
        raise ValueError(f"bad addr {addr!r}, want ip:port")
    ip, port_s = addr.rsplit(":", 1)
    port = int(port_s)
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {addr!r}")
    return ip, port


def _require(cmd, field, kind):
    if field not in cmd:
        raise ValueError(f"missing field {field!r}")
    value = cmd[field]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"field {field!r} has the wrong type")
    return value


class Driver:
    def __init__(self, args, out):
        self.args = args
        self.out = out
        self.loop = asyncio.get_running_loop()
        self.swarm = None
        self.quitting = False
        self.done = self.loop.create_future()

    def emit(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    async def start(self):
        import swarm as swarm_mod

        swarm_mod._local_ip = lambda: self.args.local_ip
        # With STUN_HOSTS empty, 0.1.0's STUN task dies at once on asyncio.wait([])
        # (and would log "Task exception was never retrieved"); skipping it is
        # equivalent: no STUN answer, so no 'nat' event, exactly as offline.
        swarm_mod.Swarm._stun_lazy = lambda self: None
        if not self.args.lan:
            swarm_mod.Swarm._init_lan = lambda self: None

        opts = {"bootstrap_http": list(self.args.bootstrap_http)}
        if self.args.seed is not None:
            opts["seed"] = self.args.seed
        if self.args.max_peers is not None:
            opts["max_peers"] = self.args.max_peers

        sw = swarm_mod.Swarm(opts)
        self.swarm = sw
        sw.on("connection", lambda peer: self.emit(
            {"event": "connection", "peer": peer.id, "addr": peer.remote_address}))
        sw.on("disconnect", lambda pid: self.emit({"event": "disconnect", "peer": pid}))
        sw.on("data", lambda data, peer: self.emit(
            {"event": "data", "peer": peer.id, "hex": bytes(data).hex()}))
        sw.on("sync", lambda key, value: self.emit(
            {"event": "sync", "key": key, "hex": bytes(value).hex()}))

        await sw._init_task
        self.emit({"event": "ready", "id": sw._id, "port": sw._lport})

    # -- stdin -------------------------------------------------------------

    def start_stdin_reader(self):
        def run():
            try:
                for line in sys.stdin.buffer:
                    self.loop.call_soon_threadsafe(self.on_line, line)
            finally:
                self.loop.call_soon_threadsafe(self.request_quit)

        threading.Thread(target=run, name="stdin-reader", daemon=True).start()

    def on_line(self, line):
        if self.quitting or not line.strip():
            return
        try:
            cmd = json.loads(line)
            if not isinstance(cmd, dict):
                raise ValueError("command must be a JSON object")
            self.dispatch(cmd)
        except Exception as exc:  # noqa: BLE001 - every bad command becomes an event
            self.emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})

    # -- commands ----------------------------------------------------------

    def dispatch(self, cmd):
        name = _require(cmd, "cmd", str)
        sw = self.swarm
        if name == "dial":
            ip, port = _split_addr(_require(cmd, "addr", str))
            sw._dial(ip, port, None, None, None)
        elif name == "broadcast":
            sw.broadcast(bytes.fromhex(_require(cmd, "hex", str)))
        elif name == "send":
            pid = _require(cmd, "peer", str)[:16]
            peer = sw._peers.get(pid)
            if peer is None or not peer.write(bytes.fromhex(_require(cmd, "hex", str))):
                raise ValueError(f"no such peer {pid!r}")
        elif name == "store":
            sw.store(_require(cmd, "key", str), bytes.fromhex(_require(cmd, "hex", str)))
        elif name == "fetch":
            key = _require(cmd, "key", str)
            timeout_ms = cmd.get("timeout_ms", 30_000)
            if not isinstance(timeout_ms, (int, float)) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
                raise ValueError("timeout_ms must be a positive number")
            self.loop.create_task(self.fetch(key, timeout_ms))
        elif name == "peers":
            self.emit({"event": "peers", "peers": [
                {"id": p.id, "addr": p.remote_address, "in_mesh": bool(p.in_mesh)}
                for p in sw.peers
            ]})
        elif name == "join":
            topic = bytes.fromhex(_require(cmd, "topic", str))
            self.loop.create_task(sw.join(topic))
        elif name == "send_raw":
            ip, port = _split_addr(_require(cmd, "addr", str))
            sw._transport.sendto(bytes.fromhex(_require(cmd, "hex", str)), (ip, port))
        elif name == "quit":
            self.request_quit()
        else:
            raise ValueError(f"unknown cmd {name!r}")

    async def fetch(self, key, timeout_ms):
        try:
            value = await self.swarm.fetch(key, timeout_ms)
        except Exception as exc:  # noqa: BLE001
            self.emit({"event": "fetch_failed", "key": key, "error": f"{type(exc).__name__}: {exc}"})
        else:
            self.emit({"event": "fetched", "key": key, "hex": bytes(value).hex()})

    def request_quit(self):
        if self.quitting:
            return
        self.quitting = True
        self.loop.create_task(self.quit())

    async def quit(self):
        try:
            if self.swarm is not None:
                await self.swarm.destroy()
        finally:
            if not self.done.done():
                self.done.set_result(None)


async def _amain(args, out):
    driver = Driver(args, out)
    await driver.start()
    driver.start_stdin_reader()
    await driver.done


def main():
    args = _parse_args(sys.argv[1:])
    out = _claim_stdout()
    _isolate_from_outside_world()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    code = 0
    try:
        loop.run_until_complete(_amain(args, out))
    except BaseException:  # noqa: BLE001 - report, then exit non-zero
        traceback.print_exc()
        code = 1
    # Leave without joining executor threads (a bootstrap HTTP request may still
    # be pending); every event has already been written unbuffered.
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
