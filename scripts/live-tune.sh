#!/usr/bin/env bash
# Shows the live-tuning targets under load. Starts two servers, one `ack`
# driven by `linepool load -c 50` and one `--protocol chat` with a room of
# 300 members (`linepool load --protocol chat -c 300`), each with
# `--workers 2`, an admin console and metrics. While both loads run it
# applies to each server, in order, `set workers 1`, `set workers 4`,
# `set workers 2`, `set max-connections` to the connections open and back,
# `pause`, a pause of 2 s, `resume`; after each change it polls until the
# server shows it (`linepool_workers` and `linepool_max_connections` on
# /metrics; `accepting=` in `show info` for pause and resume, which no
# metric shows) and records how long that took. On the ack server a client
# that connects during the pause must get no answer until `resume`, and
# then one within the target. Then, under a short ack load of its own, it
# kills one connection by id: it must be gone from `show conns` within the
# target, and the load must count that connection alone as an error (the
# load tool counts a connection the server closes under it as `closed`).
#
# Prints a table (change, server, time to its `OK`, time until it shows,
# polls that did not show it yet, worker threads in /proc once it showed),
# the loads' errors and the room's lost lines, and exits 1 when a target is
# missed: a change not in effect within TUNE_LIMIT_MS (for `set workers`,
# also as many worker threads), a load error, a chat line lost,
# duplicated or reordered. Not part of scripts/check.sh: it runs for about
# 45 s and wants the machine to itself. docs/tuning.md ("Tuning live:
# measured") has its results.
#
#   scripts/live-tune.sh                          # the targets' own sizes: 30 s, 50 + 300
#   QUICK=1 scripts/live-tune.sh                  # 12 s, 50 connections + 100 members
#   TUNE_SECS=60 TUNE_MEMBERS=600 scripts/live-tune.sh
#   LINEPOOL_BIN=/usr/bin/linepool scripts/live-tune.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if [ "${QUICK:-0}" = 1 ]; then
  quick_secs=12 quick_members=100 quick_hold=0.5
else
  quick_secs=30 quick_members=300 quick_hold=1
fi
CONNS=${TUNE_CONNS:-50}          # the ack load's connections (-c)
SECS=${TUNE_SECS:-$quick_secs}   # how long both loads run (-d)
MEMBERS=${TUNE_MEMBERS:-$quick_members}
WORKERS=${TUNE_WORKERS:-2}       # the pool both servers start with
LIMIT_MS=${TUNE_LIMIT_MS:-1000}  # a change must show within this
PAUSE_SECS=${TUNE_PAUSE_SECS:-2}
HOLD_SECS=${TUNE_HOLD_SECS:-$quick_hold} # each setting serves this long before the next
KILL_SECS=${TUNE_KILL_SECS:-5}   # the kill check's own ack load

# LINEPOOL_BIN runs another build (an installed package, an older commit).
LINEPOOL=${LINEPOOL_BIN:-$(linepool_bin)}
# Not pinned: two servers and two loads share the cores.
SERVER_CPU=()

work=$(mktemp -d)
declare -A pids ports metrics
loads=()
cleanup() {
  local pid
  for pid in ${loads[@]+"${loads[@]}"}; do kill "$pid" 2>/dev/null || true; done
  stop_named
  rm -rf "$work"
}
trap cleanup EXIT

# now_us: the wall clock in microseconds, from bash itself (no process, so
# polling costs only the poll).
now_us() {
  echo "${EPOCHREALTIME//[!0-9]/}"
}

# admin NAME COMMAND...: the admin COMMAND on server NAME, its answer on
# stdout; fails on `ERR` or when the console cannot be reached.
admin() {
  local name=$1
  shift
  "$LINEPOOL" admin --socket "$work/$name.sock" "$@"
}

# info NAME FIELD: one `FIELD=` value of server NAME's `show info`.
info() {
  admin "$1" show info | sed -n "s/^$2=//p"
}

