#!/usr/bin/env bash
# Regenerates the man pages and shell completions under dist/ from the
# command line's own definition (`linepool generate-dist`). Run it after
# changing a flag or a help text; `cargo test` fails until the copies match.
set -euo pipefail
cd "$(dirname "$0")/.."

rm -rf dist/man dist/completions
cargo run --quiet --locked -- generate-dist dist
ls dist/man dist/completions
