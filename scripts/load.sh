#!/usr/bin/env bash
# Runs one load scenario against a linepool server that is already running,
# for operators sizing --workers or choosing --overload. Every argument is
# passed to `linepool load`; see `linepool load --help`.
#
#   scripts/load.sh --port 8000 -c 50 -d 10s
#   scripts/load.sh --port 8000 -c 50 --pipeline 32 -d 10s --json
#   scripts/load.sh --port 8000 -c 50 -R 20000 -d 10s   # open loop
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib.sh
LINEPOOL=$(linepool_bin)
exec "$LINEPOOL" load "$@"
