# Shared by the scripts in this folder (sourced, not run): finds the
# release binaries through cargo, so CARGO_TARGET_DIR is respected, and
# starts a server in the background, finds a free port, reads a
# process's CPU time and pins servers and load tool to their CPUs.

# target_dir [MANIFEST]: the target directory cargo builds into.
target_dir() {
  cargo metadata --format-version 1 --no-deps ${1:+--manifest-path "$1"} |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# linepool_bin: builds linepool in release mode and prints its path; fails
# when the build does. (A command substitution does not inherit `set -e`,
# so without the return a failed build would go on with an older binary.)
linepool_bin() {
  cargo build --release --quiet || return 1
  echo "$(target_dir)/release/linepool"
}

# start_linepool LOG ARGS...: starts `linepool serve --port 0 ARGS...` in
# the background with its log in LOG, waits until it listens, and sets
# SERVER_PID and SERVER_PORT. Where SERVER_CPU is set (pin_cpus), the
# server starts pinned by it.
start_linepool() {
  local log=$1
  shift
  ${SERVER_CPU[@]+"${SERVER_CPU[@]}"} "$LINEPOOL" serve --port 0 "$@" 2>"$log" &
  SERVER_PID=$!
  SERVER_PORT=$(listening_port "$log") || {
    echo "linepool did not start:" >&2
    cat "$log" >&2
    return 1
  }
}

# start_named NAME COMMAND...: starts a server that logs "listening on
# IP:PORT", pinned to the server's CPU (SERVER_CPU, from pin_cpus), with
# its log in $work/NAME.log; records its pid in pids[NAME] and its port in
# ports[NAME] (the caller declares both, `declare -A pids ports`, and
# sets `work`). Exits the script if the server does not start.
start_named() {
  local name=$1
  shift
  "${SERVER_CPU[@]}" "$@" 2>"$work/$name.log" &
  pids[$name]=$!
  ports[$name]=$(listening_port "$work/$name.log") && return 0
  echo "$(basename "$0"): $name did not start:" >&2
  cat "$work/$name.log" >&2
  exit 1
}

# stop_named: stops every server start_named started (SIGTERM, then
# waits) and forgets them.
stop_named() {
  local pid
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
  ports=()
}

# listening_port LOG: waits (up to 10 s) until a server logs "listening on
# IP:PORT" into LOG and prints the port; fails if none does.
listening_port() {
  local port
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on [0-9.]*:\([0-9]*\).*/\1/p' "$1" | head -n 1)
    [ -n "$port" ] && echo "$port" && return 0
    sleep 0.05
  done
  return 1
}

# linepool_debug_bin: builds linepool in debug mode (what `cargo test` has
# just built, so nothing new under CI) and prints its path.
linepool_debug_bin() {
  cargo build --quiet || return 1
  echo "$(target_dir)/debug/linepool"
}

# free_port: a loopback port nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# cpu_ticks PID...: the processes' user plus system CPU time so far, in
# clock ticks (fields 14 and 15 of /proc/PID/stat; the name in field 2 has
# no spaces for the processes these scripts start).
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# pin_cpus: sets SERVER_CPU and LOAD_CPU, command prefixes that pin a
# server to CPU 0 and the load tool to CPU 1, where the machine has two
# cores and taskset; otherwise leaves both empty and returns 1.
pin_cpus() {
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_CPU=(taskset -c 0)
    LOAD_CPU=(taskset -c 1)
    return 0
  fi
  SERVER_CPU=()
  LOAD_CPU=()
  return 1
}
