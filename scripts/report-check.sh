#!/usr/bin/env bash
# Checks that the load tool's pages render as a person would see them: a
# short load run against a fresh server writes the run's page, a second run
# and `linepool load compare` write the comparison page, and headless
# Chromium (Debian's `chromium`, installed when missing) opens each with
# the network shut off (every host unresolvable, every request sent to a
# closed proxy). It passes when the DOM holds the charts and their lines,
# the console stays silent, and the screenshots show the series colours;
# a dark-mode screenshot must have a dark background. Bounded: each step
# has a time limit. The screenshots stay in REPORT_CHECK_OUT.
#
#   scripts/report-check.sh                 # screenshots in /tmp/linepool-report-check
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

OUT=${REPORT_CHECK_OUT:-/tmp/linepool-report-check}
if ! command -v chromium >/dev/null; then
  echo "report-check: installing Debian's chromium" >&2
  timeout 600 apt-get install -y chromium >/dev/null ||
    { timeout 300 apt-get update >/dev/null && timeout 600 apt-get install -y chromium >/dev/null; }
fi
LINEPOOL=$(linepool_bin)
rm -rf "$OUT"
mkdir -p "$OUT"
log="$OUT/server.log"
profile=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$profile"' EXIT
start_linepool "$log"
timeout 60 "$LINEPOOL" load --port "$SERVER_PORT" -c 8 -d 3s --json --html "$OUT/run.html" >"$OUT/a.json"
timeout 60 "$LINEPOOL" load --port "$SERVER_PORT" -c 2 -R 2000 -d 2s --json >"$OUT/b.json"
timeout 60 "$LINEPOOL" load compare "$OUT/a.json" "$OUT/b.json" --html "$OUT/compare.html" >/dev/null

# chromium PAGE MODE ARGS...: runs headless Chromium on PAGE with the
# network shut off; MODE is light or dark.
chromium_on() {
  local page=$1 mode=$2
  shift 2
  local dark=()
  [ "$mode" = dark ] && dark=(--force-dark-mode --blink-settings=preferredColorScheme=0)
  timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --host-resolver-rules='MAP * ~NOTFOUND' \
    --proxy-server='127.0.0.1:9' --enable-logging=stderr --v=0 \
    "${dark[@]}" "$@" "file://$page"
}

failed=0
# check NAME SVGS LINES COLOURS...: checks page NAME.html. The light
# screenshot is of a wide window (the page is fluid: its charts share
# the width), the dark one of a narrow one (they stack).
check() {
  local name=$1 svgs=$2 lines=$3
  shift 3
  local page="$OUT/$name.html"
  chromium_on "$page" light --dump-dom >"$OUT/$name.dom.html" 2>"$OUT/$name.console.log"
  chromium_on "$page" light --window-size=1600,1800 --screenshot="$OUT/$name.png" 2>>"$OUT/$name.console.log"
  chromium_on "$page" dark --window-size=900,900 --screenshot="$OUT/$name-dark.png" 2>>"$OUT/$name.console.log"
  local got_svgs got_lines
  got_svgs=$(grep -o '<svg ' "$OUT/$name.dom.html" | wc -l)
  got_lines=$(grep -o '<polyline [^>]*points="[0-9]' "$OUT/$name.dom.html" | wc -l)
  echo "report-check: $name: $got_svgs charts and $got_lines lines in the DOM" >&2
  if [ "$got_svgs" -ne "$svgs" ] || [ "$got_lines" -lt "$lines" ]; then
    echo "report-check: $name: expected $svgs charts and at least $lines lines" >&2
    failed=1
  fi
  if grep -i 'CONSOLE' "$OUT/$name.console.log" >&2; then
    echo "report-check: $name: the console said something (above)" >&2
    failed=1
  fi
  local light dark
  light=$(timeout 120 python3 scripts/png_marks.py "$OUT/$name.png" "$@")
  dark=$(timeout 120 python3 scripts/png_marks.py "$OUT/$name-dark.png")
  echo "report-check: $name.png $(stat -c %s "$OUT/$name.png") bytes: $light" >&2
  echo "report-check: $name-dark.png $(stat -c %s "$OUT/$name-dark.png") bytes: $dark" >&2
  # More pixels of each colour than its legend swatches (144 each) hold:
  # the lines themselves were drawn.
  if ! python3 -c 'import json, sys
light, dark = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ok = all(n > 300 for n in light["near"].values()) and light["top_left"] == "ffffff"
ok = ok and all(int(dark["top_left"][i:i + 2], 16) < 64 for i in (0, 2, 4))
sys.exit(0 if ok else 1)' "$light" "$dark"; then
    echo "report-check: $name: series colours missing, or the dark page is not dark" >&2
    failed=1
  fi
}

# The run page of a clean run: three charts (errors are the words "no
# errors"), at least seven lines (replies/s, p50, p90, p99, p99.9, max,
# the spectrum) in the light palette's first four colours.
check run 3 7 1f6fd1 d1471f 1f9e55 8e44c4
# Its header says what ran, and the spectrum marks p99 and p99.9.
for needle in '<header>' '>date (UTC)<' '>command<' 'data-mark="p99"' 'data-mark="p99.9"' '>no errors<'; do
  if ! grep -qF "$needle" "$OUT/run.dom.html"; then
    echo "report-check: run: no $needle in the DOM" >&2
    failed=1
  fi
done
# The comparison page: two charts, a spectrum and a rate line per run.
check compare 2 4 1f6fd1 d1471f
if [ "$failed" -ne 0 ]; then
  echo "report-check: FAILED; see $OUT" >&2
  exit 1
fi
echo "report-check: passed; screenshots in $OUT" >&2
