#!/usr/bin/env bash
# Runs every check a change must pass before it lands: formatting, lints with
# warnings as errors, the whole test suite and the loom model checks. CI runs
# exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
bash scripts/loom.sh
