#!/usr/bin/env bash
# How linepool scales with its workers: runs the server with --workers 1,
# 2, 4, ... up to the CPUs it is given (and that count itself), the server
# and the load tool pinned to disjoint CPU sets with taskset, for two
# scenarios: ping-pong on persistent connections (`load -c 50`) and
# connect-per-request (`load -c 8 --connect-per-request`). Each point is a
# fresh server, loaded ROUNDS times for SECS each; the table shows the
# medians of the rate and of the server's CPU time (utime + stime from
# /proc/PID/stat) per reply, and the scaling efficiency, the rate at N
# workers / (N x the rate at 1). Progress goes to stderr, the tables to
# stdout.
#
# The load tool gets LOAD_CPUS (default: the last half of the CPUs this
# shell may use, rounded up) and runs one event-loop thread per CPU there;
# the server gets SERVER_CPUS (default: the rest). Both are taskset lists
# (`0`, `0-3`, `0,2,4-6`). On a 2-core machine that is the server on CPU 0
# and the load on CPU 1, so only --workers 1 is measured.
#
# With LINEPOOL_BIN it needs no cargo and no source tree beyond this folder:
# the load tool is the same binary (`linepool load`). Without it, it builds
# the release binary.
#
#   scripts/scale.sh                                  # 3 rounds of 3 s a point
#   ROUNDS=5 SECS=2 scripts/scale.sh
#   LINEPOOL_BIN=/usr/bin/linepool scripts/scale.sh   # a prebuilt binary
#   SERVER_CPUS=0-5 LOAD_CPUS=6-7 scripts/scale.sh
#   PINGPONG_CONNS=200 CPR_CONNS=16 scripts/scale.sh
set -euo pipefail

# A relative LINEPOOL_BIN, or a bare name on PATH, means what it meant where
# the script was called from, before the cd below.
if [ -n "${LINEPOOL_BIN:-}" ]; then
  if ! found=$(command -v -- "$LINEPOOL_BIN"); then
    echo "scale: LINEPOOL_BIN=$LINEPOOL_BIN is not a program" >&2
    exit 2
  fi
  LINEPOOL_BIN=$(realpath -- "$found")
fi
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "scale: ROUNDS=$ROUNDS is not a whole number above 0" >&2; exit 2; }
PINGPONG_CONNS=${PINGPONG_CONNS:-50}
CPR_CONNS=${CPR_CONNS:-8}

source scripts/lib.sh
# Only the build calls cargo; the rest of lib.sh used here does not.
LINEPOOL=${LINEPOOL_BIN:-$(linepool_bin)}

if ! command -v taskset >/dev/null; then
  echo "scale: needs taskset (util-linux) to pin the server and the load tool" >&2
  exit 2
fi

# expand_cpus LIST: the CPU numbers of a taskset list (`0-3,6`, `0-7:2`),
# one a word, in order and each once; fails on anything else.
expand_cpus() {
  local part lo hi step cpu
  local -a out=()
  for part in ${1//,/ }; do
    [[ $part =~ ^([0-9]+)(-([0-9]+)(:([0-9]+))?)?$ ]] || return 1
    lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[3]:-${BASH_REMATCH[1]}} step=${BASH_REMATCH[5]:-1}
    [ "$step" -gt 0 ] && [ "$hi" -ge "$lo" ] || return 1
    for ((cpu = lo; cpu <= hi; cpu += step)); do out+=("$cpu"); done
  done
  [ "${#out[@]}" -gt 0 ] || return 1
  printf '%s\n' "${out[@]}" | sort -nu | xargs
}

# without LIST CPU...: the CPUs given after LIST that are not in LIST.
without() {
  local cpu
  for cpu in "${@:2}"; do
    [[ " $1 " == *" $cpu "* ]] || echo "$cpu"
  done
}

# The CPUs this shell may run on (a container or taskset may have narrowed
# them); the defaults split these.
read -r -a allowed <<<"$(expand_cpus "$(awk '/^Cpus_allowed_list/ {print $2}' /proc/self/status)")"
if [ -n "${LOAD_CPUS:-}" ]; then
  load_set=$(expand_cpus "$LOAD_CPUS") || { echo "scale: LOAD_CPUS=$LOAD_CPUS is not a CPU list" >&2; exit 2; }
elif [ -n "${SERVER_CPUS:-}" ]; then
  load_set=$(without "$(expand_cpus "$SERVER_CPUS" || true)" "${allowed[@]}" | xargs)
