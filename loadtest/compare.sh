#!/usr/bin/env bash
# compare.sh: setowire-node against its floors and its reference, on this machine, in one go.
#
#   loadtest/compare.sh            (a few minutes; ROUNDS=5 SECONDS_PER_RUN=2 by default)
#
# Targets, all started first and kept up for the whole run, all on 127.0.0.1:
#   node-uring-1 / node-uring-N   setowire-node, io_uring backend, 1 shard / one per core
#   node-mmsg-1  / node-mmsg-N    setowire-node, recvmmsg/sendmmsg backend, same
#   py-setowire                   py-setowire 0.1.0's Swarm (loadtest/pyseto_target.py)
#   py-dht                        py-setowire 0.1.0's SimpleDHT (pyseto_target.py --dht)
#   echo-mmsg / echo-naive        the UDP floors: bare batched / one-syscall-per-datagram
#                                 PING→PONG responders (loadtest/src/bin/echo-*.rs)
# Scenarios, each run against every target in rounds, the order rotating from round to round
# so that no target always goes first (or right after the heaviest one):
#   ping       setowire-sim ping --raw: replies/s, node ÷ echo-mmsg, ÷ echo-naive, ÷ py-setowire
#   handshake  new sessions/s (1-shard nodes, py-setowire), and per shard ÷ the X25519 bound
#              (1e9 / ns of one Diffie-Hellman, `cargo bench --bench crypto`, measured here)
#   dht        JSON DHT operations/s: node ÷ py-setowire's SimpleDHT
# Medians over the rounds. Table on stdout and in target/compare/summary.md; every report
# under target/compare/json/, every target's output under target/compare/logs/.
#
# Environment: ROUNDS (5), SECONDS_PER_RUN (2: ping and dht), HANDSHAKE_SECONDS (3),
# WARMUP (0.5), SKIP_BENCH=1 (no X25519 bound), PYTHON (python3 that makes the venv).
# Needs: cargo, python3 (stdlib only here; the venv gets py-setowire==0.1.0 from PyPI).
# All traffic stays on loopback; every target exits when this script does (its stdin closes).

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-2}
HANDSHAKE_SECONDS=${HANDSHAKE_SECONDS:-3}
WARMUP=${WARMUP:-0.5}
PYTHON=${PYTHON:-python3}
OUT=target/compare
VENV=target/compare-venv
BIN=target/release
SIM=$BIN/setowire-sim
NCPU=$(nproc)
SECONDS=0

say() { printf '== %s\n' "$*" >&2; }

rm -rf "$OUT/json" "$OUT/logs"
mkdir -p "$OUT/json" "$OUT/logs"

# ---- build -------------------------------------------------------------------------------
say "building (release)"
cargo build --release -p setowire-node -p setowire-loadtest

# ---- py-setowire venv --------------------------------------------------------------------
if ! "$VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("py-setowire") == "0.1.0"' 2>/dev/null; then
    say "creating $VENV with py-setowire==0.1.0"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check py-setowire==0.1.0
fi

# ---- X25519 bound ------------------------------------------------------------------------
X25519_NS=""
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
    say "measuring X25519 (cargo bench --bench crypto -- x25519)"
    # Own baseline name: criterion's default "base" (others' comparisons) stays untouched.
    if cargo bench --bench crypto -- x25519 --warm-up-time 1 --measurement-time 3 \
        --save-baseline compare-sh >"$OUT/logs/bench-x25519.log" 2>&1; then
        X25519_NS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["mean"]["point_estimate"])' \
            target/criterion/bare_x25519_diffie_hellman/new/estimates.json)
    else
        say "X25519 bench failed (see $OUT/logs/bench-x25519.log); no bound"
    fi
fi

# ---- targets -----------------------------------------------------------------------------
# Every target reads its stdin from one FIFO that only this shell holds open for writing:
# when the shell goes, however it goes, they all see EOF and stop.
CTL=$(mktemp -u "${TMPDIR:-/tmp}/setowire-compare.XXXXXX")
mkfifo "$CTL"
exec 3<>"$CTL"
declare -A PID PORT SHARDS STATUS
NAMES=()

