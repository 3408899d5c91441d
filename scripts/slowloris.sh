#!/usr/bin/env bash
# Slowloris against linepool with its default flags: holds 5,000 silent
# sockets and 1,000 more that send a blank line every second, then times
# 100 fresh clients from connect to their `ACK`. The target is a p99 under
# 50 ms with every held connection still open. Loopback only, bounded (about
# 20 s); the server is started and stopped here.
#
#   scripts/slowloris.sh
#   scripts/slowloris.sh --silent 500 --keepers 100 --tries 20   # quick
#   scripts/slowloris.sh --silent 10000 --keepers 0 --tries 0 --idle-cost 60
#                        # what 10,000 idle connections cost the server
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# Each held socket is a descriptor here and one in the server.
ulimit -n "$(ulimit -Hn)"
LINEPOOL=$(linepool_bin)
log=$(mktemp)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -f "$log"' EXIT
start_linepool "$log"
echo "slowloris: linepool $(sed -n 's/.*listening on //p' "$log" | head -n 1)" >&2
python3 scripts/slowloris.py --port "$SERVER_PORT" --pid "$SERVER_PID" "$@"
