"""Samples a running scenario once a second until stopped (SIGTERM or SIGINT):

    sample.py --app PID --generator PID --metrics URL --out FILE.jsonl

Each line holds the time, the CPU seconds and RSS of the service's process and of the load
generator's process tree (artillery runs workers as child processes), the machine's busy CPU
seconds and load average (the machine is shared: other work shows up there), and the service's
Prometheus counters (every `*_total`, `*_count` and `*_sum` series of /metrics, and the buckets
of the HTTP latency histogram). The report
turns consecutive samples into rates: CPU %, cache hit ratio, MongoDB and Redis calls per request.
Standard library only; reads /proc, so Linux only.
"""

import argparse
import json
import os
import signal
import time
import urllib.request

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# Kept whole, so that the report can draw the service's own latency percentiles per second.
HTTP_BUCKETS = "oponn_http_request_duration_seconds_bucket"


def process_stat(pid):
    """(parent pid, CPU seconds, RSS bytes) of one process, or None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    # After the command: state(0) ppid(1) ... utime(11) stime(12) ... rss(21)
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS, int(fields[21]) * PAGE_BYTES


def tree(root):
    """The CPU seconds and RSS of `root` and all its descendants."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = process_stat(int(entry))
            if stat:
                stats[int(entry)] = stat
    members, frontier = set(), [root]
    while frontier:
        pid = frontier.pop()
        if pid in stats and pid not in members:
            members.add(pid)
            frontier.extend(child for child, stat in stats.items() if stat[0] == pid)
    return (sum(stats[pid][1] for pid in members), sum(stats[pid][2] for pid in members))


def machine():
    """(CPU seconds busy on all cores since boot, 1-minute load average): the machine is shared."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]
    with open("/proc/loadavg") as handle:
        load = float(handle.read().split()[0])
    return (sum(fields[:8]) - idle) / CLOCK_TICKS, load


def counters(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    series = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0]
        if metric.endswith(("_total", "_count", "_sum")) or metric == HTTP_BUCKETS:
            series[name] = float(value)
    return series


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", type=int, required=True)
    parser.add_argument("--generator", type=int)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    with open(args.out, "w") as out:
        next_at = time.monotonic()
        while not stopping:
            app = process_stat(args.app)
            if app is None:
                break
            busy, load = machine()
            sample = {"t": time.time(), "app_cpu_s": app[1], "app_rss_bytes": app[2],
                      "machine_busy_s": busy, "load_average": load,
                      "metrics": counters(args.metrics)}
            if args.generator:
                sample["generator_cpu_s"], sample["generator_rss_bytes"] = tree(args.generator)
            out.write(json.dumps(sample) + "\n")
            out.flush()
            next_at += args.interval
            time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    main()
