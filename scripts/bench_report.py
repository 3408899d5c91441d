#!/usr/bin/env python3
"""Turns the raw JSON lines scripts/bench.sh collects into docs/benchmarks.md:
medians per scenario and server, the linepool/tokio ratios (throughput, p99
latency, server CPU per reply), peak memory, the 10,000-idle row and the
worker sweep, followed by the raw data. Beside the file it writes the bar
charts of rate and CPU per reply (bench-rate.svg, bench-cpu.svg), and into
SPECTRA_DIR, for each scenario whose spectra are drawn, each server's
median-rate run (SPECTRA_DIR/SCENARIO/SERVER) and the scenario's label
(SPECTRA_DIR/SCENARIO/title), which bench.sh hands to `linepool load
compare --svg` for bench-spectrum-SCENARIO.svg."""

import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_charts  # noqa: E402

raw_path, pinning, seconds, runs, previous, charts_dir, spectra_dir = sys.argv[1:8]

# The scenarios whose percentile spectra are drawn, servers overlaid.
SPECTRA = [("pingpong-50", "ping-pong, 50 connections"), ("connections-1000", "1,000 connections")]
SERVERS = ("linepool", "tokio", "std")

# Figures from scripts run by hand (slowloris, soak) sit between these
# markers in docs/benchmarks.md and are carried over into the new file.
KEPT_BEGIN = "<!-- kept: figures from other scripts -->"
KEPT_END = "<!-- end of kept figures -->"
try:
    old = open(previous).read()
    kept = old[old.index(KEPT_BEGIN):old.index(KEPT_END) + len(KEPT_END)]
except (OSError, ValueError):
    kept = None
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


def cpu_per_reply(entry):
    """Server CPU microseconds per reply in one run."""
    replies = entry["report"]["replies"]
    return entry["cpu_secs"] * 1e6 / replies if replies else None


def cpu_us(key):
    values = [cpu_per_reply(e) for e in lines
              if (e.get("scenario"), e.get("server")) == key and "report" in e]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_ratio(name, other, pick, whole=False):
    """Median over rounds of linepool's figure over the other server's in
    the same round. bench.sh runs the servers one after the other in each
    round, so pairing them cancels the machine's drift between rounds.
    `pick` takes the run's report, or the whole entry with `whole`."""
    def figure(e):
        return pick(e) if whole else pick(e["report"])
    ours = {e["run"]: figure(e) for e in lines
            if e.get("scenario") == name and e.get("server") == "linepool" and "report" in e}
    theirs = {e["run"]: figure(e) for e in lines
              if e.get("scenario") == name and e.get("server") == other and "report" in e}
    ratios = [ours[r] / theirs[r] for r in ours
              if r in theirs and theirs[r] and ours[r] is not None]
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


