#!/usr/bin/env bash
# Installs the Debian package on this machine and checks it the way an
# operator would meet it: the binary runs, `man` finds the pages, bash
# loads the completion, the units pass `systemd-analyze verify` and are
# neither enabled nor started, lintian finds no error; then removes it
# (only the conffile /etc/default/linepool may stay) and purges it (nothing
# may stay). Needs root. Takes the .deb as its argument, or builds one with
# scripts/package.sh. Every step is bounded by a timeout; on any failure the
# package is purged again. Not part of CI: it changes the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

STEP_TIMEOUT=${STEP_TIMEOUT:-120}
step() { echo; echo "== $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
bounded() { timeout "$STEP_TIMEOUT" "$@"; }

[ "$(id -u)" = 0 ] || fail "run as root (dpkg -i changes the machine)"

# Tools the checks need, from Debian's packages when missing.
missing=()
command -v man >/dev/null || missing+=(man-db)
command -v lintian >/dev/null || missing+=(lintian)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  bounded apt-get install -y -qq "${missing[@]}"
fi

if [ $# -ge 1 ]; then
  deb=$1
else
  step "building the package"
  deb=$(bash scripts/package.sh | tail -n 1)
fi
[ -f "$deb" ] || fail "no package at $deb"
step "package $deb"
echo "size: $(stat -c %s "$deb") bytes"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/\1:/p'
dpkg-deb --contents "$deb" | awk '{printf "%s %8s %s\n", $1, $3, $6}'

if dpkg-query -W -f '${Status}' linepool 2>/dev/null | grep -q installed; then
  step "purging the linepool already installed"
  bounded dpkg --purge linepool
fi

# What the package may change is compared against this list afterwards.
# The user database and dpkg's own records change by design and are left
# out; /var/lib/systemd is in, where deb-systemd-helper keeps its state.
snapshot() {
  find /etc /usr /opt /srv /var/lib/systemd -xdev 2>/dev/null |
    grep -v -E '^/etc/(passwd|group|shadow|gshadow)-?$' | sort
}
snapshot >/tmp/linepool-before.txt
installed=1
cleanup() {
  if [ "$installed" = 1 ]; then
    echo "purging linepool after a failed check" >&2
    dpkg --purge linepool >/dev/null 2>&1 || true
  fi
}
installed=0
trap cleanup EXIT

step "dpkg -i"
installed=1
bounded dpkg -i "$deb"

step "linepool --version"
version=$(bounded linepool --version)
echo "$version"
expected="linepool $(dpkg-deb -f "$deb" Version | cut -d- -f1)"
[ "$version" = "$expected" ] || fail "expected '$expected'"
[ "$(command -v linepool)" = /usr/bin/linepool ] || fail "linepool is not /usr/bin/linepool"

step "man -w"
for page in linepool linepool-serve linepool-load linepool-client; do
  bounded man -w "$page" || fail "man finds no $page page"
done
bounded man linepool-serve 2>&1 | grep -q LINEPOOL_MAX_CONNECTIONS ||
  fail "linepool-serve(1) does not name LINEPOOL_MAX_CONNECTIONS"

step "completions"
bounded bash -c 'source /usr/share/bash-completion/completions/linepool; complete -p linepool' ||
  fail "the bash completion does not load"
[ -f /usr/share/zsh/vendor-completions/_linepool ] || fail "no zsh completion"
[ -f /usr/share/fish/vendor_completions.d/linepool.fish ] || fail "no fish completion"

step "the monitoring files"
for file in linepool-alerts.yml linepool-rules.yml linepool-dashboard.json; do
  [ -f "/usr/share/linepool/monitoring/$file" ] || fail "no /usr/share/linepool/monitoring/$file"
done
[ -f /usr/share/doc/linepool/runbook.md ] || fail "no /usr/share/doc/linepool/runbook.md"
if command -v promtool >/dev/null; then
  bounded promtool check rules /usr/share/linepool/monitoring/linepool-rules.yml \
    /usr/share/linepool/monitoring/linepool-alerts.yml
fi
python3 -m json.tool /usr/share/linepool/monitoring/linepool-dashboard.json >/dev/null ||
  fail "the dashboard is not JSON"

step "the linepool user (sysusers)"
id linepool || fail "no linepool user"
getent passwd linepool

step "the environment file"
dpkg-query --showformat='${Conffiles}\n' --show linepool
grep -q '^#LINEPOOL_MAX_CONNECTIONS=' /etc/default/linepool || fail "/etc/default/linepool lists no settings"
if grep -v '^#' /etc/default/linepool | grep -q .; then fail "/etc/default/linepool sets something"; fi

step "units: installed, not enabled, not started"
for unit in linepool.service linepool.socket; do
  [ -f "/usr/lib/systemd/system/$unit" ] || fail "no $unit"
  state=$(systemctl --root=/ is-enabled "$unit" 2>&1 || true)
  echo "$unit: $state"
  [ "$state" = disabled ] || fail "$unit is $state, not disabled"
  if find /etc/systemd/system -name "$unit" | grep -q .; then fail "$unit is linked in /etc/systemd/system"; fi
done
if [ -d /run/systemd/system ]; then
  for unit in linepool.service linepool.socket; do
    state=$(systemctl is-active "$unit" || true)
    echo "$unit: $state"
    [ "$state" = inactive ] || fail "$unit is $state"
  done
else
  echo "no systemd running here (/run/systemd/system is absent): nothing could have been started"
fi
# Other linepool processes (tests, say) may run here; the unit would run
# its one as the linepool user.
if pgrep -u linepool >/dev/null; then fail "a process runs as the linepool user"; fi

step "systemd-analyze verify"
# Offline: the units are read from the files, not from a running manager.
bounded systemd-analyze verify /usr/lib/systemd/system/linepool.socket \
  /usr/lib/systemd/system/linepool.service
echo "verified"

step "lintian"
bounded lintian --fail-on error --display-info "$deb"
echo "lintian: no errors"

step "dpkg -r"
bounded dpkg -r linepool
[ -f /etc/default/linepool ] || fail "the conffile went with dpkg -r"
snapshot >/tmp/linepool-after-remove.txt
left=$(comm -13 /tmp/linepool-before.txt /tmp/linepool-after-remove.txt)
echo "left behind:"
echo "$left"
# The conffile, and systemd state that is not the package's files:
# deb-systemd-helper's masks and its record of the units' enablement (the
# debhelper fragments' rule: a removed but not purged package's units stay
# masked, and enabling them again on reinstall is remembered); the purge
# clears both.
dsh=/var/lib/systemd/deb-systemd-helper
allowed="/etc/default(/linepool)?|/etc/systemd/system/linepool\.(service|socket)"
allowed+="|$dsh-masked(/linepool\.(service|socket))?"
allowed+="|$dsh-enabled(/linepool\.(service|socket)\.dsh-also)?"
unexpected=$(echo "$left" | grep -v -E "^($allowed)\$" || true)
[ -z "$unexpected" ] || fail "left after dpkg -r: $unexpected"
gone=$(comm -23 /tmp/linepool-before.txt /tmp/linepool-after-remove.txt)
[ -z "$gone" ] || fail "dpkg -r removed what it did not install: $gone"

step "dpkg --purge"
bounded dpkg --purge linepool
installed=0
[ ! -e /etc/default/linepool ] || fail "the conffile survived the purge"
snapshot >/tmp/linepool-after-purge.txt
if ! diff /tmp/linepool-before.txt /tmp/linepool-after-purge.txt; then
  fail "the purge left the files above"
fi
echo "nothing left (the linepool user stays, as Debian leaves system users: $(id linepool))"

echo
echo "package-check: all passed"