# metric NAME METRIC: one unlabelled sample of server NAME's /metrics.
metric() {
  curl -sf "http://${metrics[$1]}/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}

# wait_for WHAT DEADLINE_SECS COMMAND...: polls COMMAND every 50 ms until
# it succeeds; exits the script, naming WHAT, when the deadline passes.
wait_for() {
  local what=$1 until=$(($(now_us) + $2 * 1000000))
  shift 2
  until "$@"; do
    if [ "$(now_us)" -gt "$until" ]; then
      echo "live-tune: gave up waiting for $what" >&2
      exit 1
    fi
    sleep 0.05
  done
}

# record CHANGE SERVER ANSWER_US EFFECT_US [MISSES [THREADS]]: one row of
# the table. EFFECT_US is `never` for a change that did not show within
# 5 s; MISSES counts the polls after the answer that did not show it yet
# (0: the first look after `OK` did, and the time is the command's and that
# look's); THREADS the server's worker threads once it showed.
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:--}" "${6:--}" >>"$work/changes.tsv"
}

# worker_threads NAME: the threads server NAME runs protocol code on now,
# counted by their names in /proc: what the pool really is, beside what
# the metric says.
worker_threads() {
  cat /proc/"${pids[$1]}"/task/*/comm 2>/dev/null | grep -c '^linepool-worker' || true
}

# apply NAME SOURCE KEY WANT COMMAND...: sends the admin COMMAND to server
# NAME, then polls SOURCE (`metric` or `info`) for KEY every 10 ms until it
# reads WANT. Records the time from sending the command to its `OK`, and
# to the first poll that shows the change.
apply() {
  local name=$1 source=$2 key=$3 want=$4
  shift 4
  local start answered misses=0
  start=$(now_us)
  if ! admin "$name" "$@" >/dev/null; then
    record "$*" "$name" refused never
    return
  fi
  answered=$(now_us)
  until [ "$("$source" "$name" "$key")" = "$want" ]; do
    if [ $(($(now_us) - start)) -gt 5000000 ]; then
      record "$*" "$name" $((answered - start)) never "$misses"
      return
    fi
    misses=$((misses + 1))
    sleep 0.01
  done
  record "$*" "$name" $((answered - start)) $(($(now_us) - start)) "$misses" "$(worker_threads "$name")"
}

# on_both SOURCE KEY WANT COMMAND...: apply on each server in turn, then
# let the new setting serve the loads for HOLD_SECS.
on_both() {
  local name
  for name in ack chat; do
    apply "$name" "$@"
  done
  sleep "$HOLD_SECS"
}

# start_server NAME FLAGS...: a server with the pool, console and metrics
# every run here uses.
start_server() {
  local name=$1
  shift
  start_named "$name" "$LINEPOOL" serve --port 0 --workers "$WORKERS" \
    --admin-socket "$work/$name.sock" --metrics 127.0.0.1:0 "$@"
  metrics[$name]=$(sed -n 's/.*metrics on http:\/\/\([0-9.:]*\)\/metrics.*/\1/p' "$work/$name.log" | head -n 1)
}

# chat_speaking: the room's lines have begun (each member's name counts
# as one message, so more than MEMBERS messages means lines are flowing).
chat_speaking() {
  local said
  said=$(metric chat 'linepool_messages_total{protocol="chat"}') || return 1
  [ "${said:-0}" -gt "$MEMBERS" ]
}

# all_open NAME N: server NAME has N connections open.
all_open() {
  [ "$(metric "$1" linepool_connections_open)" = "$2" ]
}

# listed ID: `show conns` of the ack server lists connection ID. (The
# answer is read whole before grep looks: a grep -q that quits early would
# break the pipe, and under pipefail a listed connection would read as
# gone.)
listed() {
  local conns
  conns=$(admin ack show conns) || return 2
  grep -q "^id=$1 " <<<"$conns"
}

start_server ack
start_server chat --protocol chat
echo "live-tune: $("$LINEPOOL" --version); ack load -c $CONNS -d ${SECS}s, chat room of $MEMBERS members -d ${SECS}s, --workers $WORKERS; target ${LIMIT_MS} ms; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

