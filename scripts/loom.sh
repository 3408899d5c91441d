#!/usr/bin/env bash
# Model-checks the scheduling and coordination code with loom: builds the
# library with `--cfg loom`, which swaps `crate::sync` to loom's types, and
# runs the `loom` tests, each of which explores the interleavings of two or
# three threads (all of them, or for the largest models all of them up to a
# preemption bound). LOOM_MAX_PREEMPTIONS, if set, reaches the tests through
# the environment and sets the bound of every model.
#
# A failing model can abort the test binary right after printing its panic
# (loom drops its Arc while unwinding, tokio-rs/loom#291): that first panic
# is the finding. Running the one test again with LOOM_LOG=1 LOOM_LOCATION=1
# prints the interleaving that broke it.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory of its own: other RUSTFLAGS would otherwise make cargo
# rebuild the normal build from scratch, and the next normal build too.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom"
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
cargo test --locked --release -p linepool --lib loom
