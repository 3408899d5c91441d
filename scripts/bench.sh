#!/usr/bin/env bash
# Benchmarks linepool side by side with the tokio reference server
# (bench/tokio-ref) and writes the table, with the raw JSON, to
# docs/benchmarks.md. Each scenario runs on a fresh server, BENCH_RUNS times
# (default 3) for BENCH_SECONDS each (default 5); the table shows medians.
# Where the machine has two cores the server is pinned to CPU 0 and the load
# tool to CPU 1.
#
#   scripts/bench.sh                 # full matrix, about 5 minutes
#   BENCH_SECONDS=1 BENCH_RUNS=1 BENCH_OUT=/tmp/b.md scripts/bench.sh   # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-5}
RUNS=${BENCH_RUNS:-3}
OUT=${BENCH_OUT:-docs/benchmarks.md}

cargo build --release --quiet
cargo build --release --quiet --manifest-path bench/tokio-ref/Cargo.toml
LINEPOOL=./target/release/linepool
TOKIO=./bench/tokio-ref/target/release/tokio-ref

if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  SERVER_CPU=(taskset -c 0)
  LOAD_CPU=(taskset -c 1)
  PINNING="server pinned to CPU 0, load tool to CPU 1 (taskset)"
else
  SERVER_CPU=()
  LOAD_CPU=()
  PINNING="not pinned (needs taskset and two cores)"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
raw="$work/raw.jsonl"
: >"$raw"

# start_server COMMAND...: starts a server that logs "listening on IP:PORT"
# to stderr, and sets server_pid and port.
start_server() {
  "${SERVER_CPU[@]}" "$@" 2>"$work/server.log" &
  server_pid=$!
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$work/server.log" | head -n 1)
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "bench: server did not start:" >&2
  cat "$work/server.log" >&2
  exit 1
}

# stop_server: records the server's peak resident memory, then stops it.
stop_server() {
  peak_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# scenario NAME SERVER-KIND "SERVER-FLAGS" LOAD-FLAGS...
scenario() {
  local name=$1 kind=$2 server_flags=$3
  shift 3
  if [ "$kind" = linepool ]; then
    # shellcheck disable=SC2086 # the flags are meant to split
    start_server "$LINEPOOL" serve --port 0 $server_flags
  else
    start_server "$TOKIO" 0
  fi
  for run in $(seq "$RUNS"); do
    report=$("${LOAD_CPU[@]}" "$LINEPOOL" load --json --port "$port" -d "$SECS" "$@")
    printf '{"scenario":"%s","server":"%s","run":%d,"report":%s}\n' "$name" "$kind" "$run" "$report" >>"$raw"
  done
  stop_server
  printf '{"scenario":"%s","server":"%s","peak_rss_kb":%d}\n' "$name" "$kind" "$peak_kb" >>"$raw"
  echo "bench: $name on $kind done" >&2
}

for kind in linepool tokio; do
  scenario pingpong-1 "$kind" "" -c 1
  scenario pingpong-50 "$kind" "" -c 50
  scenario pipelined-50x32 "$kind" "" -c 50 --pipeline 32
  scenario connect-per-request-8 "$kind" "" -c 8 --connect-per-request
  scenario connections-1000 "$kind" "--workers 1000" -c 1000
done
for workers in 1 2 4 8 32 128; do
  scenario "sweep-workers-$workers" linepool "--workers $workers --queue 0 --overload reject" -c 128
done

python3 scripts/bench_report.py "$raw" "$PINNING" "$SECS" "$RUNS" >"$OUT"
echo "bench: wrote $OUT" >&2
