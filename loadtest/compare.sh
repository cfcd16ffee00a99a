#!/usr/bin/env bash
# compare.sh: setowire-node against its floors and its reference, on this machine, in one go.
#
#   loadtest/compare.sh            (about 5 minutes after the build; ROUNDS=5 by default)
#
# Targets, all started first and kept up for the whole run, all on 127.0.0.1:
#   node-uring-1 / node-uring-N   setowire-node, io_uring backend, 1 shard / one per core
#   node-mmsg-1  / node-mmsg-N    setowire-node, recvmmsg/sendmmsg backend, same
#   node-mmsg-1-fanout0           node-mmsg-1 with --gossip-fanout 0 (handshake only): the
#                                 handshake without introductions, i.e. the crypto path alone
#   py-setowire                   py-setowire 0.1.0's Swarm (loadtest/pyseto_target.py)
#   py-dht                        py-setowire 0.1.0's SimpleDHT (pyseto_target.py --dht)
#   echo-mmsg / echo-naive        the UDP floors: bare batched / one-syscall-per-datagram
#                                 PING→PONG responders (loadtest/src/bin/echo-*.rs)
# The nodes run without the control interface (no --control stdio), so they print no JSON
# event per connect/disconnect; their UDP port comes from the "node started" log line
# (--log-format json, stderr) and a watcher on the FIFO below stops them with SIGTERM.
# Scenarios, each run against every target in rounds, the order rotating from round to round
# so that no target always goes first (or right after the heaviest one):
#   ping       setowire-sim ping --raw: replies/s, node ÷ echo-mmsg, ÷ echo-naive, ÷ py-setowire
#   handshake  new sessions/s (1-shard nodes, py-setowire), and per shard ÷ the X25519 bound
#              (1e9 / ns of one Diffie-Hellman, `cargo bench --bench crypto`, measured here:
#              its fastest sample, as the bench is timed by the wall clock on a shared machine)
#   dht        JSON DHT operations/s: node ÷ py-setowire's SimpleDHT
#   ping-sat   at saturation, pinned: the target on core 0 (`taskset -a -p`, all its threads,
#              from this phase on; it runs last so no other phase sees the pinning) and
#              setowire-sim on core 1, in its saturating mode (`ping --raw --saturate`: 512
#              peers, a socket each, 4 PINGs in flight each, one thread). echo-mmsg and the
#              1-shard nodes (io_uring, mmsg): replies/s, the target's CPU µs per reply, how
#              busy each core was, and node ÷ echo-mmsg for both. Needs 2 CPUs or more.
# Two measures for each: the rate setowire-sim sees (capped by the generator, which shares
# the CPUs with the target), and the target's own CPU time per operation: utime+stime of the
# target process (all its threads; /proc/PID/stat fields 14+15) read just before and just
# after each setowire-sim run, divided by every operation completed in that run (the sum of
# the report's per-second timeline: warm-up, measured window and drain), and the capacity it
# implies (operations per CPU-second of the target). Medians over the rounds. Table on stdout
# and in target/compare/summary.md; every report under target/compare/json/, the CPU readings
# in target/compare/cpu.tsv, every target's output under target/compare/logs/.
#
# Environment: ROUNDS (5), SECONDS_PER_RUN (2: ping, dht and ping-sat), HANDSHAKE_SECONDS (3),
# PHASES (which of "ping handshake dht ping-sat" to run; all by default),
# WARMUP (0.5), SKIP_BENCH=1 (no X25519 bound), PYTHON (python3 that makes the venv),
# NODE_EVENTS=1 (run the nodes with --control stdio as before: a JSON event line on stdout per
# connect and disconnect, into target/compare/logs/NODE.out).
# Needs: cargo, python3 (stdlib only here; the venv gets py-setowire==0.1.0 from PyPI).
# All traffic stays on loopback; every target exits when this script does (its stdin closes,
# or for a node without the control interface, its watcher sends SIGTERM).

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-2}
HANDSHAKE_SECONDS=${HANDSHAKE_SECONDS:-3}
WARMUP=${WARMUP:-0.5}
PYTHON=${PYTHON:-python3}
NODE_EVENTS=${NODE_EVENTS:-0}
PHASES=${PHASES:-ping handshake dht ping-sat}
# After setowire-sim exits, how long the target gets to finish what is still queued (the
# peers' GOAWAYs) before its CPU time is read again.
SETTLE=0.05
OUT=target/compare
VENV=target/compare-venv
# The binaries are copied here right after the build: the working tree (and target/) may be
# rebuilt by someone else while this runs, and every figure must come from one build.
BIN=$OUT/bin
SIM=$BIN/setowire-sim
NCPU=$(nproc)
CLK_TCK=$(getconf CLK_TCK)
SECONDS=0