def median_run(key):
    """The report of the run with the median rate (the lower middle one
    when the count is even)."""
    found = sorted(reports.get(key, []), key=lambda r: r["replies_per_sec"])
    return found[(len(found) - 1) // 2] if found else None


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


out = []
out.append("# Benchmarks\n")
out.append("Written by `scripts/bench.sh`; do not edit by hand. "
           f"Commit {git_rev()}, {cpu_model()}, {platform.system()} {platform.release()}; "
           f"{pinning}. Each figure is the median of {runs} runs of {seconds} s, "
           "each scenario on a fresh server. The load tool is closed-loop: every "
           "connection waits for its replies before sending more. Latency is per "
           "request, in microseconds.\n")
out.append("## linepool and the tokio reference\n")
out.append("| scenario | linepool replies/s | p99 µs | CPU µs/reply | tokio replies/s | p99 µs | CPU µs/reply "
           "| **ratio to tokio** | p99 ratio | CPU ratio | naive std replies/s | p99 µs | ratio to std |")
out.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
names = [
    ("pingpong-1", "ping-pong, 1 connection"),
    ("pingpong-50", "ping-pong, 50 connections"),
    ("pipelined-50x32", "50 connections, pipelined 32 deep"),
    ("connect-per-request-8", "connect per request, 8 clients"),
    ("connections-1000", "1,000 connections"),
    ("idle-10000-busy-50", "10,000 idle + 50 ping-pong"),
]
for name, label in names:
    ours, theirs = rate((name, "linepool")), rate((name, "tokio"))
    our_p99, their_p99 = p99((name, "linepool")), p99((name, "tokio"))
    naive, naive_p99 = rate((name, "std")), p99((name, "std"))
    ratio = paired_ratio(name, "tokio", lambda r: r["replies_per_sec"])
    p99_ratio = paired_ratio(name, "tokio", lambda r: r["latency_us"]["p99"])
    cpu_ratio = paired_ratio(name, "tokio", cpu_per_reply, whole=True)
    std_ratio = paired_ratio(name, "std", lambda r: r["replies_per_sec"])
    out.append(f"| {label} | {fmt(ours)} | {fmt(our_p99, 1)} | {fmt(cpu_us((name, 'linepool')), 2)} "
               f"| {fmt(theirs)} | {fmt(their_p99, 1)} | {fmt(cpu_us((name, 'tokio')), 2)} "
               f"| **{fmt(ratio, 2)}** | {fmt(p99_ratio, 2)} | {fmt(cpu_ratio, 2)} "
               f"| {fmt(naive)} | {fmt(naive_p99, 1)} | {fmt(std_ratio, 2)} |")
rate_groups = [(label, [rate((name, s)) for s in SERVERS]) for name, label in names]
cpu_groups = [(label, [cpu_us((name, s)) for s in SERVERS]) for name, label in names]
write(os.path.join(charts_dir, "bench-rate.svg"),
      bench_charts.bars("Replies per second, by scenario", "replies per second (median)",
                        SERVERS, rate_groups))
write(os.path.join(charts_dir, "bench-cpu.svg"),
      bench_charts.bars("Server CPU per reply, by scenario",
                        "server CPU µs per reply (median; shorter is better)",
                        SERVERS, cpu_groups, digits=2))
for name, label in SPECTRA:
    os.makedirs(os.path.join(spectra_dir, name), exist_ok=True)
    write(os.path.join(spectra_dir, name, "title"), label)
    for server in SERVERS:
        run = median_run((name, server))
        if run is not None:
            write(os.path.join(spectra_dir, name, server), json.dumps(run))
out.append("\n![Replies per second by scenario, linepool beside the references](bench-rate.svg)\n")
out.append("![Server CPU per reply by scenario](bench-cpu.svg)\n")
out.append("\nRatios are linepool / other, taken round by round (the servers run one "
           "after the other in each round) and then the median: a throughput ratio above "
           "1 means linepool answers more; a p99 or CPU ratio below 1 means linepool's tail "
           "is shorter or it spends less CPU per reply. CPU is the server process's user "
           "plus system time over the run (from /proc/PID/stat, 10 ms ticks) divided by "
           "the replies. linepool runs with its defaults: `--workers` is the number of "
           "CPUs it may use, 1 when pinned. "
           "*tokio* is bench/tokio-ref (one task per connection); *naive std* is "
           "bench/std-ref (one spawned thread per connection, no bound, no timeouts).\n")

busy50 = rate(("pingpong-50", "linepool"))
idle_busy = rate(("idle-10000-busy-50", "linepool"))
out.append("## Latency spectra\n")
out.append("Each server's run with the median rate, its whole latency histogram drawn as "
           "a percentile spectrum (`linepool load compare --svg`): the x axis counts nines "
           "(90%, 99%, 99.9%…), the y axis is logarithmic. Closed-loop latency hides "
           "coordinated omission: a stalled server also stalls its clients.\n")
for name, label in SPECTRA:
    out.append(f"![Latency by percentile, {label}](bench-spectrum-{name}.svg)\n")
out.append("## Memory, and connections held\n")
out.append("| scenario | server | peak RSS (MiB) | connections established | idle held | refused | errors |")
out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
for name, servers in (("connections-1000", ("linepool", "tokio", "std")),
                      ("idle-10000-busy-50", ("linepool", "tokio"))):
    for server in servers:
        key = (name, server)
        peak = peaks.get(key)
        out.append(f"| {name} | {server} | {fmt(peak / 1024 if peak else None, 1)} "
                   f"| {fmt(median(key, lambda r: r['connections']['established']))} "
                   f"| {fmt(median(key, lambda r: r['connections']['idle_held']))} "
                   f"| {fmt(median(key, lambda r: r['connections']['refused']))} "
                   f"| {fmt(median(key, lambda r: r['errors']['total']))} |")
out.append("")
for name in ("connections-1000", "idle-10000-busy-50"):
    ours, theirs = peaks.get((name, "linepool")), peaks.get((name, "tokio"))
    if ours and theirs:
        out.append(f"- {name}: linepool's peak RSS is {ours / theirs:.2f}× the tokio reference's.")
if busy50 and idle_busy:
    out.append(f"- With 10,000 idle connections held, linepool's 50 busy connections get "
               f"{idle_busy / busy50:.2f}× the replies per second of the plain 50-connection row.")
out.append("")

out.append("## Framed echo\n")
out.append("linepool only (`--protocol framed`; the references speak only the line "
           "protocol): 50 connections pipelined 32 deep, 32-byte payloads, every byte "
           "of every echo checked.\n")
out.append("| replies/s | p99 µs | errors |")
out.append("| ---: | ---: | ---: |")
key = ("framed-50x32", "linepool")
out.append(f"| {fmt(rate(key))} | {fmt(p99(key), 1)} "
           f"| {fmt(median(key, lambda r: r['errors']['total']))} |\n")

out.append("## Worker sweep\n")
out.append("128 ping-pong connections against `--workers N`, the server pinned to one "
           "core: more workers than cores only add hand-offs between threads.\n")
out.append("| --workers | replies/s | p99 µs | CPU µs/reply |")
out.append("| ---: | ---: | ---: | ---: |")
for workers in (1, 2, 4):
    key = (f"sweep-workers-{workers}", "linepool")
    out.append(f"| {workers} | {fmt(rate(key))} | {fmt(p99(key), 1)} | {fmt(cpu_us(key), 2)} |")
if kept:
    out.append("")
    out.append(kept)
out.append("\n## Raw data\n")
out.append("<details><summary>Every run's JSON report, as scripts/bench.sh collected it "
           "(without its per-second series and histogram, for length)</summary>\n")
out.append("```json")


def trimmed(entry):
    if "report" not in entry:
        return entry
    report = {k: v for k, v in entry["report"].items()
              if k not in ("series", "latency_histogram")}
    return dict(entry, report=report)


out.extend(json.dumps(trimmed(entry), separators=(",", ":")) for entry in lines)
out.append("```\n")
out.append("</details>")
print("\n".join(out))
