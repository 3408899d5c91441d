#!/usr/bin/env bash
# Runs every check a change must pass before it lands: formatting, lints with
# warnings as errors, the whole test suite and the loom model checks. CI runs
# exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The chat bus's tests start a real redis-server of their own (and fail
# without one); Debian's package brings it.
if ! command -v redis-server >/dev/null; then
    apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
bash scripts/loom.sh
