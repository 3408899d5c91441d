#!/usr/bin/env bash
# Lints linepool's /metrics output with promtool: starts a server with
# --metrics on loopback, sends it some traffic (good and bad), scrapes the
# endpoint and runs `promtool check metrics` on what it served. promtool
# comes with Debian's `prometheus` package: apt-get install prometheus.
#
#   scripts/metrics-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if ! command -v promtool >/dev/null; then
  echo "metrics-check: promtool not found; install it with: apt-get install prometheus" >&2
  exit 2
fi
LINEPOOL=$(linepool_bin)
log=$(mktemp)
scraped=$(mktemp)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -f "$log" "$scraped"' EXIT
start_linepool "$log" --metrics 127.0.0.1:0
metrics=$(sed -n 's/.*metrics on http:\/\/\([0-9.:]*\)\/metrics.*/\1/p' "$log" | head -n 1)
"$LINEPOOL" load --port "$SERVER_PORT" -c 4 -n 2000 >/dev/null
printf 'ok\n\377\n' | python3 -c 'import socket,sys; s=socket.create_connection(("127.0.0.1",'"$SERVER_PORT"')); s.sendall(sys.stdin.buffer.read()); s.recv(100)'
python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("http://'"$metrics"'/metrics").read().decode())' >"$scraped"
echo "metrics-check: $(grep -vc '^#' "$scraped") samples from http://$metrics/metrics" >&2
promtool check metrics <"$scraped"
echo "metrics-check: promtool check metrics passed" >&2
