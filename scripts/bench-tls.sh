#!/usr/bin/env bash
# Benchmarks linepool's TLS against its own plaintext and against HAProxy
# terminating TLS in front of plaintext linepool (what an operator would
# use instead), in paired rounds: each round runs the load against every
# variant one after the other, so drift in the machine's speed falls on all
# alike. Certificates are ECDSA P-256, made by openssl at run time. The
# server side (linepool, or HAProxy and its linepool backend) is pinned to
# CPU 0, the load tool to CPU 1, as in scripts/bench.sh. Prints a table of
# medians (replies/s, p99, the server side's CPU per reply) and the
# round-by-round ratios, then the memory of idle TLS connections beside
# idle plaintext ones (held by Python's ssl).
#
#   scripts/bench-tls.sh                        # 5 rounds of 5 s, about 5 minutes
#   BENCH_SECONDS=2 BENCH_RUNS=3 scripts/bench-tls.sh
#   BENCH_IDLE=10000 scripts/bench-tls.sh       # idle connections for the memory figure
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${BENCH_SECONDS:-5}
RUNS=${BENCH_RUNS:-5}
IDLE=${BENCH_IDLE:-2000}
source scripts/lib.sh
LINEPOOL=$(linepool_bin)
pin_cpus || true
HAPROXY=$(command -v haproxy || true)
[ -n "$HAPROXY" ] || echo "bench-tls: haproxy not found (apt-get install haproxy): its rows are left out" >&2
ulimit -n "$(ulimit -Hn)"
CLK_TCK=$(getconf CLK_TCK)

work=$(mktemp -d)
pids=()
trap '{ for p in "${pids[@]}"; do kill -KILL "$p" || true; done; wait; } 2>/dev/null; rm -rf "$work"' EXIT
raw=$work/raw.jsonl
: >"$raw"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=bench CA" -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$work/key.pem" -out "$work/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
  -CAcreateserial -days 2 -extfile "$work/ext" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
TLS_CLIENT=(--tls --tls-ca "$work/ca.pem" --tls-server-name localhost)

# start NAME ARGS...: starts `linepool serve --port 0 ARGS` on the server
# CPU; sets port_NAME and pid_NAME.
start() {
  local name=$1
  shift
  "${SERVER_CPU[@]}" "$LINEPOOL" serve --port 0 --log-level warn --max-connections 20000 "$@" \
    2>"$work/$name.log" &
  local pid=$!
  pids+=("$pid")
  # The log level hides the listening line: find the port from the socket.
  local port=""
  for _ in $(seq 200); do
    port=$(ss -Htlnp 2>/dev/null | awk -v pid="pid=$pid," '$0 ~ pid {split($4, a, ":"); print a[length(a)]; exit}')
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "bench-tls: $name did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
  printf -v "port_$name" '%s' "$port"
  printf -v "pid_$name" '%s' "$pid"
}

start plain
start tls --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
variants="plain tls"
if [ -n "$HAPROXY" ]; then
  start backend
  hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$work/haproxy.cfg" <<CFG
global
  maxconn 8000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend tls
  bind 127.0.0.1:$hport ssl crt $work/haproxy.pem
  default_backend plain
backend plain
  server linepool 127.0.0.1:$port_backend
CFG
  "${SERVER_CPU[@]}" "$HAPROXY" -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
  pid_haproxy=$!
  pids+=("$pid_haproxy")
  for _ in $(seq 100); do
    ss -Htln | grep -q ":$hport " && break
    sleep 0.05
  done
  port_haproxy=$hport
  variants="plain tls haproxy"
fi

# server_ticks VARIANT: the CPU of the server side of a variant.
server_ticks() {
  case $1 in
    haproxy) cpu_ticks "$pid_haproxy" "$pid_backend" ;;
    *) local p="pid_$1"; cpu_ticks "${!p}" ;;
  esac
}

round() { # SCENARIO LOAD-FLAGS...
  local scenario=$1 variant run
  shift
  for run in $(seq "$RUNS"); do
    for variant in $variants; do
      local port="port_$variant" flags=()
      [ "$variant" = plain ] || flags=("${TLS_CLIENT[@]}")
      local before after report
      before=$(server_ticks "$variant")
      report=$("${LOAD_CPU[@]}" "$LINEPOOL" load --json --port "${!port}" -d "$SECS" "${flags[@]}" "$@")
      after=$(server_ticks "$variant")
      printf '{"scenario":"%s","variant":"%s","run":%d,"cpu_secs":%s,"report":%s}\n' \
        "$scenario" "$variant" "$run" \
        "$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN {print t / hz}')" "$report" >>"$raw"
    done
  done
  echo "bench-tls: $scenario done" >&2
}

