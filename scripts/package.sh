#!/usr/bin/env bash
# Builds the Debian package (target/debian/linepool_*.deb) with cargo-deb
# from the [package.metadata.deb] table in cli/Cargo.toml: the release binary,
# the man pages, completions and /etc/default/linepool from dist/, and
# docs/deploy's units. Installs cargo-deb first when it is missing.
# Prints the path of the package it built.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if ! command -v cargo-deb >/dev/null; then
  cargo install cargo-deb --locked
fi
# The package ships dist/ as it is checked in: refuse a stale copy.
cargo test --quiet --locked -p linepool-cli --bin linepool dist:: >&2
cargo deb --locked -p linepool-cli >&2
ls -t "$(target_dir)"/debian/linepool_*.deb | head -n 1
