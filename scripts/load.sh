#!/usr/bin/env bash
# Runs one load scenario against a linepool server that is already running,
# for operators sizing --workers or choosing --overload. Every argument is
# passed to `linepool load`; see `linepool load --help`.
#
#   scripts/load.sh --port 8000 -c 50 -d 10
#   scripts/load.sh --port 8000 -c 50 --pipeline 32 -d 10 --json
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
exec ./target/release/linepool load "$@"
