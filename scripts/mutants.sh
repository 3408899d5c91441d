#!/usr/bin/env bash
# Mutation testing of the core modules with cargo-mutants (installed when
# missing): each mutant is a small change to the code (a condition
# flipped, a return value replaced); a test must fail for every one, or
# the behaviour it changes is untested. Slow by nature, so it is not part
# of CI: one module at a time, each with the tests that cover it, takes
# minutes to about an hour on 2 cores.
#
#   scripts/mutants.sh                  # every core module, one by one
#   scripts/mutants.sh sched gate       # only these (names below)
#   scripts/mutants.sh --in-diff        # only code the working tree changes against main
#   MUTANTS_JOBS=2 scripts/mutants.sh   # more mutants at once
#
# The whole-suite modules run under cargo-nextest when it is installed
# (about 20 s of tests a mutant instead of 30), plain `cargo test` otherwise.
#
# Results go to target/mutants/<module>/mutants.out (caught.txt,
# missed.txt, timeout.txt, unviable.txt); a summary line per module is
# printed at the end. docs/testing.md keeps the current figures and says
# why each surviving mutant is left.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-mutants >/dev/null; then
  cargo install cargo-mutants --locked
fi

# module: the files it mutates, and which tests run against each mutant.
# Leaves with thorough unit tests run those alone (seconds a mutant); the
# modules that only the real server exercises run the whole suite.
declare -A files tests
files[sched]="src/sched.rs";                 tests[sched]=lib
files[gate]="src/gate.rs";                   tests[gate]=lib
files[activity]="src/activity.rs";           tests[activity]=lib
files[rendezvous]="src/engine/rendezvous.rs"; tests[rendezvous]=lib
files[framing]="src/framing/mod.rs";         tests[framing]=lib
files[access]="src/access.rs";               tests[access]=lib
files[proxy]="src/proxy.rs";                 tests[proxy]=lib
files[watchdog]="src/watchdog.rs";           tests[watchdog]=all
files[conn]="src/conn/mod.rs src/conn/transport.rs"; tests[conn]=all
files[tls]="src/tls/session.rs";            tests[tls]=all
files[engine]="src/engine/mod.rs"; tests[engine]=all
files[acceptor]="src/server/acceptor.rs src/server/admission.rs"; tests[acceptor]=all
files[handler]="src/handler/*.rs";           tests[handler]=all
ORDER="sched gate activity rendezvous framing access proxy watchdog conn tls engine acceptor handler"

mkdir -p target/mutants
jobs=${MUTANTS_JOBS:-1}
# Test code is left out: the unit tests' helpers, and the loom models,
# built only under --cfg loom (mutating them changes nothing that runs).
common=(--jobs "$jobs" --timeout-multiplier 3 --no-shuffle --exclude-re 'tests::')

if [ "${1:-}" = "--in-diff" ]; then
  diff=$(mktemp)
  git diff main -- src >"$diff"
  cargo mutants "${common[@]}" --test-workspace=true --in-diff "$diff" --output target/mutants/in-diff || true
  rm -f "$diff"
  exit 0
fi

modules=${*:-$ORDER}
for module in $modules; do
  if [ -z "${files[$module]:-}" ]; then
    echo "mutants: unknown module '$module' (one of: $ORDER)" >&2
    exit 2
  fi
  file_args=()
  for file in ${files[$module]}; do file_args+=(--file "$file"); done
  # The mutated files are the library's; the integration tests are the
  # linepool-cli package's, so the whole suite is the workspace's.
  test_args=(--test-workspace=true)
  if [ "${tests[$module]}" = lib ]; then
    test_args=(-- --lib)
  elif command -v cargo-nextest >/dev/null; then
    # The whole suite through nextest, which runs every test binary's tests
    # in one pool, less the load tool's own tests: they measure the driver,
    # not the server, and one of them alone takes 15 s.
    test_args+=(--test-tool nextest -- -E 'not test(/^load::/)')
  fi
  echo "mutants: $module (${tests[$module]} tests)" >&2
  start=$(date +%s)
  # cargo-mutants exits 2 when a mutant is missed and 3 on a timeout:
  # results here. Anything else (4: the tests fail without any mutant) is
  # a failure of the run.
  status=0
  cargo mutants "${common[@]}" "${file_args[@]}" --output "target/mutants/$module" "${test_args[@]}" >/dev/null || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
    echo "mutants: $module: cargo mutants failed (status $status), see target/mutants/$module/mutants.out/debug.log" >&2
    exit 1
  fi
  out="target/mutants/$module/mutants.out"
  count() { [ -f "$out/$1.txt" ] && wc -l <"$out/$1.txt" || echo 0; }
  printf 'mutants: %-10s caught %3d  missed %3d  timeout %3d  unviable %3d  (%d s, %s tests)\n' \
    "$module" "$(count caught)" "$(count missed)" "$(count timeout)" "$(count unviable)" \
    $(($(date +%s) - start)) "${tests[$module]}" | tee -a target/mutants/summary.txt
done
