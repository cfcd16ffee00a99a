"""Ask a STUN server for our reflexive address with a real client, print it as JSON.

    stun_check.py aioice HOST PORT BIND_HOST
        Two Binding requests through aioice's STUN client (aioice.ice.StunProtocol, the
        ICE library of aiortc), one plain and one carrying FINGERPRINT (aioice checks the
        response's FINGERPRINT). Prints one line per request:
        {"ip": ..., "port": ..., "local": [ip, port], "class": "RESPONSE"}

    stun_check.py setowire HOST PORT
        One 20-byte Binding request of the kind py-setowire 0.1.0's `_stun_probe` sends;
        the response is read by py-setowire's own parser (the `handler` nested in
        `Swarm._stun_probe`, which that version never wires to its socket). Prints
        {"ip": ..., "port": ..., "local": [ip, port]} or {"error": ...}.
"""

import asyncio
import json
import os
import socket
import sys
import types


def aioice_mode(host, port, bind_host):
    from aioice import stun
    from aioice.ice import StunProtocol

    class Receiver:
        def data_received(self, data, component):
            pass

        def request_received(self, message, addr, protocol, raw_data):
            pass

    async def run():
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: StunProtocol(Receiver()), local_addr=(bind_host, 0))
        local = transport.get_extra_info("sockname")[:2]
        for with_fingerprint in (False, True):
            request = stun.Message(message_method=stun.Method.BINDING,
                                   message_class=stun.Class.REQUEST)
            if with_fingerprint:
                request.attributes["SOFTWARE"] = "setowire-node test"
                request.attributes["FINGERPRINT"] = stun.message_fingerprint(bytes(request))
            response, _ = await asyncio.wait_for(
                protocol.request(request, (host, port), retransmissions=2), 10)
            ip, mapped_port = response.attributes["XOR-MAPPED-ADDRESS"]
            print(json.dumps({"ip": ip, "port": mapped_port, "local": list(local),
                              "class": response.message_class.name,
                              "fingerprint": "FINGERPRINT" in response.attributes,
                              "same_transaction": response.transaction_id
                              == request.transaction_id}), flush=True)
        transport.close()

    asyncio.run(run())


def setowire_mode(host, port):
    import swarm

    code = next(c for c in swarm.Swarm._stun_probe.__code__.co_consts
                if isinstance(c, types.CodeType) and c.co_name == "handler")
    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    handler = types.FunctionType(code, vars(swarm), "handler", None,
                                 tuple(types.CellType(fut) for _ in code.co_freevars))

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    # Binding request: type 0x0001, no attributes, the magic cookie, a random transaction.
    request = b"\x00\x01\x00\x00" + bytes.fromhex("2112a442") + os.urandom(12)
    sock.sendto(request, (host, port))
    data, addr = sock.recvfrom(2048)
    handler(data, addr)
    if fut.done():
        out = dict(fut.result())
        out["local"] = list(sock.getsockname())
    else:
        out = {"error": "py-setowire's parser found no address", "hex": data.hex()}
    print(json.dumps(out), flush=True)


def main():
    mode = sys.argv[1]
    if mode == "aioice":
        aioice_mode(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif mode == "setowire":
        setowire_mode(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
