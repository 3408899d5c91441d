#!/usr/bin/env bash
# Scale-out, shown: three linepool instances on loopback behind HAProxy in
# TCP mode (balance leastconn, a tcp-check that sends `ping` and expects
# `ACK: ping`, agent-check on each instance's agent port, send-proxy-v2
# with --proxy-protocol on the instances). While `linepool load
# --connect-per-request` runs through HAProxy, each instance in turn is
# drained and restarted (SIGTERM with --drain, then started again); the
# load report at the end says whether any request failed (target: none).
# Loopback only; about DEMO_SECONDS (default 24) long.
#
# HAProxy comes from Debian's package: apt-get install haproxy
#
#   scripts/haproxy-demo.sh
#   DEMO_SECONDS=12 scripts/haproxy-demo.sh
#   DEMO_DRAIN=0 scripts/haproxy-demo.sh    # the control: no drain
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if ! command -v haproxy >/dev/null; then
  echo "haproxy-demo: haproxy not found; install it with: apt-get install haproxy" >&2
  exit 2
fi
SECS=${DEMO_SECONDS:-24}
DRAIN=${DEMO_DRAIN:-2s}
LINEPOOL=$(linepool_bin)
work=$(mktemp -d)
declare -a pids
cleanup() {
  for pid in "${pids[@]}" ${haproxy_pid:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

front=$(free_port)
for i in 1 2 3; do
  ports[i]=$(free_port)
  agents[i]=$(free_port)
done

# start_instance I: instance I on its fixed ports, drained on SIGTERM.
start_instance() {
  local i=$1
  "$LINEPOOL" serve --port "${ports[i]}" --proxy-protocol --drain "$DRAIN" \
    --agent "127.0.0.1:${agents[i]}" 2>>"$work/linepool-$i.log" &
  pids[i]=$!
  for _ in $(seq 100); do
    grep -q "agent listening" "$work/linepool-$i.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "haproxy-demo: instance $i did not start" >&2
  exit 1
}

cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 4096
defaults
    mode tcp
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    retries 3
    option redispatch
frontend linepool
    bind 127.0.0.1:$front
    default_backend instances
backend instances
    balance leastconn
    option tcp-check
    tcp-check send ping\n
    tcp-check expect string ACK:\ ping
    default-server send-proxy-v2 check-send-proxy check inter 300ms fall 2 rise 2 agent-check agent-inter 300ms
    server one 127.0.0.1:${ports[1]} agent-port ${agents[1]}
    server two 127.0.0.1:${ports[2]} agent-port ${agents[2]}
    server three 127.0.0.1:${ports[3]} agent-port ${agents[3]}
CFG

for i in 1 2 3; do start_instance "$i"; done
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
sleep 1
echo "haproxy-demo: HAProxy on 127.0.0.1:$front, instances on ${ports[*]:1}, ${SECS}s of load" >&2

"$LINEPOOL" load --port "$front" --connect-per-request -c 8 -d "${SECS}s" >"$work/report.txt" &
load_pid=$!

# Rolling restart, spread over the run: drain, wait for the exit, start
# again, give HAProxy time to see it healthy, next.
step=$(python3 -c "print(max(1.0, ($SECS - 2) / 3 - 2.5))")
for i in 1 2 3; do
  sleep "$step"
  echo "haproxy-demo: draining and restarting instance $i" >&2
  kill -TERM "${pids[i]}"
  wait "${pids[i]}" || true
  start_instance "$i"
done

status=0
wait "$load_pid" || status=$?
for i in 1 2 3; do
  echo "instance $i before its restart: $(grep -m 1 -o 'stopped connections=[0-9]*' "$work/linepool-$i.log")" >&2
done
cat "$work/report.txt"
exit "$status"