cleanup() {
    trap - EXIT INT TERM
    exec 3>&-
    rm -f "$CTL"
    local deadline=$((SECONDS + 5)) name
    for name in "${NAMES[@]}"; do
        local pid=${PID[$name]:-}
        [[ -n "$pid" ]] || continue
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_target NAME SHARDS CMD...: runs CMD, waits for its {"event":"ready","port":N}.
start_target() {
    local name=$1 shards=$2
    shift 2
    NAMES+=("$name")
    SHARDS[$name]=$shards
    "$@" <"$CTL" >"$OUT/logs/$name.out" 2>"$OUT/logs/$name.err" 3>&- &
    PID[$name]=$!
    local i port=""
    for ((i = 0; i < 300; i++)); do # 30 s at most
        port=$(python3 - "$OUT/logs/$name.out" <<'EOF' 2>/dev/null || true
import json, sys
for line in open(sys.argv[1]):
    try:
        ev = json.loads(line)
    except ValueError:
        continue
    if ev.get("event") == "ready":
        print(ev["port"])
        break
EOF
)
        [[ -n "$port" ]] && break
        kill -0 "${PID[$name]}" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -n "$port" ]]; then
        PORT[$name]=$port
        STATUS[$name]=up
        say "$name ready on 127.0.0.1:$port"
    else
        STATUS[$name]="unavailable: $(tail -n 3 "$OUT/logs/$name.err" | tr '\n' ' ' | cut -c1-200)"
        say "$name did not start, skipped (${STATUS[$name]})"
        kill "${PID[$name]}" 2>/dev/null || true
    fi
}

NODE_FLAGS=(--udp-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
    --control stdio --unauth-rate-per-ip 100000000 --unauth-burst-per-ip 100000000)
for backend in io_uring mmsg; do
    short=${backend/io_/}
    start_target "node-$short-1" 1 $BIN/setowire-node "${NODE_FLAGS[@]}" --shards 1 --io-backend "$backend"
    if ((NCPU > 1)); then
        start_target "node-$short-$NCPU" "$NCPU" $BIN/setowire-node "${NODE_FLAGS[@]}" \
            --shards "$NCPU" --io-backend "$backend"
    fi
done
start_target py-setowire 1 "$VENV/bin/python" loadtest/pyseto_target.py
start_target py-dht 1 "$VENV/bin/python" loadtest/pyseto_target.py --dht
start_target echo-mmsg 1 $BIN/echo-mmsg
start_target echo-naive 1 $BIN/echo-naive

up() { [[ ${STATUS[$1]} == up ]] && kill -0 "${PID[$1]}" 2>/dev/null; }

# run_rounds SCENARIO "TARGET..." SIM-ARGS...: every round, every target once, rotating.
# A failed run is logged and left out of the medians.
run_rounds() {
    local scenario=$1
    local -a targets=()
    local t
    for t in $2; do [[ ${STATUS[$t]:-} == up ]] && targets+=("$t"); done
    shift 2
    local n=${#targets[@]} r i
    ((n > 0)) || return 0
    for ((r = 1; r <= ROUNDS; r++)); do
        say "$scenario round $r/$ROUNDS"
        for ((i = 0; i < n; i++)); do
            t=${targets[$(((i + r - 1) % n))]}
            if ! up "$t"; then
                say "  $t is no longer running, skipped"
                continue
            fi
            local addr=127.0.0.1:${PORT[$t]} json="$OUT/json/$scenario-$t-r$r.json"
            local -a where=(--target "$addr")
            [[ $scenario == dht ]] && where=(--dht-target "$addr")
            if ! timeout 120 "$SIM" "$scenario" "${where[@]}" "$@" --quiet --json "$json" \
                >"$OUT/logs/sim-$scenario-$t-r$r.log" 2>&1 3>&-; then
                say "  $t: setowire-sim failed: $(tail -n 1 "$OUT/logs/sim-$scenario-$t-r$r.log")"
                rm -f "$json"
            fi
        done
    done
}

ALL_NODES=""
ONE_SHARD_NODES=""
for t in "${NAMES[@]}"; do
    case $t in
    node-*-1) ONE_SHARD_NODES+=" $t"; ALL_NODES+=" $t" ;;
    node-*) ALL_NODES+=" $t" ;;
    esac
done

run_rounds ping "$ALL_NODES py-setowire echo-mmsg echo-naive" \
    --raw --peers 64 --in-flight 4 --duration "$SECONDS_PER_RUN" --warmup "$WARMUP"
run_rounds handshake "$ONE_SHARD_NODES py-setowire" \
    --peers 256 --duration "$HANDSHAKE_SECONDS" --warmup "$WARMUP"
run_rounds dht "$ONE_SHARD_NODES py-dht" \
    --peers 64 --in-flight 4 --duration "$SECONDS_PER_RUN" --warmup "$WARMUP"

# ---- summary -----------------------------------------------------------------------------
{
    for t in "${NAMES[@]}"; do printf '%s\t%s\t%s\n' "$t" "${SHARDS[$t]}" "${STATUS[$t]}"; done
} >"$OUT/targets.tsv"

WALL=$SECONDS
python3 - "$OUT" "$X25519_NS" "$ROUNDS" "$SECONDS_PER_RUN" "$HANDSHAKE_SECONDS" "$NCPU" "$WALL" <<'EOF' | tee "$OUT/summary.md"
import glob, json, os, re, statistics, sys

out, x_ns, rounds, secs, hs_secs, ncpu, wall = sys.argv[1:]
targets = {}
for line in open(os.path.join(out, "targets.tsv")):
    name, shards, status = line.rstrip("\n").split("\t", 2)
    targets[name] = (int(shards), status)

