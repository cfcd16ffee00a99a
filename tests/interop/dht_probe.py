"""Drive one py-setowire 0.1.0 `SimpleDHT` (module `dht_lib`) over JSON lines.

Commands arrive on stdin, one JSON object per line; events leave on stdout, one JSON
object per line. Everything else goes to stderr. Used by the node's DHT tests, which talk
to the node only through this real client.

Events:
  {"event":"ready","id":"<node id, 40 hex>","port":<udp port>}
  {"event":"pong","id":"<responder id>"}                  (ping)
  {"event":"bootstrapped","table":[{"id","ip","port"}]}   (bootstrap)
  {"event":"stored","hash":"<key hash>"}                   (put)
  {"event":"value","key":"k","value":<value or null>}      (find_value)
  {"event":"reply","reply":{...}|null,"keys":[...]}        (rpc; null on timeout)
  {"event":"table","table":[...]} / {"event":"storage","storage":{...}}
  {"event":"error","message":"..."}

Commands:
  {"cmd":"ping","addr":"ip:port"}       PING through the DHT's own RPC (the answer adds the
                                        responder to the routing table, as any message does)
  {"cmd":"bootstrap","addrs":[...]}     add_node for each {"id","ip","port"}, then bootstrap()
  {"cmd":"put","key":"k","value":v}     put(): STORE to the K closest nodes it knows
  {"cmd":"find_value","key":"k"}        find_value(): iterative lookup
  {"cmd":"rpc","addr":"ip:port","msg":{...}}  one request (rpcId added), raw reply back
  {"cmd":"table"} / {"cmd":"storage"} / {"cmd":"quit"}
"""

import asyncio
import json
import os
import sys
import threading
import traceback


def _claim_stdout():
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "wb", buffering=0)


def _split(addr):
    ip, port = addr.rsplit(":", 1)
    return ip.strip("[]"), int(port)


class Probe:
    def __init__(self, out):
        import dht_lib

        self.lib = dht_lib
        self.out = out
        self.loop = asyncio.get_running_loop()
        self.dht = dht_lib.SimpleDHT({"port": 0})
        self.done = self.loop.create_future()

    def emit(self, obj):
        self.out.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

    def table(self):
        return [{"id": n["id"], "ip": n["ip"], "port": n["port"]}
                for b in self.dht._table.buckets for n in b.nodes]

    async def run_cmd(self, cmd):
        name = cmd["cmd"]
        dht = self.dht
        if name == "ping":
            ip, port = _split(cmd["addr"])
            reply = await dht._rpc(ip, port, {"type": self.lib.MSG_PING, "from": dht.node_id})
            self.emit({"event": "pong", "id": reply.get("from")})
        elif name == "bootstrap":
            await dht.bootstrap(cmd.get("addrs", []))
            self.emit({"event": "bootstrapped", "table": self.table()})
        elif name == "put":
            key_hash = dht.put(cmd["key"], cmd["value"])
            self.emit({"event": "stored", "hash": key_hash})
        elif name == "find_value":
            value = await dht.find_value(cmd["key"])
            self.emit({"event": "value", "key": cmd["key"], "value": value})
        elif name == "rpc":
            ip, port = _split(cmd["addr"])
            try:
                reply = await dht._rpc(ip, port, dict(cmd["msg"]))
            except asyncio.TimeoutError:
                reply = None
            self.emit({"event": "reply", "reply": reply,
                       "keys": list(reply.keys()) if reply else []})
        elif name == "table":
            self.emit({"event": "table", "table": self.table()})
        elif name == "storage":
            self.emit({"event": "storage", "storage": dict(dht.storage)})
        elif name == "quit":
            if not self.done.done():
                self.done.set_result(None)
        else:
            raise ValueError(f"unknown cmd {name!r}")

    async def guarded(self, cmd):
        try:
            await self.run_cmd(cmd)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an event
            self.emit({"event": "error", "message": f"{type(exc).__name__}: {exc}"})

    def on_line(self, line):
        try:
            cmd = json.loads(line)
        except ValueError as exc:
            self.emit({"event": "error", "message": str(exc)})
            return
        self.loop.create_task(self.guarded(cmd))

    def start_stdin_reader(self):
        def run():
            try:
                for line in sys.stdin.buffer:
                    if line.strip():
                        self.loop.call_soon_threadsafe(self.on_line, line)
            finally:
                self.loop.call_soon_threadsafe(
                    lambda: self.done.done() or self.done.set_result(None))

        threading.Thread(target=run, name="stdin-reader", daemon=True).start()


async def _amain(out):
    probe = Probe(out)
    await probe.dht.start()
    probe.emit({"event": "ready", "id": probe.dht.node_id, "port": probe.dht.port})
    probe.start_stdin_reader()
    await probe.done
    probe.dht.destroy()


def main():
    out = _claim_stdout()
    code = 0
    try:
        asyncio.run(_amain(out))
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
