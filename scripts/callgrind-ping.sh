#!/usr/bin/env bash
# Instructions a shard spends per PING→PONG, counted by callgrind: the node runs with one
# shard on the recvmmsg/sendmmsg backend, gets N and then (in a second run) 2N PINGs from
# SOURCES loopback addresses in bursts of one PING per source, and the difference between the
# shard thread's instruction totals, divided by N, is the cost of one reply (start-up and
# shutdown cancel out). The node is paused (SIGSTOP) while each burst is sent, so that every
# receive batch holds a whole burst and the count does not depend on scheduling.
#
# Usage: scripts/callgrind-ping.sh [NODE_BINARY] [N] [SOURCES]
# Needs valgrind and python3; sends only to 127.0.0.1.
set -euo pipefail
node=${1:-target/release/setowire-node}
n=${2:-20000}
sources=${3:-32}
port=${PORT:-47391}
# KEEP=DIR keeps the profiles there, for callgrind_annotate.
work=${KEEP:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

send_pings() {
  python3 - "$port" "$1" "$sources" "$2" <<'PY'
import os, signal, socket, sys
port, count, sources, pid = (int(a) for a in sys.argv[1:5])
ping = bytes([0x03]) + (0).to_bytes(8, "big") + bytes(20)
socks = []
for i in range(sources):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.0.2.{i + 1}", 0))
    s.settimeout(30)
    socks.append(s)
# The node under valgrind starts slowly: wait until it answers.
probe = socks[0]
probe.settimeout(0.5)
for _ in range(240):
    probe.sendto(ping, ("127.0.0.1", port))
    try:
        probe.recv(64)
        break
    except socket.timeout:
        pass
else:
    sys.exit("the node never answered")
probe.settimeout(30)
sent = 0
while sent < count:
    burst = socks[: min(sources, count - sent)]
    os.kill(pid, signal.SIGSTOP)
    for s in burst:
        s.sendto(ping, ("127.0.0.1", port))
    os.kill(pid, signal.SIGCONT)
    for s in burst:
        s.recv(64)
    sent += len(burst)
PY
}

total_for() {
  local pings=$1 out="$work/cg.$1"
  valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out.%p" \
    "$node" --shards 1 --io-backend mmsg --udp-listen "127.0.0.1:$port" \
    --http-listen off --admin-listen off --log-filter warn \
    --unauth-rate-per-ip 100000000 --unauth-burst-per-ip 100000000 2>"$work/valgrind.$pings" &
  local pid=$!
  send_pings "$pings" "$pid"
  kill -TERM "$pid"
  wait "$pid" || true
  # The shard's thread is the one whose profile runs the shard loop.
  local file
  file=$(grep -l "Shard.*run" "$out".*-* | head -n 1)
  awk '/^(summary|totals):/ {print $2; exit}' "$file"
}

one=$(total_for "$n")
two=$(total_for $((2 * n)))
echo "shard instructions: $one after $n PINGs, $two after $((2 * n))"
echo "per PING->PONG: $(( (two - one) / n ))"
