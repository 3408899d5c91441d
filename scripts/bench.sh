#!/usr/bin/env bash
# Benchmarks linepool side by side with the tokio reference server
# (bench/tokio-ref) and the naive std thread-per-connection server
# (bench/std-ref), and writes the table, with the raw JSON, to
# docs/benchmarks.md, and its charts (SVG) beside it: rate and CPU per
# reply by scenario, and the latency spectra of the 50- and 1,000-connection
# scenarios, servers overlaid. Each scenario runs on a fresh server, BENCH_RUNS times
# (default 5) for BENCH_SECONDS each (default 5); the table shows medians.
# Where the machine has two cores the server is pinned to CPU 0 and the load
# tool to CPU 1. Each run also records the server's CPU time (utime + stime
# from /proc/PID/stat) and each scenario the server's peak RSS.
#
#   scripts/bench.sh                 # full matrix, about 12 minutes
#   BENCH_SECONDS=1 BENCH_RUNS=1 BENCH_OUT=/tmp/b.md scripts/bench.sh   # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-5}
RUNS=${BENCH_RUNS:-5}
OUT=${BENCH_OUT:-docs/benchmarks.md}

source scripts/lib.sh
LINEPOOL=$(linepool_bin)
cargo build --release --quiet --manifest-path bench/tokio-ref/Cargo.toml
cargo build --release --quiet --manifest-path bench/std-ref/Cargo.toml
TOKIO="$(target_dir bench/tokio-ref/Cargo.toml)/release/tokio-ref"
STD="$(target_dir bench/std-ref/Cargo.toml)/release/std-ref"

if pin_cpus; then
  PINNING="server pinned to CPU 0, load tool to CPU 1 (taskset)"
else
  PINNING="not pinned (needs taskset and two cores)"
fi

# The 10,000-idle scenario holds that many sockets on each side.
ulimit -n "$(ulimit -Hn)"
CLK_TCK=$(getconf CLK_TCK)

work=$(mktemp -d)
server_pid=""
cleanup() {
  # shellcheck disable=SC2086 # one pid per word
  if [ -n "$server_pid" ]; then kill -KILL $server_pid 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
raw="$work/raw.jsonl"
: >"$raw"

# start_server NAME COMMAND...: starts a server that logs "listening on
# IP:PORT" to stderr; records its pid and port under NAME.
declare -A pids ports
start_server() {
  local name=$1
  shift
  "${SERVER_CPU[@]}" "$@" 2>"$work/$name.log" &
  pids[$name]=$!
  server_pid="${pids[*]}"
  ports[$name]=$(listening_port "$work/$name.log") && return 0
  echo "bench: $name did not start:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

# stop_servers: records each server's peak resident memory, then stops it.
stop_servers() {
  local name
  for name in "${!pids[@]}"; do
    peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/${pids[$name]}/status" 2>/dev/null || echo 0)
    kill -TERM "${pids[$name]}" 2>/dev/null || true
    wait "${pids[$name]}" 2>/dev/null || true
    printf '{"scenario":"%s","server":"%s","peak_rss_kb":%d}\n' "$scenario_name" "$name" "$peak_kb" >>"$raw"
  done
  pids=()
  ports=()
  server_pid=""
}

# scenario NAME "LINEPOOL-FLAGS" SERVERS LOAD-FLAGS...: starts fresh servers
# (all on the server CPU, where an idle one costs nothing), then runs the
# load against each in turn, RUNS rounds, so that drift in the machine's
# speed falls on every server alike.
scenario() {
  scenario_name=$1
  local flags=$2 servers=$3 name run report
  shift 3
  for name in $servers; do
    case $name in
      # shellcheck disable=SC2086 # the flags are meant to split
      linepool) start_server linepool "$LINEPOOL" serve --port 0 $flags ;;
      tokio) start_server tokio "$TOKIO" 0 ;;
      std) start_server std "$STD" 0 ;;
    esac
  done
  for run in $(seq "$RUNS"); do
    for name in $servers; do
      before=$(cpu_ticks "${pids[$name]}")
      if ! report=$("${LOAD_CPU[@]}" "$LINEPOOL" load --json --port "${ports[$name]}" -d "$SECS" "$@"); then
        echo "bench: $scenario_name: the load against $name failed; its log ends:" >&2
        tail -n 5 "$work/$name.log" >&2
        exit 1
      fi
      after=$(cpu_ticks "${pids[$name]}")
      printf '{"scenario":"%s","server":"%s","run":%d,"cpu_secs":%s,"report":%s}\n' \
        "$scenario_name" "$name" "$run" "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN {print t / hz}')" \
        "$report" >>"$raw"
    done
  done
  stop_servers
  echo "bench: $scenario_name done" >&2
}

ALL="linepool tokio std"
scenario pingpong-1 "" "$ALL" -c 1
scenario pingpong-50 "" "$ALL" -c 50
scenario pipelined-50x32 "" "$ALL" -c 50 --pipeline 32
scenario connect-per-request-8 "" "$ALL" -c 8 --connect-per-request
scenario connections-1000 "" "$ALL" -c 1000
# 10,000 connections that never send, held by the load tool for the whole
# run, beside 50 ping-pong ones; linepool's limit is raised to hold them
# all. The naive server would need 10,050 threads.
scenario idle-10000-busy-50 "--max-connections 10100" "linepool tokio" -c 50 --idle 10000
# The length-prefixed echo; the references speak only the line protocol.
scenario framed-50x32 "--protocol framed" linepool -c 50 --pipeline 32 --protocol framed
# More workers than the one core the server has only add hand-offs.
for workers in 1 2 4; do
  scenario "sweep-workers-$workers" "--workers $workers" linepool -c 128
done

# The report carries over the hand-run figures kept in the current file.
charts=$(dirname "$OUT")
python3 scripts/bench_report.py "$raw" "$PINNING" "$SECS" "$RUNS" docs/benchmarks.md \
  "$charts" "$work/spectra" >"$work/report.md"
for dir in "$work"/spectra/*/; do
  name=$(basename "$dir")
  # Run from the folder so that each line is named for its server alone;
  # bench_report.py left the scenario's label in its file "title".
  servers=()
  for server in linepool tokio std; do
    [ -f "$dir/$server" ] && servers+=("$server")
  done
  (cd "$dir" && "$LINEPOOL" load compare "${servers[@]}" --title "$(cat title)" \
    --svg "$work/spectrum.svg" >/dev/null)
  mv "$work/spectrum.svg" "$charts/bench-spectrum-$name.svg"
done
mv "$work/report.md" "$OUT"
echo "bench: wrote $OUT and its charts in $charts" >&2