say() { printf '== %s\n' "$*" >&2; }

rm -rf "$OUT/json" "$OUT/logs" "$OUT/cpu.tsv" "$OUT/bin"
mkdir -p "$OUT/json" "$OUT/logs" "$OUT/bin"

# ---- build -------------------------------------------------------------------------------
say "building (release)"
cargo build --release -p setowire-node -p setowire-loadtest
cp target/release/{setowire-node,setowire-sim,echo-mmsg,echo-naive} "$BIN/"
BENCH_EXE=""
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
    # Built now and run directly later: `cargo bench` would rebuild it from whatever the
    # tree holds by then, and inside the timed part.
    BENCH_EXE=$(cargo bench --bench crypto --no-run --message-format=json-render-diagnostics | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "crypto" and m.get("executable"):
        print(m["executable"])
')
    cp "$BENCH_EXE" "$BIN/crypto-bench"
    BENCH_EXE=$BIN/crypto-bench
fi

# ---- py-setowire venv --------------------------------------------------------------------
if ! "$VENV/bin/python" -c 'import importlib.metadata as m; assert m.version("py-setowire") == "0.1.0"' 2>/dev/null; then
    say "creating $VENV with py-setowire==0.1.0"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check py-setowire==0.1.0
fi

BUILD_SECS=$SECONDS

# ---- X25519 bound ------------------------------------------------------------------------
X25519_NS=""
X25519_MEAN_NS=""
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
    say "measuring X25519 (benches/crypto.rs, built above: --bench x25519)"
    # Own baseline name: criterion's default "base" (others' comparisons) stays untouched.
    # Run from the repository root, as cargo bench does: results under target/criterion.
    if "$BENCH_EXE" --bench x25519 --warm-up-time 1 --measurement-time 3 \
        --save-baseline compare-sh >"$OUT/logs/bench-x25519.log" 2>&1; then
        # The bound is the fastest of criterion's samples (ns per DH): the bench is timed by
        # the wall clock, so on a shared machine its mean also counts the time it was
        # preempted, which the targets' CPU-time figures never do. The mean is shown beside it.
        read -r X25519_NS X25519_MEAN_NS < <(python3 - target/criterion/bare_x25519_diffie_hellman/compare-sh <<'EOF'
import json, os, sys
d = sys.argv[1]
s = json.load(open(os.path.join(d, "sample.json")))
mean = json.load(open(os.path.join(d, "estimates.json")))["mean"]["point_estimate"]
print(min(t / i for t, i in zip(s["times"], s["iters"])), mean)
EOF
) || true
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

# start_target NAME SHARDS STOP CMD...: runs CMD, waits for its {"event":"ready","port":N} on
# stdout or (a node without --control) its JSON "node started" log line on stderr. STOP is
# how it ends with this script: "stdin" (it exits when its stdin closes) or "sigterm" (a
# watcher that reads the FIFO sends it SIGTERM at EOF).
start_target() {
    local name=$1 shards=$2 stop=$3
    shift 3
    NAMES+=("$name")
    SHARDS[$name]=$shards
    "$@" <"$CTL" >"$OUT/logs/$name.out" 2>"$OUT/logs/$name.err" 3>&- &
    PID[$name]=$!
    if [[ $stop == sigterm ]]; then
        local pid=${PID[$name]}
        { cat >/dev/null; kill -TERM "$pid" 2>/dev/null || true; } <"$CTL" 3>&- &
    fi
    local i port=""
    for ((i = 0; i < 300; i++)); do # 30 s at most
        port=$(python3 - "$OUT/logs/$name.out" "$OUT/logs/$name.err" <<'EOF' 2>/dev/null || true
import json, sys

def events(path):
    with open(path) as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if isinstance(ev, dict):
                yield ev

for ev in events(sys.argv[1]):
    if ev.get("event") == "ready":
        print(ev["port"])
        sys.exit()
for ev in events(sys.argv[2]):
    # tracing's JSON puts the fields under "fields", or beside the timestamp when flattened.
    fields = ev.get("fields") or ev
    if fields.get("message") == "node started" and fields.get("udp"):
        print(fields["udp"].rsplit(":", 1)[1])
        sys.exit()
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
    --unauth-rate-per-ip 100000000 --unauth-burst-per-ip 100000000)
# start_node NAME SHARDS FLAGS...
start_node() {
    local name=$1 shards=$2
    shift 2
    if [[ $NODE_EVENTS == 1 ]]; then
        start_target "$name" "$shards" stdin $BIN/setowire-node "${NODE_FLAGS[@]}" --control stdio "$@"
    else
        start_target "$name" "$shards" sigterm $BIN/setowire-node "${NODE_FLAGS[@]}" --log-format json "$@"
    fi
}
for backend in io_uring mmsg; do
    short=${backend/io_/}
    start_node "node-$short-1" 1 --shards 1 --io-backend "$backend"
    if ((NCPU > 1)); then
        start_node "node-$short-$NCPU" "$NCPU" --shards "$NCPU" --io-backend "$backend"
    fi
done
start_node node-mmsg-1-fanout0 1 --shards 1 --io-backend mmsg --gossip-fanout 0
start_target py-setowire 1 stdin "$VENV/bin/python" loadtest/pyseto_target.py
start_target py-dht 1 stdin "$VENV/bin/python" loadtest/pyseto_target.py --dht
start_target echo-mmsg 1 stdin $BIN/echo-mmsg
start_target echo-naive 1 stdin $BIN/echo-naive

up() { [[ ${STATUS[$1]} == up ]] && kill -0 "${PID[$1]}" 2>/dev/null; }

# read_ticks PID: TICKS = utime + stime of the whole process (every thread, the ones that
# have exited included), in clock ticks; empty when it is gone. No fork: cheap and quiet.
read_ticks() {
    TICKS=""
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
    stat=${stat##*) } # comm may hold spaces; from here on, field 3 comes first
    local -a f
    read -ra f <<<"$stat"
    TICKS=$((f[11] + f[12])) # fields 14 (utime) and 15 (stime)
}

# read_cores: CORES = "busy total" clock ticks of CPU 0 and of CPU 1 since boot, from
# /proc/stat (busy: all but idle and iowait; steal counts as busy, the cores were not ours
# then), to tell how much of the two cores other work took during a run. No fork.
read_cores() {
    CORES=""
    local name rest
    while read -r name rest; do
        case $name in
        cpu0 | cpu1)
            local -a f
            read -ra f <<<"$rest"
            local total=$((f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7]))
            CORES+="$((total - f[3] - f[4])) $total "
            ;;
        esac
    done </proc/stat
}

# children_ms: CHILD_MS = user + system CPU time of this shell's finished children (the
# `times` builtin, run in this shell: a subshell would report its own children), in ms, to
# tell how busy the generator was.
children_ms() {
    times >"$OUT/.times"
    local cu cs
    { read -r _ _; read -r cu cs; } <"$OUT/.times"
    CHILD_MS=$(($(to_ms "$cu") + $(to_ms "$cs")))
}
# to_ms 1m2.345s: 62345 (the decimal mark may be a comma).
to_ms() {
    local t=${1%s} min sec
    min=${t%%m*}
    sec=${t#*m}
    sec=${sec/,/.}
    local whole=${sec%.*} frac=${sec#*.}000
    echo $((10#$min * 60000 + 10#$whole * 1000 + 10#${frac:0:3}))
}

# Set by the ping-sat phase: what setowire-sim runs under (its core).
GEN_PREFIX=()

# run_rounds PHASE "TARGET..." SIM-ARGS...: every round, every target once, rotating. The
# setowire-sim scenario is PHASE up to its first "-" (ping-sat runs ping). A failed run is
# logged and left out of the medians.
run_rounds() {
    local phase=$1 scenario=${1%%-*}
    [[ " $PHASES " == *" $phase "* ]] || return 0
    local -a targets=()
    local t
    for t in $2; do [[ ${STATUS[$t]:-} == up ]] && targets+=("$t"); done
    shift 2
    local n=${#targets[@]} r i
    ((n > 0)) || return 0
    for ((r = 1; r <= ROUNDS; r++)); do
        say "$phase round $r/$ROUNDS"
        for ((i = 0; i < n; i++)); do
            t=${targets[$(((i + r - 1) % n))]}
            if ! up "$t"; then
                say "  $t is no longer running, skipped"
                continue
            fi
            local addr=127.0.0.1:${PORT[$t]} json="$OUT/json/$phase-$t-r$r.json"
            local -a where=(--target "$addr")
            [[ $scenario == dht ]] && where=(--dht-target "$addr")
            children_ms
            local gen0=$CHILD_MS
            read_cores
            local -a cores0=($CORES)
            read_ticks "${PID[$t]}"
            local ticks0=$TICKS wall0=$EPOCHREALTIME
            if ! timeout 120 "${GEN_PREFIX[@]}" "$SIM" "$scenario" "${where[@]}" "$@" --quiet --json "$json" \
                >"$OUT/logs/sim-$phase-$t-r$r.log" 2>&1 3>&-; then
                say "  $t: setowire-sim failed: $(tail -n 1 "$OUT/logs/sim-$phase-$t-r$r.log")"
                rm -f "$json"
            fi
            local wall_sim=$EPOCHREALTIME
            read_cores
            local -a cores1=($CORES)
            sleep "$SETTLE"
            read_ticks "${PID[$t]}"
            local ticks1=$TICKS wall1=$EPOCHREALTIME
            children_ms
            if [[ -f $json && -n $ticks0 && -n $ticks1 ]]; then
                local c d cores=""
                for c in 0 1 2 3; do
                    d=$((${cores1[c]:-0} - ${cores0[c]:-0}))
                    cores+=$'\t'$d
                done
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n' "$phase" "$t" "$r" \
                    "$ticks0" "$ticks1" "$wall0" "$wall1" "$((CHILD_MS - gen0))" "$wall_sim" "$cores" >>"$OUT/cpu.tsv"
            fi
        done
    done
}

ALL_NODES=""
ONE_SHARD_NODES=""
for t in "${NAMES[@]}"; do
    case $t in
    node-*-fanout0) ;;
    node-*-1) ONE_SHARD_NODES+=" $t"; ALL_NODES+=" $t" ;;
    node-*) ALL_NODES+=" $t" ;;
    esac
done

run_rounds ping "$ALL_NODES py-setowire echo-mmsg echo-naive" \
    --raw --peers 64 --in-flight 4 --duration "$SECONDS_PER_RUN" --warmup "$WARMUP"
run_rounds handshake "$ONE_SHARD_NODES node-mmsg-1-fanout0 py-setowire" \
    --peers 256 --duration "$HANDSHAKE_SECONDS" --warmup "$WARMUP"
run_rounds dht "$ONE_SHARD_NODES py-dht" \
    --peers 64 --in-flight 4 --duration "$SECONDS_PER_RUN" --warmup "$WARMUP"
# Last: the pinning stays on the targets until they exit.
if [[ " $PHASES " == *" ping-sat "* ]]; then
    if ((NCPU >= 2)); then
        for t in $ONE_SHARD_NODES echo-mmsg; do
            if up "$t" && ! taskset -a -p -c 0 "${PID[$t]}" >/dev/null; then
                say "$t: cannot pin to core 0"
            fi
        done
        GEN_PREFIX=(taskset -c 1)
        run_rounds ping-sat "$ONE_SHARD_NODES echo-mmsg" \
            --raw --saturate --peers 512 --in-flight 4 --duration "$SECONDS_PER_RUN" --warmup "$WARMUP"
        GEN_PREFIX=()
    else
        say "ping-sat needs 2 CPUs (the target on one, the generator on the other): skipped"
    fi
fi

# ---- summary -----------------------------------------------------------------------------
{
    for t in "${NAMES[@]}"; do printf '%s\t%s\t%s\n' "$t" "${SHARDS[$t]}" "${STATUS[$t]}"; done
} >"$OUT/targets.tsv"

MEASURE_SECS=$((SECONDS - BUILD_SECS))
python3 - "$OUT" "$X25519_NS" "$X25519_MEAN_NS" "$ROUNDS" "$SECONDS_PER_RUN" "$HANDSHAKE_SECONDS" "$NCPU" "$BUILD_SECS" "$MEASURE_SECS" \
    "$CLK_TCK" "$NODE_EVENTS" "$SETTLE" <<'EOF' | tee "$OUT/summary.md"
import glob, json, os, re, statistics, sys

out, x_ns, x_mean_ns, rounds, secs, hs_secs, ncpu, build_secs, measure_secs, clk_tck, node_events, settle = sys.argv[1:]
clk = float(clk_tck)
targets = {}
for line in open(os.path.join(out, "targets.tsv")):
    name, shards, status = line.rstrip("\n").split("\t", 2)
    targets[name] = (int(shards), status)

runs = {}  # (scenario, target) -> {round: report}
for path in sorted(glob.glob(os.path.join(out, "json", "*.json"))):
    m = re.match(r"(ping-sat|ping|handshake|dht)-(.+)-r(\d+)\.json$", os.path.basename(path))
    if m:
        with open(path) as f:
            runs.setdefault((m.group(1), m.group(2)), {})[int(m.group(3))] = json.load(f)

# (scenario, target, round) -> (ticks before, ticks after, wall before, wall after)
cpu = {}
# (scenario, target, round) -> setowire-sim's CPU seconds, and them ÷ its wall seconds
gen_cpu = {}
gen_busy = {}
# (scenario, target, round) -> (CPU 0 busy share, CPU 1 busy share)
core_busy = {}
cpu_path = os.path.join(out, "cpu.tsv")
if os.path.exists(cpu_path):
    for line in open(cpu_path):
        scenario, target, rnd, t0, t1, w0, w1, gen_ms, w_sim, b0, n0, b1, n1 = line.rstrip("\n").split("\t")
        w0, w1, w_sim = (float(w.replace(",", ".")) for w in (w0, w1, w_sim))
        key = (scenario, target, int(rnd))
        cpu[key] = (int(t0), int(t1), w0, w1)
        gen_cpu[key] = int(gen_ms) / 1000
        if w_sim > w0:
            gen_busy[key] = gen_cpu[key] / (w_sim - w0)
        # Each core's busy share over the run, everything on it counted (the target, the
        # generator, and other work).
        if int(n0) > 0 and int(n1) > 0:
            core_busy[key] = (int(b0) / int(n0), int(b1) / int(n1))

def reports(scenario, target):
    return list(runs.get((scenario, target), {}).values())

def med(scenario, target, key):
    vals = [r["latency_ms"][key] if key in ("p50", "p99") else r[key] for r in reports(scenario, target)]
    return statistics.median(vals) if vals else None

def cpu_runs(scenario, target):
    """Per run with a report and both CPU readings: (operations completed over the whole run,
    target CPU seconds, wall seconds)."""
    out = []
    for rnd, rep in runs.get((scenario, target), {}).items():
        c = cpu.get((scenario, target, rnd))
        ops = sum(s["rate"] for s in rep.get("timeline", []))
        if c is not None and ops > 0:
            out.append((ops, (c[1] - c[0]) / clk, c[3] - c[2]))
    return out

def us_per_op(scenario, target):
    vals = [c * 1e6 / o for o, c, _ in cpu_runs(scenario, target)]
    return statistics.median(vals) if vals else None

def per_cpu_s(scenario, target):
    u = us_per_op(scenario, target)
    return 1e6 / u if u else None

def cores(scenario, target):
    vals = [c / w for _, c, w in cpu_runs(scenario, target) if w > 0]
    return statistics.median(vals) if vals else None

def whole_ops(scenario, target):
    vals = [o for o, _, _ in cpu_runs(scenario, target)]
    return statistics.median(vals) if vals else None

# A target's CPU between its own runs (timers, keep-alives: what it burns with no load), in
# CPU-seconds per wall second, from the readings around its consecutive runs.
idle = {}
for t in targets:
    rows = sorted((c for (sc, tt, _), c in cpu.items() if tt == t), key=lambda c: c[2])
    dc = sum(b[0] - a[1] for a, b in zip(rows, rows[1:])) / clk
    dw = sum(b[2] - a[3] for a, b in zip(rows, rows[1:]))
    idle[t] = dc / dw if dw > 0 else None

def fmt(v, digits=0):
    return "-" if v is None else f"{v:,.{digits}f}"

def ratio(a, b):
    return "-" if a is None or not b else f"{a / b:.2f}x"

def spread(scenario, target):
    vals = [r["rate"] for r in reports(scenario, target)]
    return f"{min(vals):,.0f}..{max(vals):,.0f}" if vals else "-"

def note(scenario, target):
    if targets.get(target, (0, "up"))[1] != "up":
        return targets[target][1]
    n = len(reports(scenario, target))
    return "" if n == int(rounds) else f"{n}/{rounds} runs"

def cpu_note(scenario, target):
    notes = [note(scenario, target)] if note(scenario, target) else []
    r = cpu_runs(scenario, target)
    if len(r) != len(reports(scenario, target)):
        notes.append(f"CPU read in {len(r)} runs")
    loss = med(scenario, target, "loss_ratio")
    if loss is not None and loss >= 0.01:
        notes.append(f"{loss:.0%} lost: their CPU is charged to the completed ops")
    if r and idle.get(target):
        share = idle[target] * statistics.median(w for _, _, w in r) / max(statistics.median(c for _, c, _ in r), 1e-9)
        if share >= 0.01:
            notes.append(f"idle CPU ≈ {share:.0%} of it")
    return "; ".join(notes)

def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()

def label(t):
    if not t.startswith("node-"):
        return t
    n = targets[t][0]
    extra = ", gossip_fanout 0" if t.endswith("-fanout0") else ""
    return f"{t} ({n} shard{'s' if n > 1 else ''}{extra})"

nodes = [t for t in targets if t.startswith("node-") and not t.endswith("-fanout0")]
one_shard = [t for t in nodes if targets[t][0] == 1]
fanout0 = [t for t in targets if t.endswith("-fanout0")]

print(f"# setowire-node compared on this machine ({ncpu} CPUs)\n")
print(f"Medians over {rounds} rounds (order rotating), loopback only. compare.sh: build {build_secs} s, "
      f"measurements {measure_secs} s (X25519 bench included).\n")
print("Nodes run " + ("with `--control stdio` (a JSON event line per connect and disconnect on stdout)"
      if node_events == "1" else
      "without the control interface (no `--control stdio`): no JSON event line per connect/disconnect, "
      "as py-setowire prints none either") + ".\n")
print("Two measures. **Rate**: what setowire-sim sees in its measured window; on this machine the "
      "generator shares the CPUs with the target and caps it (the echoes land there too). "
      "**CPU basis**: the target's own CPU time per operation and the capacity it implies. "
      "CPU = utime+stime of the whole target process (every thread: all shards of a multi-shard node), "
      f"from /proc/PID/stat read just before setowire-sim starts and {settle} s after it exits, "
      f"in {clk_tck} Hz clock ticks; operations = everything completed over that whole run "
      "(sum of the report's per-second timeline: warm-up, measured window and drain, so more than the "
      "rate's window). µs/op is the median of the per-run values; ops per CPU-second = 1e6 ÷ it; "
      "target cores = its CPU seconds per wall second of the run (start-up and drain included). "
      "The CPU basis is taken at the load the generator reaches (see target cores), not at saturation: "
      "a batching target gets cheaper per operation as its load rises, so ops per CPU-second is a "
      "conservative estimate of its capacity. A note flags a target whose idle CPU (between its own "
      "runs) is ≥ 1% of its CPU in a run, or which lost ≥ 1% of its operations.\n")

def cpu_table(scenario, rows_targets, ratio_cols, extra=None):
    head = ["target", "ops (whole run)", "target CPU µs/op", "ops per CPU-second", "target cores"]
    head += [name for name, _ in ratio_cols]
    if extra:
        head += [extra[0]]
    head += ["note"]
    rows = []
    for t, shown in rows_targets:
        if t not in targets:
            continue
        cap = per_cpu_s(scenario, t)
        row = [shown, fmt(whole_ops(scenario, t)), fmt(us_per_op(scenario, t), 2), fmt(cap), fmt(cores(scenario, t), 2)]
        row += [ratio(cap, base) for _, base in ratio_cols]
        if extra:
            row += [extra[1](t, cap)]
        row.append(cpu_note(scenario, t))
        rows.append(row)
    table(head, rows)

# ---- ping ----
print(f"## ping --raw (64 peers x 4 in flight, {secs} s per run)\n")
print("### Rate: replies/s\n")
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
print("### CPU basis: replies per CPU-second of the target\n")
cpu_table("ping", [(t, label(t)) for t in nodes + ["py-setowire", "echo-mmsg", "echo-naive"]],
          [("÷ echo-mmsg", per_cpu_s("ping", "echo-mmsg")), ("÷ echo-naive", per_cpu_s("ping", "echo-naive")),
           ("÷ py-setowire", per_cpu_s("ping", "py-setowire"))])

# ---- handshake ----
bound = 1e9 / float(x_ns) if x_ns else None
print(f"## handshake (256 peers, {hs_secs} s per run)\n")
print(f"X25519 bound: {fmt(bound)} Diffie-Hellman/s per core = 1e9 ÷ {fmt(float(x_ns), 1)} ns, the fastest of "
      f"criterion's samples of bare/x25519_diffie_hellman (their mean: {fmt(float(x_mean_ns) if x_mean_ns else None, 1)} ns; "
      "the bench is timed by the wall clock, so its mean also counts time it was preempted on this shared "
      "machine, which the CPU basis below never does).\n"
      if bound else "X25519 bound: not measured.\n")
print("Every handshake comes from a fresh identity (a new peer), then leaves with GOAWAY. A node "
      "handshake also pays for introductions (gossip_fanout, default 16: the newcomer to recent peers "
      "and them to it); py-setowire queues every new peer id to every open peer (its 30 s GOSSIP_TTL "
      "never repeats an id here). node-mmsg-1-fanout0 (`--gossip-fanout 0`) is the handshake cost "
      "without introductions: its ratio to the X25519 bound is the crypto path's.\n")
print("### Rate: new sessions/s\n")
hs_py = med("handshake", "py-setowire", "rate")
rows = []
for t in one_shard + fanout0 + ["py-setowire"]:
    if t not in targets:
        continue
    r = med("handshake", t, "rate")
    per_shard = r / targets[t][0] if r is not None else None
    rows.append([label(t), fmt(r), spread("handshake", t), fmt(med("handshake", t, "p50"), 3), fmt(med("handshake", t, "p99"), 3),
                 fmt(med("handshake", t, "loss_ratio") * 100 if r is not None else None, 3),
                 ratio(per_shard, bound), ratio(r, hs_py), note("handshake", t)])
table(["target", "handshakes/s", "min..max", "p50 ms", "p99 ms", "loss %", "per shard ÷ X25519 bound", "÷ py-setowire", "note"], rows)
print("### CPU basis: handshakes per CPU-second of the target\n")
print("For a 1-shard node, handshakes per CPU-second is its per-shard (per-core) capacity; "
      "÷ X25519 bound compares it with one bare Diffie-Hellman per core-second.\n")
cpu_table("handshake", [(t, label(t)) for t in one_shard + fanout0 + ["py-setowire"]],
          [("per CPU-second ÷ X25519 bound", bound), ("÷ py-setowire", per_cpu_s("handshake", "py-setowire"))])

# ---- dht ----
print(f"## dht (64 clients x 4 in flight, {secs} s per run)\n")
print("### Rate: operations/s\n")
dht_py = med("dht", "py-dht", "rate")
rows = []
for t in one_shard + ["py-dht"]:
    if t not in targets:
        continue
    r = med("dht", t, "rate")
    errs = med("dht", t, "errors")
    rows.append([label(t) if t != "py-dht" else "py-setowire SimpleDHT", fmt(r), spread("dht", t),
                 fmt(med("dht", t, "p50"), 3), fmt(med("dht", t, "p99"), 3),
                 fmt(med("dht", t, "loss_ratio") * 100 if r is not None else None, 3), fmt(errs),
                 ratio(r, dht_py), note("dht", t)])
table(["target", "ops/s", "min..max", "p50 ms", "p99 ms", "loss %", "errors", "÷ SimpleDHT", "note"], rows)
print("### CPU basis: operations per CPU-second of the target\n")
cpu_table("dht", [(t, label(t)) for t in one_shard] + [("py-dht", "py-setowire SimpleDHT")],
          [("÷ SimpleDHT", per_cpu_s("dht", "py-dht"))])

# ---- ping at saturation ----
if any(sc == "ping-sat" for sc, _ in runs):
    print(f"## ping --raw --saturate, pinned (512 peers x 4 in flight, {secs} s per run)\n")
    print("The target on core 0 (every thread), setowire-sim on core 1 in its saturating mode: one "
          "thread, a socket per peer on its own 127.1.x.y address, epoll, recvmmsg, and each "
          "peer's PINGs in one segmented send (UDP_SEGMENT; the target receives them as separate "
          "datagrams). The target is saturated when its core is busy near 1.00 while the "
          "generator's is not; target CPU per reply is its utime+stime over the whole run "
          "÷ every reply of the run, as above. Other work on the machine takes from both cores.\n")
    sat_targets = [t for t in one_shard + ["echo-mmsg"] if t in targets]
    echo_rate = med("ping-sat", "echo-mmsg", "rate")
    echo_cap = per_cpu_s("ping-sat", "echo-mmsg")
    rows = []
    for t in sat_targets:
        r = med("ping-sat", t, "rate")
        gens = [v for (sc, tt, _), v in gen_busy.items() if sc == "ping-sat" and tt == t]
        gen_us = [gen_cpu[(sc, tt, rnd)] * 1e6 / sum(x["rate"] for x in rep.get("timeline", []))
                  for (sc, tt), reps in runs.items() if sc == "ping-sat" and tt == t
                  for rnd, rep in reps.items()
                  if (sc, tt, rnd) in gen_cpu and sum(x["rate"] for x in rep.get("timeline", [])) > 0]
        cap = per_cpu_s("ping-sat", t)
        both = [v for (sc, tt, _), v in core_busy.items() if sc == "ping-sat" and tt == t]
        core0 = statistics.median(b[0] for b in both) if both else None
        core1 = statistics.median(b[1] for b in both) if both else None
        rows.append([label(t), fmt(r), spread("ping-sat", t), fmt(med("ping-sat", t, "p50"), 3),
                     fmt(med("ping-sat", t, "p99"), 3),
                     fmt(med("ping-sat", t, "loss_ratio") * 100 if r is not None else None, 3),
                     fmt(us_per_op("ping-sat", t), 2), fmt(statistics.median(gen_us) if gen_us else None, 2),
                     f"{fmt(cores('ping-sat', t), 2)} / {fmt(core0, 2)}",
                     f"{fmt(statistics.median(gens) if gens else None, 2)} / {fmt(core1, 2)}",
                     ratio(r, echo_rate), ratio(cap, echo_cap), cpu_note("ping-sat", t)])
    table(["target", "replies/s", "min..max", "p50 ms", "p99 ms", "loss %", "target CPU µs/reply",
           "generator CPU µs/reply", "core 0: target / all", "core 1: generator / all", "÷ echo-mmsg (replies/s)",
           "÷ echo-mmsg (replies per CPU-second)", "note"], rows)
    print("core N: X / Y is the share of that core the target (or the generator) used over the run, "
          "then the share anything used (from /proc/stat; steal counted as used): Y − X is what "
          "other work took. A node answers a peer's PINGs that arrive together in one BATCH "
          "datagram (the echo sends a datagram per PONG): replies are PONGs, whatever carried them.\n")

print("Idle CPU of each target between its own runs (CPU-ms per wall second): " +
      ", ".join(f"{t} {fmt(idle[t] * 1000 if idle.get(t) is not None else None, 1)}" for t in targets) + ".\n")
EOF
say "done in ${SECONDS} s (build ${BUILD_SECS} s, measurements ${MEASURE_SECS} s); reports in $OUT/json, logs in $OUT/logs, summary in $OUT/summary.md"
