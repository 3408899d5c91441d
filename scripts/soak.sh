#!/usr/bin/env bash
# Soak test: linepool with its default flags under well-behaved and faulty
# clients at once for SOAK_SECONDS (default 600), sampling its RSS,
# descriptors and threads every 10 s. Passes when no reply is lost or
# wrong and the descriptors come back to where they started. Loopback only;
# the server is started and stopped here.
#
#   scripts/soak.sh                  # ten minutes
#   SOAK_SECONDS=60 scripts/soak.sh  # one minute
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SECONDS_TO_RUN=${SOAK_SECONDS:-600}
LINEPOOL=$(linepool_bin)
log=$(mktemp)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -f "$log"' EXIT
start_linepool "$log"
echo "soak: linepool $(sed -n 's/.*listening on //p' "$log" | head -n 1), ${SECONDS_TO_RUN} s" >&2
python3 scripts/soak.py --port "$SERVER_PORT" --pid "$SERVER_PID" --linepool "$LINEPOOL" \
  --seconds "$SECONDS_TO_RUN"
