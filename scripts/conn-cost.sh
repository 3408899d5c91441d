#!/usr/bin/env bash
# Measures what one connection costs the server, in CPU time, for linepool
# and for the tokio reference (bench/tokio-ref), under connect-per-request
# load: each request opens a connection, sends one line, reads the reply and
# closes. Both servers run at once, pinned to CPU 0 (the load tool to CPU 1)
# where the machine has two cores, and the rounds alternate between them,
# so that whatever else the machine does falls on both sides alike. Each
# round reads the server's utime + stime (/proc/PID/stat) before and after
# the load and divides by the connections it completed. Prints every round,
# then the medians and linepool's figure as a fraction of tokio's.
#
#   scripts/conn-cost.sh                       # 7 rounds each, 3 s each
#   ROUNDS=5 SECS=2 scripts/conn-cost.sh
#   SERVE_FLAGS="--workers 2" scripts/conn-cost.sh
#   LINEPOOL_BIN=/path/to/older/linepool scripts/conn-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-7}
SECS=${SECS:-3}
CONNS=${CONNS:-8}
SERVE_FLAGS=${SERVE_FLAGS:-}

source scripts/lib.sh
# LINEPOOL_BIN measures another build of linepool (an older commit, say).
LINEPOOL=${LINEPOOL_BIN:-$(linepool_bin)}
cargo build --release --quiet --manifest-path bench/tokio-ref/Cargo.toml
TOKIO="$(target_dir bench/tokio-ref/Cargo.toml)/release/tokio-ref"

pin_cpus || echo "conn-cost: not pinned (needs taskset and two cores)" >&2
CLK_TCK=$(getconf CLK_TCK)

work=$(mktemp -d)
declare -A pids ports
cleanup() {
  stop_named
  rm -rf "$work"
}
trap cleanup EXIT



# shellcheck disable=SC2086 # the flags are meant to split
start_named linepool "$LINEPOOL" serve --port 0 $SERVE_FLAGS
start_named tokio "$TOKIO" 0

rounds="$work/rounds.tsv"
for round in $(seq "$ROUNDS"); do
  for name in linepool tokio; do
    before=$(cpu_ticks "${pids[$name]}")
    report=$("${LOAD_CPU[@]}" "$LINEPOOL" load --json --port "${ports[$name]}" \
      -c "$CONNS" --connect-per-request -d "${SECS}s")
    after=$(cpu_ticks "${pids[$name]}")
    done_conns=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["replies"])' <<<"$report")
    awk -v n="$name" -v r="$round" -v t=$((after - before)) -v hz="$CLK_TCK" -v c="$done_conns" \
      'BEGIN { printf "%s\t%d\t%d\t%.2f\n", n, r, c, t / hz * 1e6 / c }' | tee -a "$rounds"
  done
done

python3 - "$rounds" <<'EOF'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1])]
cost = {name: [float(r[3]) for r in rows if r[0] == name] for name in ("linepool", "tokio")}
lp, tk = statistics.median(cost["linepool"]), statistics.median(cost["tokio"])
print(f"median us per connection: linepool {lp:.2f}  tokio {tk:.2f}  ratio {lp / tk:.3f}")
EOF
