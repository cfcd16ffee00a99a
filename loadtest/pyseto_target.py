"""A py-setowire 0.1.0 peer, or (--dht) its SimpleDHT node, as a target for compare.sh.

    python pyseto_target.py [--port N] [--dht] [--max-peers N]

Run it with an interpreter that has py-setowire==0.1.0 installed. It binds UDP 127.0.0.1:N
(0: any free port), prints {"event":"ready","port":N} on stdout, then runs until its stdin
closes (an hour at most). Nothing else is ever written to stdout.

The peer is py-setowire's own `Swarm`, with no topic joined: it answers HELLO, PING, DHT
and whatever else the load generator sends exactly as it does in the field. It never
reaches outside the machine (the same guards as tests/interop/setowire_driver.py, written
again here because that file cannot be imported from this directory).
"""

import argparse
import asyncio
import json
import os
import sys
import threading

MAX_LIFETIME_S = 3600


class _LoopbackLoop(asyncio.SelectorEventLoop):
    """Binds every UDP socket py-setowire opens to 127.0.0.1 (Swarm and SimpleDHT hard-code
    0.0.0.0), the first one on --port; refuses connected (outbound) datagram endpoints."""

    port = 0

    async def create_datagram_endpoint(self, factory, local_addr=None, remote_addr=None, **kw):
        if remote_addr is not None:
            raise OSError("pyseto_target: outbound UDP endpoints are refused")
        port, self.port = self.port, 0
        return await super().create_datagram_endpoint(factory, local_addr=("127.0.0.1", port), **kw)


def _isolate_from_outside_world():
    """Empty every remote host py-setowire knows of: STUN servers, HTTP bootstrap hosts,
    piping servers, hard-coded seeds. Must run before `swarm` is imported."""
    import constants

    for name in ("STUN_HOSTS", "HARDCODED_HTTP_BOOTSTRAP", "PIPING_SERVERS", "HARDCODED_SEEDS"):
        getattr(constants, name).clear()


async def _start(args):
    if args.dht:
        import dht_lib

        dht = dht_lib.SimpleDHT({"port": args.port})
        await dht.start()
        return dht.port

    import swarm as swarm_mod

    # Guess of the local address: 0.1.0 "connects" a UDP socket to 8.8.8.8 for it.
    swarm_mod._local_ip = lambda: "127.0.0.1"
    # STUN (its task dies on an empty host list anyway) and LAN multicast discovery: off.
    swarm_mod.Swarm._stun_lazy = lambda self: None
    swarm_mod.Swarm._init_lan = lambda self: None
    # No explicit HTTP bootstrap either. max_peers as high as the node's default, so that
    # `handshake` with hundreds of peers measures handshakes, not refusals.
    sw = swarm_mod.Swarm({"bootstrap_http": [], "max_peers": args.max_peers})
    await sw._init_task
    return sw._lport


def _exit_when_stdin_closes():
    def watch_stdin():
        for _ in sys.stdin.buffer:
            pass
        os._exit(0)

    def watch_clock():
        threading.Event().wait(MAX_LIFETIME_S)
        os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    threading.Thread(target=watch_clock, daemon=True).start()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="UDP port on 127.0.0.1 (0: any)")
    p.add_argument("--dht", action="store_true", help="run SimpleDHT instead of a Swarm")
    p.add_argument("--max-peers", type=int, default=100_000)
    args = p.parse_args()

    events = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything py-setowire prints goes to stderr
    sys.stdout = sys.stderr
    _isolate_from_outside_world()

    loop = _LoopbackLoop()
    loop.port = args.port
    asyncio.set_event_loop(loop)
    port = loop.run_until_complete(_start(args))
    events.write(json.dumps({"event": "ready", "port": port}) + "\n")
    _exit_when_stdin_closes()
    loop.run_forever()


if __name__ == "__main__":
    main()