runs = {}  # (scenario, target) -> [report]
for path in sorted(glob.glob(os.path.join(out, "json", "*.json"))):
    m = re.match(r"(ping|handshake|dht)-(.+)-r\d+\.json$", os.path.basename(path))
    if m:
        with open(path) as f:
            runs.setdefault((m.group(1), m.group(2)), []).append(json.load(f))

def med(scenario, target, key):
    reps = runs.get((scenario, target), [])
    vals = [r["latency_ms"][key] if key in ("p50", "p99") else r[key] for r in reps]
    return statistics.median(vals) if vals else None

def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"

def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"

def spread(scenario, target):
    vals = [r["rate"] for r in runs.get((scenario, target), [])]
    return f"{min(vals):,.0f}..{max(vals):,.0f}" if vals else "-"

def note(scenario, target):
    if targets.get(target, (0, "up"))[1] != "up":
        return targets[target][1]
    n = len(runs.get((scenario, target), []))
    return "" if n == int(rounds) else f"{n}/{rounds} runs"

def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()

nodes = [t for t in targets if t.startswith("node-")]
label = lambda t: f"{t} ({targets[t][0]} shard{'s' if targets[t][0] > 1 else ''})" if t.startswith("node-") else t

print(f"# setowire-node compared on this machine ({ncpu} CPUs)\n")
print(f"Medians over {rounds} rounds (order rotating), loopback only. compare.sh wall time: {wall} s.\n")

print(f"## ping --raw (64 peers x 4 in flight, {secs} s per run): replies/s\n")
rate = {t: med("ping", t, "rate") for t in targets}
rows = []
for t in nodes + ["py-setowire", "echo-mmsg", "echo-naive"]:
    if t not in targets:
        continue
    r = rate[t]
    rows.append([label(t), fmt(r), spread("ping", t), fmt(med("ping", t, "p50"), 3), fmt(med("ping", t, "p99"), 3),
                 fmt(med("ping", t, "loss_ratio") * 100 if r is not None else None, 3),
                 ratio(r, rate.get("echo-mmsg")), ratio(r, rate.get("echo-naive")), ratio(r, rate.get("py-setowire")),
                 note("ping", t)])
table(["target", "replies/s", "min..max", "p50 ms", "p99 ms", "loss %", "÷ echo-mmsg", "÷ echo-naive", "÷ py-setowire", "note"], rows)

bound = 1e9 / float(x_ns) if x_ns else None
print(f"## handshake (256 peers, {hs_secs} s per run): new sessions/s\n")
print(f"X25519 bound: {fmt(bound)} Diffie-Hellman/s per core (bare/x25519_diffie_hellman, {fmt(float(x_ns) if x_ns else None, 1)} ns).\n"
      if bound else "X25519 bound: not measured.\n")
print("A node handshake also pays for its introductions (gossip_fanout, default 16: the newcomer "
      "to recent peers and them to it); py-setowire gossips a peer id at most once in 30 s (GOSSIP_TTL).\n")
hs_py = med("handshake", "py-setowire", "rate")
rows = []
for t in [n for n in nodes if targets[n][0] == 1] + ["py-setowire"]:
    if t not in targets:
        continue
    r = med("handshake", t, "rate")
    per_shard = r / targets[t][0] if r is not None else None
    rows.append([label(t), fmt(r), spread("handshake", t), fmt(med("handshake", t, "p50"), 3), fmt(med("handshake", t, "p99"), 3),
                 fmt(med("handshake", t, "loss_ratio") * 100 if r is not None else None, 3),
                 ratio(per_shard, bound), ratio(r, hs_py), note("handshake", t)])
table(["target", "handshakes/s", "min..max", "p50 ms", "p99 ms", "loss %", "per shard ÷ X25519 bound", "÷ py-setowire", "note"], rows)

print(f"## dht (64 clients x 4 in flight, {secs} s per run): operations/s\n")
dht_py = med("dht", "py-dht", "rate")
rows = []
for t in [n for n in nodes if targets[n][0] == 1] + ["py-dht"]:
    if t not in targets:
        continue
    r = med("dht", t, "rate")
    errs = med("dht", t, "errors")
    rows.append([label(t) if t != "py-dht" else "py-setowire SimpleDHT", fmt(r), spread("dht", t),
                 fmt(med("dht", t, "p50"), 3), fmt(med("dht", t, "p99"), 3),
                 fmt(med("dht", t, "loss_ratio") * 100 if r is not None else None, 3), fmt(errs),
                 ratio(r, dht_py), note("dht", t)])
table(["target", "ops/s", "min..max", "p50 ms", "p99 ms", "loss %", "errors", "÷ SimpleDHT", "note"], rows)
EOF
say "done in ${SECONDS} s; reports in $OUT/json, logs in $OUT/logs, summary in $OUT/summary.md"
