#!/usr/bin/env python3
"""The client side of scripts/soak.sh. For the whole run it keeps
well-behaved clients busy (two `linepool load` runs, ping-pong and
pipelined, which check every reply, and reconnecting pipeliners checked
here) beside faulty ones (resets mid-line, invalid UTF-8, over-long lines,
tricklers, non-readers, connect/close churn), and samples the server's RSS,
descriptors and threads. Exits 1 on any lost or wrong reply, or if the
server's descriptors do not come back to where they started."""

import argparse
import json
import os
import socket
import struct
import subprocess
import threading
import time

ADDR = ("127.0.0.1", 0)
stop = threading.Event()
lock = threading.Lock()
counts = {"pipeliner_ok": 0, "pipeliner_wrong": 0, "pipeliner_failed": 0,
          "faulty_runs": 0, "faulty_unexpected": 0}


def bump(key, n=1):
    with lock:
        counts[key] += n


def recv_until_closed(s, limit=1 << 20):
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def pipeliner(n):
    """Connects, pipelines 200 lines, checks every reply, says shutdown."""
    round_ = 0
    while not stop.is_set():
        round_ += 1
        lines = [f"p{n}-{round_}-{i}".encode() for i in range(200)]
        try:
            with socket.create_connection(ADDR, timeout=10) as s:
                s.sendall(b"".join(l + b"\n" for l in lines) + b"shutdown\n")
                got = recv_until_closed(s)
            if got == b"".join(b"ACK: " + l + b"\n" for l in lines):
                bump("pipeliner_ok")
            else:
                bump("pipeliner_wrong")
        except OSError:
            bump("pipeliner_failed")


def expect(condition):
    bump("faulty_runs")
    if not condition:
        bump("faulty_unexpected")


def reset_mid_line():
    s = socket.create_connection(ADDR, timeout=5)
    s.sendall(b"half a li")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    expect(True)


def invalid_utf8():
    with socket.create_connection(ADDR, timeout=5) as s:
        s.sendall(b"ok\n\xff\xfe\n")
        expect(recv_until_closed(s) == b"ACK: ok\n")


def over_long():
    with socket.create_connection(ADDR, timeout=5) as s:
        try:
            s.sendall(b"x" * 70000 + b"\n")
        except OSError:
            pass
        expect(recv_until_closed(s) == b"ERR line too long (max 65536 bytes)\n")


def trickle():
    with socket.create_connection(ADDR, timeout=5) as s:
        for _ in range(10):
            if stop.is_set():
                break
            s.sendall(b"t")
            time.sleep(0.2)
    expect(True)


def non_reader():
    with socket.create_connection(ADDR, timeout=2) as s:
        try:
            for _ in range(200):
                s.sendall(b"never reads its replies\n" * 256)
        except OSError:
            pass
    expect(True)


def churn():
    for _ in range(20):
        socket.create_connection(ADDR, timeout=5).close()
    expect(True)


def faulty(kind):
    while not stop.is_set():
        try:
            kind()
        except OSError:
            bump("faulty_runs")
        time.sleep(0.05)


def sample(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(next(l.split()[1] for l in status.splitlines() if l.startswith(name)))
    return {"rss_kb": field("VmRSS:"), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": field("Threads:")}


def main():
    global ADDR
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the server's pid")
    parser.add_argument("--linepool", required=True, help="the linepool binary, for load")
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=10, help="seconds between samples")
    args = parser.parse_args()
    ADDR = ("127.0.0.1", args.port)

    baseline = sample(args.pid)
    loads = [subprocess.Popen([args.linepool, "load", "--json", "--port", str(args.port),
                               "-d", str(args.seconds)] + extra, stdout=subprocess.PIPE, text=True)
             for extra in (["-c", "20"], ["-c", "10", "--pipeline", "16"])]
    threads = [threading.Thread(target=pipeliner, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=faulty, args=(k,))
                for k in (reset_mid_line, invalid_utf8, over_long, trickle, non_reader, churn)]
    for t in threads:
        t.start()

    print(f"{'seconds':>8} {'rss_mib':>8} {'fds':>6} {'threads':>7}", flush=True)
    samples = []
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < args.seconds:
        s = sample(args.pid)
        samples.append((elapsed, s))
        print(f"{elapsed:8.0f} {s['rss_kb'] / 1024:8.1f} {s['fds']:6d} {s['threads']:7d}", flush=True)
        time.sleep(min(args.every, max(0.0, args.seconds - elapsed)))
    stop.set()
    for t in threads:
        t.join()
    reports = [json.loads(p.communicate()[0]) for p in loads]
    # Closing connections linger for at most about a second.
    deadline = time.monotonic() + 10
    while (end := sample(args.pid))["fds"] > baseline["fds"] and time.monotonic() < deadline:
        time.sleep(0.2)

    wrong = sum(r["errors"]["mismatch"] for r in reports) + counts["pipeliner_wrong"]
    lost = sum(r["errors"]["total"] - r["errors"]["mismatch"] for r in reports) \
        + counts["pipeliner_failed"]
    replies = sum(r["replies"] for r in reports) + 200 * counts["pipeliner_ok"]
    after_two = [s for t, s in samples if t >= min(120, args.seconds / 5)]
    growth = (end["rss_kb"] - after_two[0]["rss_kb"]) / 1024 if after_two else float("nan")
    print(f"replies checked      {replies} ({counts['pipeliner_ok']} pipeliner rounds)")
    print(f"wrong / lost         {wrong} / {lost}")
    print(f"faulty clients       {counts['faulty_runs']} runs, "
          f"{counts['faulty_unexpected']} answered otherwise than documented")
    print(f"fds                  baseline {baseline['fds']}, end {end['fds']}")
    print(f"rss mib              start {baseline['rss_kb'] / 1024:.1f}, "
          f"peak {max(s['rss_kb'] for _, s in samples) / 1024:.1f}, end {end['rss_kb'] / 1024:.1f}, "
          f"growth after the first fifth (at most 2 min) {growth:+.2f}")
    ok = wrong == 0 and lost == 0 and end["fds"] <= baseline["fds"] \
        and counts["faulty_unexpected"] == 0
    print(f"verdict              {'pass' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