round "ping-pong, 50 connections" -c 50
round "pipelined, 50 x 32" -c 50 --pipeline 32
round "connect per request, 8 clients (full handshakes)" -c 8 --connect-per-request

# Memory: IDLE connections held idle (TLS ones with the handshake done) by
# Python, on a fresh plaintext and a fresh TLS server; peak RSS of each.
idle_rss() { # NAME PORT TLS(0|1)
  local pidvar="pid_$1"
  python3 - "$2" "$3" "$IDLE" "$work/ca.pem" <<'PY'
import socket, ssl, sys, time
port, tls, n, ca = int(sys.argv[1]), sys.argv[2] == "1", int(sys.argv[3]), sys.argv[4]
context = ssl.create_default_context(cafile=ca)
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = context.wrap_socket(s, server_hostname="localhost")
    held.append(s)
print("ready", flush=True)
sys.stdin.readline()
PY
}
measure_idle() { # NAME TLS(0|1)
  local name=$1 port="port_$1" pid="pid_$1"
  coproc HOLD { idle_rss "$name" "${!port}" "$2"; }
  read -r _ <&"${HOLD[0]}"
  local rss
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/${!pid}/status")
  echo >&"${HOLD[1]}"
  wait "$HOLD_PID" 2>/dev/null || true
  echo "$rss"
}
start idleplain
start idletls --tls-cert "$work/cert.pem" --tls-key "$work/key.pem"
base_plain=$(awk '/^VmRSS/ {print $2}' "/proc/$pid_idleplain/status")
base_tls=$(awk '/^VmRSS/ {print $2}' "/proc/$pid_idletls/status")
rss_plain=$(measure_idle idleplain 0)
rss_tls=$(measure_idle idletls 1)

python3 - "$raw" "$SECS" "$RUNS" "$IDLE" "$base_plain" "$rss_plain" "$base_tls" "$rss_tls" <<'PY'
import json, statistics, sys
raw, secs, runs, idle = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
base_plain, rss_plain, base_tls, rss_tls = map(int, sys.argv[5:9])
rows = [json.loads(line) for line in open(raw)]
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
def runs_of(s, v):
    return sorted((r for r in rows if r["scenario"] == s and r["variant"] == v), key=lambda r: r["run"])
def med(xs):
    return statistics.median(xs) if xs else float("nan")
print(f"Medians of {runs} paired rounds of {secs} s; server side pinned to CPU 0, load tool to CPU 1.\n")
print("| scenario | variant | replies/s | p99 µs | server CPU µs/reply | ratio to plaintext | ratio to HAProxy |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for s in scenarios:
    by = {v: runs_of(s, v) for v in ("plain", "tls", "haproxy")}
    for v, label in (("plain", "linepool plaintext"), ("tls", "linepool TLS"), ("haproxy", "HAProxy TLS -> linepool")):
        rs = by[v]
        if not rs:
            continue
        rate = med([r["report"]["replies_per_sec"] for r in rs])
        p99 = med([r["report"]["latency_us"]["p99"] for r in rs])
        cpu = med([r["cpu_secs"] * 1e6 / max(r["report"]["replies"], 1) for r in rs])
        def ratio(other):
            pairs = [a["report"]["replies_per_sec"] / b["report"]["replies_per_sec"]
                     for a, b in zip(rs, by[other]) if b["report"]["replies_per_sec"] > 0]
            return f"{med(pairs):.2f}" if pairs and v != other else "–"
        print(f"| {s} | {label} | {rate:,.0f} | {p99:,.1f} | {cpu:.2f} | {ratio('plain')} | {ratio('haproxy') if by['haproxy'] else '–'} |")
print()
per = (rss_tls - base_tls - (rss_plain - base_plain)) / idle
print(f"Idle connections: {idle:,} held by Python's ssl (TLS: handshake done, nothing sent).")
print(f"Server RSS before / with them: plaintext {base_plain/1024:.1f} / {rss_plain/1024:.1f} MiB, "
      f"TLS {base_tls/1024:.1f} / {rss_tls/1024:.1f} MiB: {per:.1f} KiB more per TLS connection than per plaintext one.")
PY