else
  load_count=$(((${#allowed[@]} + 1) / 2))
  load_set="${allowed[*]: -$load_count}"
fi
if [ -n "${SERVER_CPUS:-}" ]; then
  server_set=$(expand_cpus "$SERVER_CPUS") || { echo "scale: SERVER_CPUS=$SERVER_CPUS is not a CPU list" >&2; exit 2; }
else
  server_set=$(without "$load_set" "${allowed[@]}" | xargs)
fi
read -r -a server_cpus <<<"$server_set"
read -r -a load_cpus <<<"$load_set"
if [ "${#server_cpus[@]}" -eq 0 ] || [ "${#load_cpus[@]}" -eq 0 ]; then
  echo "scale: needs a CPU for the server and another for the load tool (allowed: ${allowed[*]})" >&2
  exit 2
fi
if [ "$(without "$load_set" "${server_cpus[@]}" | wc -l)" -ne "${#server_cpus[@]}" ]; then
  echo "scale: SERVER_CPUS and LOAD_CPUS overlap (server ${server_set// /,}, load ${load_set// /,})" >&2
  exit 2
fi
# taskset takes a CPU the machine lacks as long as one in its list exists,
# which would make the header below say more than was measured.
if [ -n "$(without "${allowed[*]}" "${server_cpus[@]}" "${load_cpus[@]}")" ]; then
  echo "scale: CPUs $(without "${allowed[*]}" "${server_cpus[@]}" "${load_cpus[@]}" | paste -sd,) are not" \
    "among those this shell may use (${allowed[*]})" >&2
  exit 2
fi
SERVER_CPU=(taskset -c "${server_set// /,}")
LOAD_CPU=(taskset -c "${load_set// /,}")
LOAD_THREADS=${#load_cpus[@]}

# 1, 2, 4, ... up to the server's CPUs, and their count where it is not a
# power of two: more workers than CPUs only measure hand-offs.
workers_list=()
for ((n = 1; n <= ${#server_cpus[@]}; n *= 2)); do workers_list+=("$n"); done
[ "${workers_list[-1]}" -eq "${#server_cpus[@]}" ] || workers_list+=("${#server_cpus[@]}")

CLK_TCK=$(getconf CLK_TCK)
work=$(mktemp -d)
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# json_number FIELD: the first number named FIELD in the load report on
# stdin; the report's top-level figures come before the per-second series.
json_number() {
  grep -o "\"$1\":[0-9.eE+-]*" | head -n 1 | cut -d: -f2
}

# median: the median of the numbers on stdin, one a line.
median() {
  sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# point SCENARIO WORKERS LOAD-FLAGS...: a fresh server with WORKERS
# workers, loaded ROUNDS times; appends "WORKERS RATE CPU-US" (medians) to
# $work/SCENARIO.tsv.
point() {
  local scenario=$1 workers=$2 round report replies rate before after
  shift 2
  start_linepool "$work/server.log" --workers "$workers"
  : >"$work/rounds"
  for round in $(seq "$ROUNDS"); do
    before=$(cpu_ticks "$SERVER_PID")
    if ! report=$("${LOAD_CPU[@]}" "$LINEPOOL" load --json --port "$SERVER_PORT" \
      --threads "$LOAD_THREADS" -d "$SECS" "$@"); then
      echo "scale: $scenario workers=$workers: the load failed; the server's log ends:" >&2
      tail -n 5 "$work/server.log" >&2
      exit 1
    fi
    after=$(cpu_ticks "$SERVER_PID")
    replies=$(json_number replies <<<"$report")
    rate=$(json_number replies_per_sec <<<"$report")
    awk -v r="$rate" -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$replies" \
      'BEGIN { printf "%.0f %.2f\n", r, t / hz * 1e6 / n }' >>"$work/rounds"
    echo "scale: $scenario workers=$workers round=$round $(tail -n 1 "$work/rounds" |
      awk '{ print "rate=" $1 " cpu_us=" $2 }')" >&2
  done
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=""
  echo "$workers $(cut -d' ' -f1 "$work/rounds" | median) $(cut -d' ' -f2 "$work/rounds" | median)" \
    >>"$work/$scenario.tsv"
}

# table SCENARIO TITLE WHAT WHATS: prints the scenario's points (WHAT a
# reply or a connection, WHATS its plural), the efficiency measured against
# its first point (1 worker).
table() {
  echo
  echo "$2"
  awk -v one="$3" -v many="$4" '
    BEGIN { printf "%7s  %14s  %18s  %10s\n", "workers", many "/s", "cpu us/" one, "efficiency" }
    NR == 1 { base = $2 }
    { printf "%7d  %14.0f  %18.2f  %10.2f\n", $1, $2, $3, $2 / ($1 * base) }' "$work/$1.tsv"
}

echo "scale: $("$LINEPOOL" --version); server on CPUs ${server_set// /,}, load tool on CPUs" \
  "${load_set// /,} (--threads $LOAD_THREADS); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "scale: each point a fresh server, the medians of ROUNDS=$ROUNDS runs of SECS=$SECS"
if [ "${#server_cpus[@]}" -eq 1 ]; then
  echo "scale: the server has one CPU beside the load tool's, so only --workers 1 fits; more cores sweep 1, 2, 4, ..."
fi

for workers in "${workers_list[@]}"; do
  point pingpong "$workers" -c "$PINGPONG_CONNS"
done
table pingpong "ping-pong, $PINGPONG_CONNS persistent connections (load -c $PINGPONG_CONNS)" reply replies
for workers in "${workers_list[@]}"; do
  point connect "$workers" -c "$CPR_CONNS" --connect-per-request
done
table connect "connect-per-request, $CPR_CONNS at a time (load -c $CPR_CONNS --connect-per-request)" connection connections
