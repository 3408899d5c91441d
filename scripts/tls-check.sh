#!/usr/bin/env bash
# Checks linepool's TLS with clients from outside the project: Python's ssl
# module and `openssl s_client`. Makes a CA, a server certificate and client
# certificates with openssl at run time in a temporary directory (no key is
# kept), then starts servers and checks: an exchange and an orderly close
# with close_notify, TLS 1.2 refused under --tls-min-version 1.3, a
# plaintext client closed, client certificates required (good one served,
# none refused), --admin-cert refusing a certificate not on the list, and
# the failures counted in /metrics. scripts/check.sh runs it.
#
#   scripts/tls-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

for tool in openssl python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "tls-check: $tool not found; install it with: apt-get install ${tool/python3/python3}" >&2
    exit 2
  fi
done
LINEPOOL=$(linepool_debug_bin)
dir=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$dir"' EXIT

# A CA, a server certificate for localhost and 127.0.0.1, two clients.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=tls-check CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
issue() { # NAME SAN
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=$1" -keyout "$dir/$1.key" -out "$dir/$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\n' "$2" >"$dir/$1.ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/$1.ext" -out "$dir/$1.pem" 2>/dev/null
}
issue server "DNS:localhost,IP:127.0.0.1"
issue admin "DNS:admin.example"
issue user "DNS:user.example"

fail() { echo "tls-check: FAILED: $*" >&2; cat "$log" >&2; exit 1; }
log=$dir/server.log

# 1. An exchange with Python's ssl, ended by `shutdown`: the server's
# close_notify makes recv() return b"" (a bare end of stream would raise).
start_linepool "$log" --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
  --metrics 127.0.0.1:0
metrics=$(sed -n 's/.*metrics on http:\/\/\([0-9.:]*\)\/metrics.*/\1/p' "$log" | head -n 1)
python3 - "$SERVER_PORT" "$dir/ca.pem" <<'PY' || fail "python ssl exchange"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
context = ssl.create_default_context(cafile=ca)
with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as s:
        assert s.version() in ("TLSv1.3", "TLSv1.2"), s.version()
        s.sendall(b"hello\n")
        got = b""
        while not got.endswith(b"\n"):
            got += s.recv(100)
        assert got == b"ACK: hello\n", got
        s.sendall(b"shutdown\n")
        assert s.recv(100) == b"", "expected close_notify"
print("tls-check: python ssl: exchange and close_notify ok", file=sys.stderr)
PY

# 2. openssl s_client, TLS 1.2 and 1.3.
for version in -tls1_2 -tls1_3; do
  out=$(printf 'over openssl\nshutdown\n' |
    openssl s_client "$version" -connect "127.0.0.1:$SERVER_PORT" -servername localhost \
      -CAfile "$dir/ca.pem" -verify_return_error -quiet 2>/dev/null) || true
  [ "$out" = "ACK: over openssl" ] || fail "openssl s_client $version said: $out"
done
echo "tls-check: openssl s_client: TLS 1.2 and 1.3 ok" >&2

# 3. A plaintext client is closed without a word, and counted.
python3 - "$SERVER_PORT" <<'PY' || fail "plaintext client"
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(b"hello\n")
    assert s.recv(100) == b"", "expected a close"
PY
python3 - "$metrics" <<'PY' || fail "metrics"
import sys, time, urllib.request
key = 'linepool_tls_handshake_failures_total{reason="plaintext_on_tls_port"} 1'
for _ in range(100):
    body = urllib.request.urlopen("http://%s/metrics" % sys.argv[1]).read().decode()
    if key in body:
        break
    time.sleep(0.05)
else:
    sys.exit("not counted: " + key)
PY
echo "tls-check: plaintext client closed and counted" >&2
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

# 4. Under --tls-min-version 1.3, TLS 1.2 is refused.
start_linepool "$log" --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
  --tls-min-version 1.3
if printf 'x\n' | openssl s_client -tls1_2 -connect "127.0.0.1:$SERVER_PORT" \
  -CAfile "$dir/ca.pem" -quiet >/dev/null 2>&1 </dev/null; then
  fail "TLS 1.2 accepted under --tls-min-version 1.3"
fi
grep -q "reason=peer_incompatible" "$log" || fail "no peer_incompatible warning"
echo "tls-check: TLS 1.2 refused under --tls-min-version 1.3" >&2
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

# 5. Client certificates required, and --admin-cert.
start_linepool "$log" --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" \
  --tls-client-ca "$dir/ca.pem" --admin-cert admin.example
python3 - "$SERVER_PORT" "$dir" <<'PY' || fail "client certificates"
import socket, ssl, sys
port, d = int(sys.argv[1]), sys.argv[2]
def talk(identity, line):
    context = ssl.create_default_context(cafile=d + "/ca.pem")
    if identity:
        context.load_cert_chain(d + "/%s.pem" % identity, d + "/%s.key" % identity)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(line)
            return s.recv(100)
assert talk("user", b"hi\n") == b"ACK: hi\n"
assert talk("user", b"quit_server\n") == b"ERR quit_server not allowed\n"
try:
    talk(None, b"hi\n")
    sys.exit("served without a client certificate")
except (ssl.SSLError, ConnectionError):
    pass
# The admin's certificate, from this machine: the server stops.
assert talk("admin", b"quit_server\n") == b""
PY
wait "$SERVER_PID" || fail "server exit status after quit_server"
grep -q "quit_server received peer=127.0.0.1:[0-9]* cert=admin.example" "$log" ||
  fail "no quit_server line naming the certificate"
echo "tls-check: client certificates and --admin-cert ok" >&2
echo "tls-check: all passed" >&2
