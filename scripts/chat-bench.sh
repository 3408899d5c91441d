#!/usr/bin/env bash
# The chat room on one instance against the same room on three instances
# sharing a Redis bus, in paired rounds: each round runs `linepool load
# --protocol chat` against a fresh single instance, then against three
# fresh instances on a fresh Redis, with the same members and rate. It
# prints each run (lines, deliveries owed / delivered / lost / duplicated,
# fan-out per second, latency percentiles, and the servers' CPU time per
# delivery: utime + stime from /proc of the instances and Redis), then the
# medians. Loopback only, unpinned (five processes share the cores).
#
#   scripts/chat-bench.sh                                   # 900 members, 0.1 line/s each
#   CHAT_MEMBERS=300 CHAT_RATE=1 CHAT_RUNS=3 scripts/chat-bench.sh
#   CHAT_MEMBERS=900 CHAT_RATE=2 scripts/chat-bench.sh      # the full room
#   LINEPOOL_BIN=/path/to/older/linepool scripts/chat-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if ! command -v redis-server >/dev/null; then
  apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi
MEMBERS=${CHAT_MEMBERS:-900}
RATE=${CHAT_RATE:-0.1}
SECS=${CHAT_SECONDS:-10}
RUNS=${CHAT_RUNS:-3}
# LINEPOOL_BIN measures another build of linepool (an older commit, say).
LINEPOOL=${LINEPOOL_BIN:-$(linepool_bin)}
CLK_TCK=$(getconf CLK_TCK)
work=$(mktemp -d)
declare -a pids=()
cleanup() {
  # Every job of this script, also one started but not yet listed.
  for pid in "${pids[@]}" $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# run_room KIND INSTANCES: one run; appends a JSON line to $work/KIND.
run_room() {
  local kind=$1 n=$2 spread="" bus=()
  if [ "$n" -gt 1 ]; then
    local rport
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
    pids+=($!)
    until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
    bus=(--chat-bus "redis://127.0.0.1:$rport")
  fi
  for i in $(seq "$n"); do
    # start_linepool reads the log at once: it must exist.
    : >"$work/$kind-$i.log"
    start_linepool "$work/$kind-$i.log" --protocol chat --idle-timeout 0 "${bus[@]}"
    pids+=("$SERVER_PID")
    spread="$spread${spread:+,}127.0.0.1:$SERVER_PORT"
  done
  local before after
  before=$(cpu_ticks "${pids[@]}")
  "$LINEPOOL" load --protocol chat -c "$MEMBERS" -R "$(python3 -c "print($MEMBERS * $RATE)")" \
    -d "${SECS}s" --threads 2 --spread "$spread" --json >"$work/run.json" || true
  after=$(cpu_ticks "${pids[@]}")
  python3 - "$work/run.json" "$((after - before))" "$CLK_TCK" >>"$work/$kind" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["cpu_s"] = int(sys.argv[2]) / int(sys.argv[3])
print(json.dumps(r))
PY
  stop_all
}

echo "chat-bench: $MEMBERS members, $RATE lines/s each, ${SECS}s, $RUNS paired rounds" >&2
for round in $(seq "$RUNS"); do
  run_room single 1
  run_room bus 3
  echo "chat-bench: round $round done" >&2
done
python3 - "$work/single" "$work/bus" <<'PY'
import json, statistics, sys
def rows(path):
    return [json.loads(l) for l in open(path)]
def line(name, r):
    lat = r["latency_us"]
    per = 1e6 * r["cpu_s"] / max(r["delivered"], 1)
    return (f"{name:<22} sent {r['sent']:>7}  owed {r['expected']:>9}  delivered {r['delivered']:>9}  "
            f"lost {r['lost']:>8}  dup {r['duplicated']}  fan-out/s {r['fanout_per_s']:>9.0f}  "
            f"p50 {lat['p50']/1000:.2f} p99 {lat['p99']/1000:.2f} ms  cpu/delivery {per:.2f} us")
med = {}
for name, path in (("one instance", sys.argv[1]), ("three on a bus", sys.argv[2])):
    runs = rows(path)
    for r in runs:
        print(line(name, r))
    m = {k: statistics.median(r[k] for r in runs) for k in ("sent", "expected", "delivered", "lost", "duplicated", "fanout_per_s", "cpu_s")}
    m["latency_us"] = {q: statistics.median(r["latency_us"][q] for r in runs) for q in ("p50", "p99")}
    med[name] = m
for name, m in med.items():
    per = 1e6 * m["cpu_s"] / max(m["delivered"], 1)
    print(f"median {name:<15} fan-out/s {m['fanout_per_s']:.0f}  lost {m['lost']:.0f}  dup {m['duplicated']:.0f}  "
          f"p50 {m['latency_us']['p50']/1000:.2f} ms  p99 {m['latency_us']['p99']/1000:.2f} ms  cpu/delivery {per:.2f} us")
ratio = med["three on a bus"]["fanout_per_s"] / max(med["one instance"]["fanout_per_s"], 1)
print(f"fan-out, three on a bus / one instance: {ratio:.2f}")
PY
