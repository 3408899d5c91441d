#!/usr/bin/env python3
"""The client side of scripts/slowloris.sh: holds silent sockets and
blank-line keepers against a server on 127.0.0.1, then times fresh clients
from connect to their `ACK: ping`. With --idle-cost it first measures the
server's CPU time while it only holds the sockets. Prints one report;
exits 1 if a fresh client failed or a held connection was closed.

With --tls-ca the server speaks TLS: the silent sockets send half a
ClientHello and stop, the keepers finish their handshake and go quiet,
and the fresh clients shake hands before their `ping`."""

import argparse
import os
import resource
import socket
import ssl
import statistics
import time


def half_client_hello(context):
    """The first half of a real ClientHello, as a stalled client sends it."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--silent", type=int, default=5000, help="sockets that send nothing")
    parser.add_argument("--keepers", type=int, default=1000,
                        help="sockets that send a blank line every second")
    parser.add_argument("--tries", type=int, default=100, help="fresh clients timed")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between fresh clients")
    parser.add_argument("--pid", type=int, help="the server's pid, for --idle-cost")
    parser.add_argument("--idle-cost", type=float, default=0, metavar="SECS",
                        help="measure the server's CPU over SECS while it only holds the sockets")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="the server speaks TLS, with a certificate this CA signed")
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.tls_ca) if args.tls_ca else None

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    addr = ("127.0.0.1", args.port)

    silent = [socket.create_connection(addr) for _ in range(args.silent)]
    keepers = [socket.create_connection(addr) for _ in range(args.keepers)]
    if context:
        half = half_client_hello(context)
        for s in silent:
            s.sendall(half)
        keepers = [context.wrap_socket(k, server_hostname="localhost") for k in keepers]
    for s in silent + keepers:
        s.setblocking(False)
    what = "half-ClientHello sockets and handshaken quiet" if context else "silent sockets and"
    print(f"holding {len(silent)} {what} {len(keepers)} keepers", flush=True)

    if args.idle_cost > 0 and args.pid:
        # User plus system time, fields 14 and 15 of /proc/PID/stat.
        def ticks():
            fields = open(f"/proc/{args.pid}/stat").read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        hz = os.sysconf("SC_CLK_TCK")
        t0, w0 = ticks(), time.monotonic()
        time.sleep(args.idle_cost)
        cpu, wall = (ticks() - t0) / hz, time.monotonic() - w0
        print(f"idle cost      server CPU {cpu:.2f} s in {wall:.0f} s = {100 * cpu / wall:.2f} % of a core",
              flush=True)

    latencies = []
    failures = 0
    keeper_replies = 0
    next_keeper = 0
    start = time.monotonic()
    for i in range(args.tries):
        # Keep every keeper at one blank line a second, spread over the
        # gaps between fresh clients; read their replies so nothing backs up.
        due = int((time.monotonic() - start) * len(keepers))
        while next_keeper < due and not context:
            k = keepers[next_keeper % len(keepers)]
            k.send(b"\n")
            try:
                keeper_replies += len(k.recv(4096)) // len(b"ACK: \n")
            except BlockingIOError:
                pass
            next_keeper += 1
        t0 = time.monotonic()
        try:
            with socket.create_connection(addr, timeout=5) as raw:
                fresh = context.wrap_socket(raw, server_hostname="localhost") if context else raw
                fresh.sendall(b"ping\n")
                got = b""
                while not got.endswith(b"\n"):
                    chunk = fresh.recv(64)
                    if not chunk:
                        break
                    got += chunk
            if got == b"ACK: ping\n":
                latencies.append(time.monotonic() - t0)
            else:
                failures += 1
        except OSError:
            failures += 1
        time.sleep(args.gap)

    # Every held connection must still be open: a read finds nothing
    # waiting (or a keeper's replies), never the end of the stream.
    closed = 0
    for s in silent + keepers:
        try:
            while s.recv(65536):
                pass
            closed += 1
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except OSError:
            closed += 1

    if args.tries == 0:
        print(f"held           {len(silent) + len(keepers) - closed} of {len(silent) + len(keepers)} still open")
        return 1 if closed else 0
    ms = sorted(x * 1000 for x in latencies)
    def pct(p):
        return ms[min(len(ms) - 1, int(len(ms) * p / 100))] if ms else float("nan")
    print(f"fresh clients  {len(latencies)} answered, {failures} failed")
    print(f"latency ms     p50 {pct(50):.2f}  p99 {pct(99):.2f}  max {ms[-1] if ms else float('nan'):.2f}"
          f"  mean {statistics.mean(ms) if ms else float('nan'):.2f}")
    print(f"held           {len(silent) + len(keepers) - closed} of {len(silent) + len(keepers)} "
          f"still open; keepers sent {next_keeper} blank lines, {keeper_replies} replies read")
    verdict = "met" if ms and pct(99) <= 50 and failures == 0 else "NOT met"
    print(f"target         p99 <= 50 ms with every fresh client answered: {verdict}")
    return 1 if failures or closed else 0


if __name__ == "__main__":
    raise SystemExit(main())