"$LINEPOOL" load --port "${ports[ack]}" -c "$CONNS" -d "${SECS}s" --json \
  >"$work/ack.json" 2>"$work/ack.err" &
ack_load=$!
loads+=("$ack_load")
"$LINEPOOL" load --port "${ports[chat]}" --protocol chat -c "$MEMBERS" -d "${SECS}s" --json \
  >"$work/chat.json" 2>"$work/chat.err" &
chat_load=$!
loads+=("$chat_load")
wait_for "the ack load's $CONNS connections" 10 all_open ack "$CONNS"
wait_for "the chat room's $MEMBERS members to speak" 30 chat_speaking
sleep "$HOLD_SECS"

echo "live-tune: both loads running; changing the settings" >&2
on_both metric linepool_workers 1 set workers 1
on_both metric linepool_workers 4 set workers 4
on_both metric linepool_workers "$WORKERS" set workers "$WORKERS"
declare -A limit
for name in ack chat; do
  limit[$name]=$(info "$name" max_connections)
  open=$(info "$name" open)
  apply "$name" metric linepool_max_connections "$open" set max-connections "$open"
done
sleep "$HOLD_SECS"
for name in ack chat; do
  apply "$name" metric linepool_max_connections "${limit[$name]}" \
    set max-connections "${limit[$name]}"
done
sleep "$HOLD_SECS"

apply ack info accepting paused pause
apply chat info accepting paused pause
# A new client of the ack server during the pause: the kernel completes its
# connect and holds its line; the server must not answer it until resume.
# The pause's 2 s are spent waiting for an answer that must not come.
exec 3<>"/dev/tcp/127.0.0.1/${ports[ack]}"
printf 'probe\n' >&3
if read -r -t "$PAUSE_SECS" early <&3; then
  record "pause (a new client waits)" ack 0 "answered: $early"
else
  record "pause (a new client waits)" ack 0 held
fi
resumed=$(now_us)
apply ack info accepting yes resume
if read -r -t "$((LIMIT_MS / 1000 + 4))" reply <&3 && [ "$reply" = "ACK: probe" ]; then
  record "resume (the waiting client answered)" ack 0 $(($(now_us) - resumed))
else
  record "resume (the waiting client answered)" ack 0 never
fi
exec 3<&-
apply chat info accepting yes resume

if ! kill -0 "$ack_load" 2>/dev/null; then
  echo "live-tune: the ack load ended before the last change: raise TUNE_SECS" >&2
  : >"$work/late"
fi
echo "live-tune: changes done; waiting for the loads to end" >&2
ack_status=0 chat_status=0
wait "$ack_load" || ack_status=$?
wait "$chat_load" || chat_status=$?
loads=()

# The kill check: one connection of a fresh ack load killed by id.
echo "live-tune: kill check under -c $CONNS for ${KILL_SECS}s" >&2
"$LINEPOOL" load --port "${ports[ack]}" -c "$CONNS" -d "${KILL_SECS}s" --json \
  >"$work/kill.json" 2>"$work/kill.err" &
kill_load=$!
loads+=("$kill_load")
wait_for "the kill check's $CONNS connections" 10 all_open ack "$CONNS"
victim=$(admin ack show conns | sed -n '1s/^id=\([0-9]*\) .*/\1/p')
start=$(now_us)
admin ack kill "$victim" >/dev/null
answered=$(now_us)
# How many looks at `show conns` after the `OK` still list it: 0 is gone
# at once.
looks=0
while listed "$victim" && [ $(($(now_us) - start)) -lt 5000000 ]; do
  looks=$((looks + 1))
  sleep 0.01
done
gone=$(now_us)
if [ $((gone - start)) -ge 5000000 ]; then
  record "kill $victim (gone from show conns)" ack $((answered - start)) never "$looks"
else
  record "kill $victim (gone from show conns)" ack $((answered - start)) $((gone - start)) "$looks"
