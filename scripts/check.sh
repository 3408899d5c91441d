#!/usr/bin/env bash
# Runs every check a change must pass before it lands: formatting, lints with
# warnings as errors, and the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
