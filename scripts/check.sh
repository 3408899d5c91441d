#!/usr/bin/env bash
# Runs every check a change must pass before it lands: formatting, lints with
# warnings as errors, the whole test suite, the loom model checks, the TLS
# checks with outside clients (openssl, Python's ssl; installed when
# missing) and the monitoring rules' promtool tests (promtool installed
# when missing). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The chat bus's tests start a real redis-server of their own (and fail
# without one); Debian's package brings it.
if ! command -v redis-server >/dev/null; then
    apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi

# Every package of the workspace: the library, linepool-chat,
# linepool-tools and linepool-cli. `cargo test` runs the libraries'
# doctests too (what `cargo test --doc` runs), after each package's other
# tests.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The library's documentation builds without a broken link, every public
# item documented (`missing_docs`, an error under clippy above).
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p linepool --locked
bash scripts/loom.sh
if ! command -v openssl >/dev/null; then
  apt-get update -qq && apt-get install -y openssl
fi
bash scripts/tls-check.sh
bash scripts/monitoring-check.sh