fi
# Every other connection of the load still open, and none more.
others=$(admin ack show conns | grep -c '^id=' || true)
kill_status=0
wait "$kill_load" || kill_status=$?
loads=()

python3 - "$work" "$LIMIT_MS" "$CONNS" "$ack_status" "$chat_status" "$kill_status" "$others" <<'PY'
import json, os, sys
work, limit_ms, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ack_status, chat_status, kill_status, others = map(int, sys.argv[4:8])
missed = []

print(f"{'change':<40} {'server':<6} {'answered ms':>11} {'in effect ms':>12} {'polls missed':>12} "
      f"{'workers':>7}  target")
for line in open(os.path.join(work, "changes.tsv")):
    change, server, answered, effect, misses, threads = line.rstrip("\n").split("\t")
    answered = "-" if answered in ("0", "refused", "never") else f"{int(answered) / 1000:.1f}"
    if effect.isdigit():
        ok = int(effect) <= limit_ms * 1000
        shown = f"{int(effect) / 1000:.1f}"
    elif effect == "held":
        # The client connected during the pause got no answer before resume.
        ok, shown = True, "held"
    else:
        ok, shown = False, effect
    # The pool must really have the size the metric shows: as many
    # worker threads, once the change showed.
    if ok and change.startswith("set workers ") and threads != change.split()[-1]:
        ok = False
        shown += f" ({threads} threads)"
    if not ok:
        missed.append(f"{change} on {server}: {shown}")
    print(f"{change:<40} {server:<6} {answered:>11} {shown:>12} {misses:>12} {threads:>7}  "
          f"{'ok' if ok else 'MISSED'}")

def load(name):
    try:
        return json.load(open(os.path.join(work, name + ".json")))
    except (OSError, ValueError):
        return None

def kinds(errors):
    return ", ".join(f"{k} {v}" for k, v in errors.items() if k != "total" and v) or "none"

ack = load("ack")
if ack is None:
    missed.append("the ack load gave no report")
    print("ack load: no report:", open(os.path.join(work, "ack.err")).read().strip())
else:
    e = ack["errors"]
    print(f"ack load: {ack['replies']} replies in {ack['elapsed_secs']:.1f} s, "
          f"errors {e['total']} ({kinds(e)}), exit status {ack_status}")
    if e["total"] or ack_status:
        missed.append(f"ack load errors {e['total']} ({kinds(e)}), exit status {ack_status}")

chat = load("chat")
if chat is None:
    missed.append("the chat load gave no report")
    print("chat load: no report:", open(os.path.join(work, "chat.err")).read().strip())
else:
    bad = {k: chat[k] for k in ("lost", "duplicated", "reordered", "echoed")}
    print(f"chat load: {chat['members']} members, {chat['sent']} lines, deliveries owed "
          f"{chat['expected']} delivered {chat['delivered']}, "
          + ", ".join(f"{k} {v}" for k, v in bad.items())
          + f", reconnects {chat['reconnects']}, exit status {chat_status}")
    if any(bad.values()) or chat["reconnects"] or chat_status:
        missed.append(f"chat load: {bad}, reconnects {chat['reconnects']}, exit status {chat_status}")

kill = load("kill")
if kill is None:
    missed.append("the kill check's load gave no report")
else:
    e = kill["errors"]
    print(f"kill check: {others} of {conns} connections left open; the load counted "
          f"errors {e['total']} ({kinds(e)}) over {kill['replies']} replies, exit status {kill_status}")
    # The killed connection alone: the load tool counts a connection the
    # server closes under it as `closed`.
    if e["total"] != 1 or e["closed"] != 1 or others != conns - 1 or kill_status:
        missed.append(f"kill check: {others} left of {conns}, load errors {e['total']} ({kinds(e)})")

if os.path.exists(os.path.join(work, "late")):
    missed.append("the changes outlasted the ack load")
if missed:
    print(f"live-tune: {len(missed)} target(s) missed:")
    for m in missed:
        print("  " + m)
    sys.exit(1)
print("live-tune: every target met")
PY
