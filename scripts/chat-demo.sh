#!/usr/bin/env bash
# One chat room across three instances, shown: a Redis (Debian's
# redis-server) carries the room's bus, three `linepool serve --protocol
# chat --chat-bus` instances sit behind HAProxy (leastconn, an agent check,
# send-proxy-v2), and `linepool load --protocol chat` spreads its members
# over them through HAProxy; every member checks that it hears every other
# member's every line exactly once, in order. Meanwhile each instance in
# turn is drained and restarted (its members connect again, through HAProxy,
# to the others), then Redis itself is restarted once. The report says what
# was sent, delivered, lost and duplicated; lines said while a member was
# reconnecting are not owed to it, and lines lost are listed by the second
# they were said, so that they can be matched with the Redis outage.
# Loopback only; about DEMO_SECONDS (default 40) long.
#
#   scripts/chat-demo.sh
#   DEMO_MEMBERS=300 DEMO_RATE=2 DEMO_SECONDS=40 scripts/chat-demo.sh
#   DEMO_OUTAGE=30 DEMO_SECONDS=70 scripts/chat-demo.sh   # RSS across a 30 s outage
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

for tool in redis-server:redis-server haproxy:haproxy; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    apt-get install -y "${tool##*:}" || { apt-get update && apt-get install -y "${tool##*:}"; }
  fi
done
SECS=${DEMO_SECONDS:-40}
MEMBERS=${DEMO_MEMBERS:-90}
RATE=${DEMO_RATE:-2}
OUTAGE=${DEMO_OUTAGE:-2}
LINEPOOL=$(linepool_bin)
work=$(mktemp -d)
declare -a pids
cleanup() {
  # Every job of this script, also one started but not yet listed.
  for pid in "${pids[@]}" $(jobs -p) ${haproxy_pid:-} ${redis_pid:-}; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

now() { python3 -c 'import time; print(time.time())'; }
front=$(free_port)
redis_port=$(free_port)
for i in 1 2 3; do
  ports[i]=$(free_port)
  agents[i]=$(free_port)
done

start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    >>"$work/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "chat-demo: redis-server did not start" >&2
  exit 1
}

# start_instance I: chat instance I on its fixed ports, drained on SIGTERM.
start_instance() {
  local i=$1
  "$LINEPOOL" serve --protocol chat --port "${ports[i]}" --proxy-protocol --drain 2s \
    --agent "127.0.0.1:${agents[i]}" --idle-timeout 0 \
    --chat-bus "redis://127.0.0.1:$redis_port" 2>>"$work/linepool-$i.log" &
  pids[i]=$!
  for _ in $(seq 100); do
    grep -q "agent listening" "$work/linepool-$i.log" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "chat-demo: instance $i did not start" >&2
  exit 1
}

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

cat >"$work/haproxy.cfg" <<CFG
global
    maxconn 8192
defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch
frontend chat
    bind 127.0.0.1:$front
    default_backend instances
backend instances
    balance leastconn
    option tcp-check
    tcp-check expect string Enter\ your\ name:
    default-server send-proxy-v2 check-send-proxy check inter 300ms fall 2 rise 2 agent-check agent-inter 300ms
    server one 127.0.0.1:${ports[1]} agent-port ${agents[1]}
    server two 127.0.0.1:${ports[2]} agent-port ${agents[2]}
    server three 127.0.0.1:${ports[3]} agent-port ${agents[3]}
CFG

start_redis
for i in 1 2 3; do start_instance "$i"; done
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!
sleep 1
echo "chat-demo: HAProxy on 127.0.0.1:$front, instances on ${ports[*]:1}, Redis on $redis_port;" \
  "$MEMBERS members, $RATE lines/s each, ${SECS}s" >&2

total_rate=$(python3 -c "print($MEMBERS * $RATE)")
"$LINEPOOL" load --protocol chat --port "$front" -c "$MEMBERS" -R "$total_rate" -d "${SECS}s" \
  --threads 2 --json >"$work/report.json" 2>"$work/load.err" &
load_pid=$!

# Let the members join (the load settles before it speaks), then restart
# each instance in turn and Redis once, spread over the run.
# Each restart also takes the 2 s drain.
step=$(python3 -c "print(max(1.0, ($SECS - $OUTAGE - 4 - 3 * 2.5) / 4))")
sleep 3
for i in 1 2 3; do
  sleep "$step"
  echo "chat-demo: draining and restarting instance $i" >&2
  kill -TERM "${pids[i]}"
  wait "${pids[i]}" || true
  start_instance "$i"
done
sleep "$step"
before=$(for i in 1 2 3; do rss "${pids[i]}"; done | paste -sd' ')
echo "chat-demo: restarting Redis (down for ${OUTAGE}s)" >&2
down_at=$(now)
kill "$redis_pid"
wait "$redis_pid" 2>/dev/null || true
sleep "$OUTAGE"
after=$(for i in 1 2 3; do rss "${pids[i]}"; done | paste -sd' ')
start_redis
up_at=$(now)

status=0
wait "$load_pid" || status=$?
# Status 1 is lines lost, repeated or reordered, which the report below
# counts and judges itself (losses around the outage are expected), so the
# load tool's own line about it would only repeat it. Anything else (the
# room could not be set up) is said as the load tool said it.
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
  cat "$work/load.err" >&2
  exit "$status"
fi
# Stop the instances: each one's stop summary (the last in its log) has
# its bus figures.
for i in 1 2 3; do kill -TERM "${pids[i]}"; done
for i in 1 2 3; do wait "${pids[i]}" || true; done
for i in 1 2 3; do
  echo "instance $i: $(grep -o 'stopped .*' "$work/linepool-$i.log" | tail -n 1)" >&2
done
echo "chat-demo: RSS KiB of the instances before the outage: $before; at its end: $after" >&2
python3 - "$work/report.json" "$down_at" "$up_at" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
down, up = float(sys.argv[2]), float(sys.argv[3])
begin = r["begin_unix_us"] / 1e6
# Lines said from a second before Redis went down until it was back may be
# lost with it (Redis forgets what it had not yet sent on, and the bus
# drops what it held longer than Redis could have been back unnoticed);
# nothing said once it is back may be. Seconds are whole: the second in
# which Redis came back counts as the outage's.
outage = set(range(int(down - begin) - 1, int(up - begin) + 1))
lost_in = sum(n for s, n in r["lost_by_second"].items() if int(s) in outage)
print(f"members {r['members']}  reconnects {r['reconnects']}")
print(f"sent {r['sent']} lines; deliveries owed {r['expected']}, delivered {r['delivered']}, "
      f"lost {r['lost']} ({lost_in} around the Redis outage, {r['lost'] - lost_in} elsewhere), "
      f"duplicated {r['duplicated']}, reordered {r['reordered']}")
print(f"not owed (member or sender reconnecting): {r['excused']}")
if r["lost_by_second"]:
    last = max(int(s) for s in r["lost_by_second"])
    print(f"lost by the second they were said (s from the start): {r['lost_by_second']}; "
          f"Redis was down from {down - begin:.1f} s to {up - begin:.1f} s; "
          f"the last line lost was said in the second from {last} s")
print(f"delivered to all: {r['delivered_to_all']} of {r['sent']} lines")
lat = r["latency_us"]
print(f"latency ms p50 {lat['p50']/1000:.2f} p99 {lat['p99']/1000:.2f} max {lat['max']/1000:.2f}")
sys.exit(0 if r["duplicated"] == 0 and r["lost"] == lost_in else 1)
PY
