#!/usr/bin/env bash
# Runs the property tests of the pure parsers (framing, the PROXY header,
# address lists) with many more cases than `cargo test` gives them, for a
# deeper look after a change to a parser. PROPTEST_CASES sets how many
# (default 100000 per property, a few seconds; cargo test runs 256).
set -euo pipefail
cd "$(dirname "$0")/.."

PROPTEST_CASES=${PROPTEST_CASES:-100000} cargo test --release -p linepool --lib properties
