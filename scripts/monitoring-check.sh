#!/usr/bin/env bash
# Checks the Prometheus rules shipped in dist/monitoring/: `promtool check
# rules` on the recording and alerting rules, then `promtool test rules`,
# in which every alert fires once and stays silent once. Fails (non-zero)
# when a rule does not load or a rule test fails. promtool comes with
# Debian's `prometheus` package, installed here when missing (as root).
# That the rules and the dashboard name only metrics the server exports is
# checked by the integration tests (cli/tests/it/monitoring.rs).
#
#   scripts/monitoring-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  apt-get install -y --no-install-recommends prometheus ||
    { apt-get update && apt-get install -y --no-install-recommends prometheus; }
fi

dir=dist/monitoring
promtool check rules "$dir/linepool-rules.yml" "$dir/linepool-alerts.yml"
promtool test rules "$dir"/tests/*.yml
echo "monitoring-check: rules load and their tests pass" >&2
