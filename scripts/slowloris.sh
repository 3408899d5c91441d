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
#   SLOWLORIS_TLS=1 scripts/slowloris.sh
#                        # over TLS: half ClientHellos, quiet handshaken
#                        # keepers, fresh clients timed through their handshake
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

# Each held socket is a descriptor here and one in the server.
ulimit -n "$(ulimit -Hn)"
LINEPOOL=$(linepool_bin)
log=$(mktemp)
dir=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -f "$log"; rm -rf "$dir"' EXIT
tls_server=()
tls_client=()
if [ -n "${SLOWLORIS_TLS:-}" ]; then
  # A CA and a server certificate made now; the half ClientHellos are held
  # for the whole run, beyond the default 10 s handshake deadline.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=slowloris CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$dir/key.pem" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/ext" -out "$dir/cert.pem" 2>/dev/null
  tls_server=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem" --tls-handshake-timeout 5m)
  tls_client=(--tls-ca "$dir/ca.pem")
fi
start_linepool "$log" "${tls_server[@]}"
echo "slowloris: linepool $(sed -n 's/.*listening on //p' "$log" | head -n 1)" >&2
python3 scripts/slowloris.py --port "$SERVER_PORT" --pid "$SERVER_PID" "${tls_client[@]}" "$@"
