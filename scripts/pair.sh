#!/usr/bin/env bash
# Compares two builds of linepool (and, with WITH_TOKIO=1, the tokio
# reference in bench/tokio-ref) side by side, in one sitting: for each
# scenario every server is started fresh, pinned to CPU 0 (the load tool to
# CPU 1) where the machine has two cores, and the rounds alternate between
# them (in the reverse order every other round), so that whatever else the
# machine does falls on all alike. Each
# round records the rate and the server's CPU per reply (utime + stime from
# /proc/PID/stat over the run). Prints every round, then per scenario the
# medians, and the ratios of the new build to the base (and to tokio),
# taken round by round and then the median.
#
#   BASE_BIN=/tmp/linepool-old scripts/pair.sh             # base against this tree
#   BASE_BIN=old LINEPOOL_BIN=new ROUNDS=7 SECS=5 scripts/pair.sh
#   SCENARIOS="pipelined-50x32" WITH_TOKIO=1 BASE_BIN=old scripts/pair.sh
#
# Scenarios: pingpong-50, connections-1000, pipelined-50x32,
# connect-per-request-8 (all four by default).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
SCENARIOS=${SCENARIOS:-pingpong-50 connections-1000 pipelined-50x32 connect-per-request-8}
: "${BASE_BIN:?BASE_BIN must name the linepool build to compare against}"

source scripts/lib.sh
NEW=${LINEPOOL_BIN:-$(linepool_bin)}
servers="new base"
if [ "${WITH_TOKIO:-0}" = 1 ]; then
  cargo build --release --quiet --manifest-path bench/tokio-ref/Cargo.toml
  TOKIO="$(target_dir bench/tokio-ref/Cargo.toml)/release/tokio-ref"
  servers="new base tokio"
fi

pin_cpus || echo "pair: not pinned (needs taskset and two cores)" >&2
CLK_TCK=$(getconf CLK_TCK)
# 1,000 connections need as many descriptors on each side.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
declare -A pids ports
trap 'stop_named; rm -rf "$work"' EXIT


load_flags() {
  case $1 in
    pingpong-50) echo "-c 50" ;;
    connections-1000) echo "-c 1000" ;;
    pipelined-50x32) echo "-c 50 --pipeline 32" ;;
    connect-per-request-8) echo "-c 8 --connect-per-request" ;;
    *) echo "pair: unknown scenario $1" >&2 && exit 2 ;;
  esac
}

rounds="$work/rounds.tsv"
for scenario in $SCENARIOS; do
  flags=$(load_flags "$scenario")
  for name in $servers; do
    case $name in
      new) start_named new "$NEW" serve --port 0 ;;
      base) start_named base "$BASE_BIN" serve --port 0 ;;
      tokio) start_named tokio "$TOKIO" 0 ;;
    esac
  done
  for round in $(seq "$ROUNDS"); do
    # Every other round runs the servers in the reverse order, so that
    # none always comes first or last after a pause.
    order=$servers
    if [ $((round % 2)) = 0 ]; then
      # shellcheck disable=SC2086 # one server a word
      order=$(printf '%s\n' $servers | tac | tr '\n' ' ')
    fi
    for name in $order; do
      before=$(cpu_ticks "${pids[$name]}")
      # shellcheck disable=SC2086 # the flags are meant to split
      report=$("${LOAD_CPU[@]}" "$NEW" load --json --port "${ports[$name]}" -d "${SECS}s" $flags)
      after=$(cpu_ticks "${pids[$name]}")
      python3 -c '
import json, sys
r = json.load(sys.stdin)
scenario, name, rnd, ticks, hz = sys.argv[1:]
replies = r["replies"]
rate = replies / r["elapsed_secs"]
us = int(ticks) / int(hz) * 1e6 / max(replies, 1)
errors = r["errors"]["total"]
print(f"{scenario}\t{name}\t{rnd}\t{rate:.0f}\t{us:.3f}\t{errors}")
' "$scenario" "$name" "$round" $((after - before)) "$CLK_TCK" <<<"$report" | tee -a "$rounds"
    done
  done
  stop_named
done

python3 - "$rounds" "$servers" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
servers = sys.argv[2].split()
print()
print("scenario\tserver\trate/s (median)\tCPU us/reply (median)\trate vs base\tCPU vs base"
      + ("\trate vs tokio\tCPU vs tokio" if "tokio" in servers else ""))
for scenario in dict.fromkeys(r[0] for r in rows):
    mine = {name: {r[2]: (float(r[3]), float(r[4]))
                   for r in rows if r[0] == scenario and r[1] == name}
            for name in servers}

    def paired(other):
        # Round by round, then the median: the machine's pace drifts
        # between rounds, and a ratio within one round sees the same pace.
        rounds = [k for k in mine["new"] if k in mine[other]]
        return (statistics.median(mine["new"][k][0] / mine[other][k][0] for k in rounds),
                statistics.median(mine["new"][k][1] / mine[other][k][1] for k in rounds))

    for name in servers:
        rate = statistics.median(v[0] for v in mine[name].values())
        cpu = statistics.median(v[1] for v in mine[name].values())
        line = f"{scenario}\t{name}\t{rate:,.0f}\t{cpu:.3f}"
        if name == "new":
            line += "\t{:.3f}\t{:.3f}".format(*paired("base"))
            if "tokio" in mine:
                line += "\t{:.3f}\t{:.3f}".format(*paired("tokio"))
        print(line)
EOF
