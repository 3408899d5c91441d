#!/usr/bin/env python3
"""Turns the raw JSON lines scripts/bench.sh collects into docs/benchmarks.md:
medians per scenario and server, the linepool/tokio ratios, peak memory,
and the pool-size sweep, followed by the raw data."""

import json
import platform
import statistics
import subprocess
import sys

raw_path, pinning, seconds, runs = sys.argv[1:5]
lines = [json.loads(l) for l in open(raw_path) if l.strip()]
reports = {}
peaks = {}
for entry in lines:
    key = (entry["scenario"], entry["server"])
    if "report" in entry:
        reports.setdefault(key, []).append(entry["report"])
    else:
        peaks[key] = entry["peak_rss_kb"]


def median(key, pick):
    values = [pick(r) for r in reports.get(key, [])]
    return statistics.median(values) if values else None


def rate(key):
    return median(key, lambda r: r["replies_per_sec"])


def p99(key):
    return median(key, lambda r: r["latency_us"]["p99"])


def paired_ratio(name, other, pick):
    """Median over rounds of linepool's figure over the other server's in
    the same round. bench.sh runs the servers one after the other in each
    round, so pairing them cancels the machine's drift between rounds."""
    ours = {e["run"]: pick(e["report"]) for e in lines
            if e.get("scenario") == name and e.get("server") == "linepool" and "report" in e}
    theirs = {e["run"]: pick(e["report"]) for e in lines
              if e.get("scenario") == name and e.get("server") == other and "report" in e}
    ratios = [ours[r] / theirs[r] for r in ours if r in theirs and theirs[r]]
    return statistics.median(ratios) if ratios else None


def fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


out = []
out.append("# Benchmarks\n")
out.append("Written by `scripts/bench.sh`; do not edit by hand. "
           f"Commit {git_rev()}, {cpu_model()}, {platform.system()} {platform.release()}; "
           f"{pinning}. Each figure is the median of {runs} runs of {seconds} s, "
           "each scenario on a fresh server. The load tool is closed-loop: every "
           "connection waits for its replies before sending more. Latency is per "
           "request, in microseconds.\n")
out.append("## linepool and the tokio reference\n")
out.append("| scenario | linepool replies/s | p99 µs | tokio replies/s | p99 µs | **ratio to tokio** | p99 ratio | naive std replies/s | p99 µs | ratio to std |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
names = [
    ("pingpong-1", "ping-pong, 1 connection"),
    ("pingpong-50", "ping-pong, 50 connections"),
    ("pipelined-50x32", "50 connections, pipelined 32 deep"),
    ("connect-per-request-8", "connect per request, 8 clients"),
    ("connections-1000", "1,000 connections (`--workers 1000`)"),
]
for name, label in names:
    ours, theirs = rate((name, "linepool")), rate((name, "tokio"))
    our_p99, their_p99 = p99((name, "linepool")), p99((name, "tokio"))
    naive, naive_p99 = rate((name, "std")), p99((name, "std"))
    ratio = paired_ratio(name, "tokio", lambda r: r["replies_per_sec"])
    p99_ratio = paired_ratio(name, "tokio", lambda r: r["latency_us"]["p99"])
    std_ratio = paired_ratio(name, "std", lambda r: r["replies_per_sec"])
    out.append(f"| {label} | {fmt(ours)} | {fmt(our_p99, 1)} | {fmt(theirs)} | {fmt(their_p99, 1)} "
               f"| **{fmt(ratio, 2)}** | {fmt(p99_ratio, 2)} | {fmt(naive)} | {fmt(naive_p99, 1)} "
               f"| {fmt(std_ratio, 2)} |")
out.append("\nRatios are linepool / other, taken round by round (the servers run one "
           "after the other in each round) and then the median: a throughput ratio above "
           "1 means linepool answers more; a p99 ratio below 1 means linepool's tail is "
           "shorter. "
           "*tokio* is bench/tokio-ref (one task per connection); *naive std* is "
           "bench/std-ref (one spawned thread per connection, no bound, no timeouts).\n")

out.append("## Memory and connections in the 1,000-connection run\n")
out.append("| server | peak RSS (MiB) | connections established | refused | errors |")
out.append("| --- | ---: | ---: | ---: | ---: |")
for server in ("linepool", "tokio", "std"):
    key = ("connections-1000", server)
    peak = peaks.get(key)
    out.append(f"| {server} | {fmt(peak / 1024 if peak else None, 1)} "
               f"| {fmt(median(key, lambda r: r['connections']['established']))} "
               f"| {fmt(median(key, lambda r: r['connections']['refused']))} "
               f"| {fmt(median(key, lambda r: r['errors']['total']))} |")
ours, theirs = peaks.get(("connections-1000", "linepool")), peaks.get(("connections-1000", "tokio"))
if ours and theirs:
    out.append(f"\nlinepool's peak RSS is {ours / theirs:.2f}× the tokio reference's.\n")

out.append("## Framed echo\n")
out.append("linepool only (`--protocol framed`; the references speak only the line "
           "protocol): 50 connections pipelined 32 deep, 32-byte payloads, every byte "
           "of every echo checked.\n")
out.append("| replies/s | p99 µs | errors |")
out.append("| ---: | ---: | ---: |")
key = ("framed-50x32", "linepool")
out.append(f"| {fmt(rate(key))} | {fmt(p99(key), 1)} "
           f"| {fmt(median(key, lambda r: r['errors']['total']))} |\n")

out.append("## Pool-size sweep\n")
out.append("128 connections against `--workers N --queue 0 --overload reject`: "
           "connections beyond the pool are turned away with `ERR server busy`.\n")
out.append("| --workers | replies/s | p99 µs | rejected connections |")
out.append("| ---: | ---: | ---: | ---: |")
for workers in (1, 2, 4, 8, 32, 128):
    key = (f"sweep-workers-{workers}", "linepool")
    out.append(f"| {workers} | {fmt(rate(key))} | {fmt(p99(key), 1)} "
               f"| {fmt(median(key, lambda r: r['connections']['rejected']))} |")

out.append("\n## Raw data\n")
out.append("<details><summary>Every run's JSON report, as scripts/bench.sh collected it</summary>\n")
out.append("```json")
out.extend(json.dumps(entry, separators=(",", ":")) for entry in lines)
out.append("```\n")
out.append("</details>")
print("\n".join(out))
