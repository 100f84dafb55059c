"""The load test report: a Markdown summary per scenario, charts, and an index.

    report.py --dir REPORT --profile full|smoke --books N --stores S --commit SHA

Reads, for each scenario label in REPORT: artillery's `--output` JSON (`<label>.json`), the
samples of the service (`<label>.samples.jsonl`, from sample.py) and artillery's log (`ensure`
results); and when present the native generator's run (`native.json`), `make bench`'s output
(`bench.txt`) and the CPU profile (`perf.folded`, `perf-self.txt`). Writes `<label>.md`,
`<label>-*.png` (when matplotlib is installed) and `index.md`, with the command that produced
each figure.

Figures for a scenario come from its *sustained* phase (its last phase, as declared in the
scenario's YAML for the environment it ran), where arrival rate and cache state are steady:
requests/s and CPU from the per-second samples, client latency from artillery's 10-second windows
inside the phase (the worst window's p99), server latency from the service's own histogram over
the phase. Whole-run percentiles (what `ensure` checks) are listed too.
"""

import argparse
import json
import math
import os
import pathlib
import platform
import re
import subprocess
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:  # the smoke profile draws no charts
    plt = None

HERE = pathlib.Path(__file__).resolve().parent
LOADTEST = HERE.parent
DESCRIPTIONS = {
    "book-warm": "`book(id)`, ids drawn from a Zipf law, warm entity cache",
    "book-cold": "`book(id)`, cache flushed first, each request a new id (least popular first)",
    "books-by-ids": "`booksByIds` with 100 ids drawn from the Zipf law",
    "books-pages": "`books` pages by author and by store (first 20), then up to 2 next pages via `after`",
    "bookstores-for-books": "`bookstoresForBooks` with 100 ids (1,000 fixed sets, Zipf popularity)",
    "read-write-mix": "90% reads (`book(id)`, `books` by author), 10% `updateBook` with the bearer token",
    "book-warm-profiled": "`book(id)` warm, while `perf record` samples the service",
}
HTTP_BUCKETS = "oponn_http_request_duration_seconds_bucket"


# --- inputs ------------------------------------------------------------------------------------

def phases(scenario, environment):
    """The phases a scenario ran, read from its YAML with artillery's own YAML parser."""
    script = f"""
      const yaml = require('js-yaml');
      const doc = yaml.load(require('fs').readFileSync(process.argv[1], 'utf8'));
      const env = (doc.config.environments || {{}})[process.argv[2]] || {{}};
      console.log(JSON.stringify(env.phases || doc.config.phases || []));"""
    path = LOADTEST / "scenarios" / f"{scenario}.yml"
    output = subprocess.run(["node", "-e", script, str(path), environment], check=True,
                            capture_output=True, text=True,
                            env={"NODE_PATH": str(LOADTEST / "node_modules"), **os.environ})
    return json.loads(output.stdout)


def samples(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def metric_sum(series, name, **labels):
    """Sum of every series of `name` whose labels include `labels`."""
    total = 0.0
    for key, value in (series or {}).items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            total += value
    return total


def delta(first, last, name, **labels):
    return metric_sum(last["metrics"], name, **labels) - metric_sum(first["metrics"], name, **labels)


def histogram_quantile(first, last, quantile):
    """A quantile of the HTTP latency histogram's increase between two samples (ms)."""
    buckets = []
    for key, value in (last["metrics"] or {}).items():
        if key.startswith(HTTP_BUCKETS):
            bound = re.search(r'le="([^"]+)"', key).group(1)
            before = (first["metrics"] or {}).get(key, 0.0)
            buckets.append((math.inf if bound == "+Inf" else float(bound), value - before))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = quantile * buckets[-1][1]
    previous_bound, previous_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return previous_bound * 1000
            share = (rank - previous_count) / max(count - previous_count, 1e-9)
            return (previous_bound + (bound - previous_bound) * share) * 1000
        previous_bound, previous_count = bound, count
    return None


# --- one scenario ------------------------------------------------------------------------------

class Scenario:
    def __init__(self, directory, label, profile):
        self.label = label
        self.name = label.removesuffix("-nocache")
        self.cache = "off" if label.endswith("-nocache") else "on"
        environment = {"off": "nocache"}.get(self.cache, profile)
        if label == "book-warm-profiled":
            self.name, environment = "book-warm", "profile"
        self.output = json.loads((directory / f"{label}.json").read_text())
        self.samples = samples(directory / f"{label}.samples.jsonl")
        log = directory / f"{label}.log"
        self.checks = re.findall(r"^(ok|fail): (.*)$", log.read_text(), re.M) if log.exists() else []
        self.phases = phases(self.name, environment)
        aggregate = self.output["aggregate"]
        self.counters = aggregate["counters"]
        self.latency = aggregate["summaries"].get("http.response_time", {})
        self.start = aggregate["firstCounterAt"] / 1000
        self.end = aggregate["lastCounterAt"] / 1000
        sustained = self.phases[-1]["duration"] if self.phases else 0
        self.sustained_from = self.start + sum(p["duration"] for p in self.phases[:-1])
        self.sustained_to = self.sustained_from + sustained
        self.sustained_rate = self.phases[-1].get("arrivalRate") if self.phases else None

    def steady(self):
        """The samples inside the sustained phase (all samples if there are too few)."""
        inside = [s for s in self.samples if self.sustained_from + 1 <= s["t"] <= self.sustained_to]
        return inside if len(inside) >= 3 else self.samples

    def figures(self):
        c = self.counters
        requests = c.get("http.requests", 0)
        failed = c.get("graphql.failed_responses", 0) + requests - c.get("graphql.responses", 0)
        figures = {
            "requests": requests,
            "failed": failed,
            "error_rate": failed / requests if requests else 0.0,
            "expect_failed": c.get("plugins.expect.failed", 0),
            "vusers_failed": c.get("vusers.failed", 0),
            "error_kinds": {k: v for k, v in c.items()
                            if k.startswith(("errors.", "graphql.errors."))},
            "codes": {k.removeprefix("http.codes."): v for k, v in c.items()
                      if k.startswith("http.codes.")},
            "run_p50": self.latency.get("median"), "run_p95": self.latency.get("p95"),
            "run_p99": self.latency.get("p99"), "run_max": self.latency.get("max"),
            "arrival_rate": self.sustained_rate,
        }
        windows = [w for w in self.output.get("intermediate", [])
                   if self.sustained_from <= int(w["period"]) / 1000
                   and int(w["period"]) / 1000 + 10 <= self.sustained_to + 1]
        times = [w["summaries"].get("http.response_time") for w in windows]
        times = [t for t in times if t]
        if times:
            figures["p50"] = max(t["median"] for t in times)
            figures["p95"] = max(t["p95"] for t in times)
            figures["p99"] = max(t["p99"] for t in times)
        steady = self.steady()
        if len(steady) >= 2:
            first, last = steady[0], steady[-1]
            seconds = last["t"] - first["t"]
            served = delta(first, last, "oponn_http_requests_total")
            figures["rps"] = served / seconds
            figures["cpu"] = (last["app_cpu_s"] - first["app_cpu_s"]) / seconds * 100
            if "generator_cpu_s" in last:
                figures["generator_cpu"] = (last["generator_cpu_s"] - first["generator_cpu_s"]) / seconds * 100
            figures["cpu_ms_per_request"] = figures["cpu"] * 10 / figures["rps"] if figures["rps"] else None
            figures["rss_mib"] = max(s["app_rss_bytes"] for s in steady) / 2**20
            if "machine_busy_s" in last and "machine_busy_s" in first:
                busy = (last["machine_busy_s"] - first["machine_busy_s"]) / seconds * 100
                figures["others_cpu"] = busy - figures["cpu"] - figures.get("generator_cpu", 0.0)
                figures["load_average"] = max(s.get("load_average", 0.0) for s in steady)
            hits = delta(first, last, "oponn_cache_lookups_total", result="hit")
            lookups = delta(first, last, "oponn_cache_lookups_total")
            figures["hit_ratio"] = hits / lookups if lookups else None
            query_hits = delta(first, last, "oponn_query_cache_total", outcome="hit")
            query_lookups = sum(delta(first, last, "oponn_query_cache_total", outcome=o)
                                for o in ("hit", "miss", "bypass"))
            figures["query_hit_ratio"] = query_hits / query_lookups if query_lookups else None
            mongo = delta(first, last, "oponn_mongodb_commands_total")
            redis = delta(first, last, "oponn_redis_command_duration_seconds_count")
            figures["mongodb_per_request"] = mongo / served if served else None
            figures["redis_per_request"] = redis / served if served else None
            mongo_time = delta(first, last, "oponn_mongodb_command_duration_seconds_sum")
            redis_time = delta(first, last, "oponn_redis_command_duration_seconds_sum")
            figures["mongodb_ms"] = mongo_time / mongo * 1000 if mongo else None
            figures["redis_ms"] = redis_time / redis * 1000 if redis else None
            lookups_timed = delta(first, last, "oponn_cache_lookup_duration_seconds_count")
            lookup_time = delta(first, last, "oponn_cache_lookup_duration_seconds_sum")
            figures["lookup_ms"] = lookup_time / lookups_timed * 1000 if lookups_timed else None
            figures["server_p50"] = histogram_quantile(first, last, 0.50)
            figures["server_p99"] = histogram_quantile(first, last, 0.99)
        figures["checks_passed"] = all(result == "ok" for result, _ in self.checks) and bool(self.checks)
        return figures

    def per_second(self):
        """(seconds since start, requests/s, app CPU %, generator CPU %, hit ratio, server p99 ms,
        CPU % of everything else on the machine)."""
        rows = []
        for before, after in zip(self.samples, self.samples[1:]):
            seconds = after["t"] - before["t"]
            if seconds <= 0 or not after["metrics"] or not before["metrics"]:
                continue
            lookups = delta(before, after, "oponn_cache_lookups_total")
            hits = delta(before, after, "oponn_cache_lookups_total", result="hit")
            generator = None
            if "generator_cpu_s" in after:
                generator = (after["generator_cpu_s"] - before["generator_cpu_s"]) / seconds * 100
            app_cpu = (after["app_cpu_s"] - before["app_cpu_s"]) / seconds * 100
            others = None
            if "machine_busy_s" in after and "machine_busy_s" in before:
                others = ((after["machine_busy_s"] - before["machine_busy_s"]) / seconds * 100
                          - app_cpu - (generator or 0.0))
            rows.append((after["t"] - self.start,
                         delta(before, after, "oponn_http_requests_total") / seconds,
                         app_cpu,
                         generator,
                         hits / lookups if lookups else None,
                         histogram_quantile(before, after, 0.99),
                         others))
        return rows


# --- writing -----------------------------------------------------------------------------------

def number(value, digits=0, suffix=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def percent(value):
    return "–" if value is None else f"{value * 100:.1f}%"


def charts(scenario, directory):
    if plt is None:
        return []
    rows = scenario.per_second()
    if not rows:
        return []
    drawn = []
    t = [row[0] for row in rows]
    boundaries = [sum(p["duration"] for p in scenario.phases[:i]) for i in range(1, len(scenario.phases))]

    def phase_lines(axis):
        for boundary in boundaries:
            axis.axvline(boundary, color="grey", linestyle=":", linewidth=1)

    figure, axis = plt.subplots(figsize=(8, 3.6))
    windows = scenario.output.get("intermediate", [])
    wt = [int(w["period"]) / 1000 - scenario.start + 5 for w in windows if "http.response_time" in w["summaries"]]
    for key, label in (("median", "p50"), ("p95", "p95"), ("p99", "p99")):
        values = [w["summaries"]["http.response_time"][key] for w in windows
                  if "http.response_time" in w["summaries"]]
        axis.plot(wt, values, marker="o", label=f"client {label} (artillery, 10 s windows)")
    axis.plot(t, [row[5] for row in rows], color="black", linewidth=0.8,
              label="server p99 (/metrics, per second)")
    axis.set_yscale("log")
    axis.set_xlabel("seconds")
    axis.set_ylabel("latency, ms (log)")
    axis.set_title(f"{scenario.label}: latency over time")
    phase_lines(axis)
    axis.legend(fontsize=7)
    figure.tight_layout()
    name = f"{scenario.label}-latency.png"
    figure.savefig(directory / name, dpi=100)
    plt.close(figure)
    drawn.append(name)

    figure, axis = plt.subplots(figsize=(8, 3.6))
    axis.plot(t, [row[1] for row in rows], label="requests/s served")
    axis.set_xlabel("seconds")
    axis.set_ylabel("requests/s")
    cpu_axis = axis.twinx()
    cpu_axis.plot(t, [row[2] for row in rows], color="tab:red", linewidth=0.8, label="service CPU %")
    if any(row[3] is not None for row in rows):
        cpu_axis.plot(t, [row[3] for row in rows], color="tab:purple", linewidth=0.8,
                      label="artillery CPU %")
    if any(row[6] is not None for row in rows):
        cpu_axis.plot(t, [row[6] for row in rows], color="tab:grey", linewidth=0.8,
                      label="rest of the machine CPU %")
    cpu_axis.set_ylabel("CPU % (100 = one core)")
    cpu_axis.set_ylim(bottom=0)
    axis.set_title(f"{scenario.label}: throughput and CPU")
    phase_lines(axis)
    lines = axis.get_legend_handles_labels()
    more = cpu_axis.get_legend_handles_labels()
    axis.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    figure.tight_layout()
    name = f"{scenario.label}-throughput.png"
    figure.savefig(directory / name, dpi=100)
    plt.close(figure)
    drawn.append(name)

    ratios = [(row[0], row[4]) for row in rows if row[4] is not None]
    if ratios:
        figure, axis = plt.subplots(figsize=(8, 2.6))
        axis.plot([r[0] for r in ratios], [r[1] * 100 for r in ratios])
        axis.set_ylim(0, 105)
        axis.set_xlabel("seconds")
        axis.set_ylabel("entity cache hits %")
        axis.set_title(f"{scenario.label}: entity cache hit ratio per second")
        phase_lines(axis)
        figure.tight_layout()
        name = f"{scenario.label}-hits.png"
        figure.savefig(directory / name, dpi=100)
        plt.close(figure)
        drawn.append(name)
    return drawn


def scenario_page(scenario, figures, drawn, directory, environment):
    phases_text = ", ".join(
        f"{p.get('name', 'phase')} {p['duration']} s at "
        + (f"{p['arrivalRate']}→{p['rampTo']}/s" if "rampTo" in p else f"{p['arrivalRate']}/s")
        for p in scenario.phases)
    lines = [
        f"# {scenario.label}",
        "",
        DESCRIPTIONS.get(scenario.name, scenario.name) + (" — **cache off** (Redis unreachable, MongoDB only)"
                                                          if scenario.cache == "off" else ""),
        "",
        f"Command: `artillery run -e {environment} loadtest/scenarios/{scenario.name}.yml` "
        f"(through `loadtest/run`). Phases: {phases_text}.",
        "",
        "| sustained phase | |",
        "|---|---:|",
        f"| arrival rate (new requests/s offered) | {number(figures['arrival_rate'])} |",
        f"| requests/s served (service's counter) | {number(figures.get('rps'))} |",
        f"| client p50 / p95 / p99, worst 10 s window (ms) | {number(figures.get('p50'), 1)} / "
        f"{number(figures.get('p95'), 1)} / {number(figures.get('p99'), 1)} |",
        f"| server p50 / p99 (ms, service's histogram) | {number(figures.get('server_p50'), 2)} / "
        f"{number(figures.get('server_p99'), 2)} |",
        f"| service CPU (100% = one core) | {number(figures.get('cpu'), 0, '%')} |",
        f"| service CPU per request | {number(figures.get('cpu_ms_per_request'), 2, ' ms')} |",
        f"| artillery CPU (all its processes) | {number(figures.get('generator_cpu'), 0, '%')} |",
        f"| everything else on the machine (Redis, MongoDB server, other work) | {number(figures.get('others_cpu'), 0, '%')} |",
        f"| load average, peak (2 cores) | {number(figures.get('load_average'), 1)} |",
        f"| service RSS, peak | {number(figures.get('rss_mib'), 1, ' MiB')} |",
        f"| entity cache hit ratio | {percent(figures.get('hit_ratio'))} |",
        f"| query-result cache hit ratio | {percent(figures.get('query_hit_ratio'))} |",
        f"| MongoDB commands per request (mean ms each) | {number(figures.get('mongodb_per_request'), 2)} "
        f"({number(figures.get('mongodb_ms'), 2)}) |",
        f"| Redis round trips per request (mean ms each) | {number(figures.get('redis_per_request'), 2)} "
        f"({number(figures.get('redis_ms'), 2)}) |",
        f"| entity-cache lookup, mean ms (its `MGET`, and the wait for a shared one) | "
        f"{number(figures.get('lookup_ms'), 2)} |",
        "",
        "| whole run | |",
        "|---|---:|",
        f"| requests | {number(figures['requests'])} |",
        f"| failed (GraphQL errors, non-JSON or no answer) | {number(figures['failed'])} "
        f"({figures['error_rate'] * 100:.3f}%) |",
        f"| expect plugin failures / failed virtual users | {number(figures['expect_failed'])} / "
        f"{number(figures['vusers_failed'])} |",
        f"| p50 / p95 / p99 / max (ms) | {number(figures['run_p50'], 1)} / {number(figures['run_p95'], 1)} / "
        f"{number(figures['run_p99'], 1)} / {number(figures['run_max'], 1)} |",
        f"| HTTP status codes | {', '.join(f'{k}: {v:,}' for k, v in sorted(figures['codes'].items())) or '–'} |",
    ]
    by_name = {k.removeprefix("plugins.metrics-by-endpoint.response_time."): v
               for k, v in scenario.output["aggregate"]["summaries"].items()
               if k.startswith("plugins.metrics-by-endpoint.response_time.")}
    if len(by_name) > 1:
        lines.append("| p50 / p99 by request (ms, whole run) | " + ", ".join(
            f"{name}: {number(v.get('median'), 1)} / {number(v.get('p99'), 1)}"
            for name, v in sorted(by_name.items())) + " |")
    if figures["error_kinds"]:
        lines.append(f"| errors by kind | {', '.join(f'{k}: {v:,}' for k, v in sorted(figures['error_kinds'].items()))} |")
    lines += ["", "`ensure` checks:", ""]
    lines += [f"- {result}: `{check}`" for result, check in scenario.checks] or ["- (none ran)"]
    lines.append("")
    lines += [f"![{name}]({name})" for name in drawn]
    (directory / f"{scenario.label}.md").write_text("\n".join(lines) + "\n")


def native_section(directory, scenarios):
    path = directory / "native.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    summary, percentiles = data["summary"], data["latencyPercentiles"]
    rows = samples(directory / "native.samples.jsonl")
    cpu = generator = None
    if len(rows) >= 3:
        first, last = rows[1], rows[-1]
        seconds = last["t"] - first["t"]
        cpu = (last["app_cpu_s"] - first["app_cpu_s"]) / seconds * 100
        generator = (last["generator_cpu_s"] - first["generator_cpu_s"]) / seconds * 100
    warm = scenarios.get("book-warm")
    lines = ["## The hottest read with a native generator", "",
             "`oha --no-tui -z 15s -c 50` (closed loop, 50 connections) on `book(id)` for one cached id "
             "(`loadtest/lib/native`), against the same service, sampled the same way.", "",
             "| generator | requests/s | p50 ms | p99 ms | service CPU | generator CPU |",
             "|---|---:|---:|---:|---:|---:|",
             f"| oha | {number(summary['requestsPerSec'])} | {number(percentiles['p50'] * 1000, 2)} | "
             f"{number(percentiles['p99'] * 1000, 2)} | {number(cpu, 0, '%')} | {number(generator, 0, '%')} |"]
    if warm:
        f = warm[1]
        lines.append(f"| artillery (book-warm, sustained) | {number(f.get('rps'))} | {number(f.get('p50'), 2)} | "
                     f"{number(f.get('p99'), 2)} | {number(f.get('cpu'), 0, '%')} | "
                     f"{number(f.get('generator_cpu'), 0, '%')} |")
    lines += ["", f"oha success rate {summary['successRate'] * 100:.2f}%, status codes "
              f"{data.get('statusCodeDistribution')}.", ""]
    return lines


def flamegraph(directory):
    """An icicle graph of perf's folded stacks (perf.folded: `frame;frame;... count` lines)."""
    folded = directory / "perf.folded"
    if plt is None or not folded.exists():
        return None
    root = {"count": 0, "children": {}}
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        node = root
        node["count"] += int(count)
        for frame in stack.split(";"):
            node = node["children"].setdefault(frame, {"count": 0, "children": {}})
            node["count"] += int(count)
    total = root["count"]
    if not total:
        return None
    figure, axis = plt.subplots(figsize=(16, 9))
    depth_limit = 40
    colours = plt.get_cmap("YlOrRd")

    def draw(node, x, depth):
        for frame, child in sorted(node["children"].items(), key=lambda kv: -kv[1]["count"]):
            width = child["count"] / total
            if width < 0.002 or depth > depth_limit:
                x += width
                continue
            axis.barh(depth, width, left=x, height=0.95, color=colours(0.25 + 0.5 * ((hash(frame) % 100) / 100)),
                      edgecolor="white", linewidth=0.3)
            if width > 0.04:
                label = re.sub(r"<[^<>]*>", "<>", frame)
                label = label[: int(width * 180)]
                axis.text(x + 0.002, depth, label, va="center", fontsize=6, clip_on=True)
            draw(child, x, depth + 1)
            x += width

    draw(root, 0.0, 0)
    axis.set_xlim(0, 1)
    axis.invert_yaxis()
    axis.set_yticks([])
    axis.set_xlabel(f"share of {total:,} CPU samples of the service")
    axis.set_title("Where the service's CPU goes under the warm book(id) load (perf, icicle: callers on top)")
    figure.tight_layout()
    figure.savefig(directory / "flamegraph.png", dpi=110)
    plt.close(figure)
    return "flamegraph.png"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=pathlib.Path, required=True)
    parser.add_argument("--profile", required=True)
    parser.add_argument("--books", type=int, required=True)
    parser.add_argument("--stores", type=int, required=True)
    parser.add_argument("--commit", required=True)
    args = parser.parse_args()
    directory = args.dir
    labels = sorted(p.name.removesuffix(".json") for p in directory.glob("*.json")
                    if (directory / (p.name.removesuffix(".json") + ".samples.jsonl")).exists()
                    and p.name != "native.json")
    scenarios = {}
    for label in labels:
        scenario = Scenario(directory, label, args.profile)
        figures = scenario.figures()
        environment = "nocache" if scenario.cache == "off" else ("profile" if label.endswith("profiled") else args.profile)
        scenario_page(scenario, figures, charts(scenario, directory), directory, environment)
        scenarios[label] = (scenario, figures)

    order = ["book-warm", "book-cold", "books-by-ids", "books-pages", "bookstores-for-books",
             "read-write-mix", "book-warm-profiled"]
    ordered = [l for l in order if l in scenarios] + [l for l in scenarios if l not in order and not l.endswith("-nocache")]
    cpu_model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    lines = [
        f"# Load test report ({args.profile})", "",
        f"Commit `{args.commit}`; catalogue {args.books:,} books over {args.stores} stores; "
        f"{os.cpu_count()} CPUs ({cpu_model}), {platform.system()} {platform.release()}; "
        "service, Redis, MongoDB server and load generator all on this machine, over 127.0.0.1.",
        f"Produced by `make loadtest{'' if args.profile == 'full' else '-smoke'}` (`loadtest/run`).",
        "Figures are from each scenario's sustained phase: requests/s, CPU and cache ratios from the service's "
        "per-second samples, client percentiles from the worst 10-second artillery window. "
        "CPU: 100% = one core." + (" The smoke run starts its scenarios at once, so the service's figures of "
                                   "each row are shared by all of them: it checks answers, not speed."
                                   if args.profile == "smoke" else ""), "",
        "| scenario | offered/s | served/s | p50 ms | p95 ms | p99 ms | failed | CPU | CPU ms/req | artillery CPU | rest of machine CPU | RSS MiB | entity hits | query hits | MongoDB/req | Redis/req | checks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def row(label):
        _, f = scenarios[label]
        return (f"| [{label}]({label}.md) | {number(f['arrival_rate'])} | {number(f.get('rps'))} | "
                f"{number(f.get('p50'), 1)} | {number(f.get('p95'), 1)} | {number(f.get('p99'), 1)} | "
                f"{f['failed']:,} ({f['error_rate'] * 100:.2f}%) | {number(f.get('cpu'), 0, '%')} | "
                f"{number(f.get('cpu_ms_per_request'), 2)} | {number(f.get('generator_cpu'), 0, '%')} | {number(f.get('others_cpu'), 0, '%')} | "
                f"{number(f.get('rss_mib'), 0)} | {percent(f.get('hit_ratio'))} | {percent(f.get('query_hit_ratio'))} | "
                f"{number(f.get('mongodb_per_request'), 2)} | {number(f.get('redis_per_request'), 2)} | "
                f"{'pass' if f['checks_passed'] else 'FAIL'} |")

    lines += [row(label) for label in ordered]
    baseline = [l for l in scenarios if l.endswith("-nocache")]
    if baseline:
        lines += ["", "## What the cache buys", "",
                  "The same scenario and the same offered load with the cache on, and with the service started "
                  "with Redis unreachable (every read from MongoDB; the breaker skips Redis). "
                  "Ratios are cache-off over cache-on: how many times slower, or costlier, without the cache.", "",
                  "| scenario | served/s on / off | p50 ms on / off | p99 ms on / off | p99 off/on | CPU on / off | MongoDB/req on / off |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for label in baseline:
            name = label.removesuffix("-nocache")
            if name not in scenarios:
                continue
            on, off = scenarios[name][1], scenarios[label][1]
            ratio = (off.get("p99") / on["p99"]) if on.get("p99") and off.get("p99") else None
            lines.append(
                f"| [{name}]({label}.md) | {number(on.get('rps'))} / {number(off.get('rps'))} | "
                f"{number(on.get('p50'), 1)} / {number(off.get('p50'), 1)} | {number(on.get('p99'), 1)} / "
                f"{number(off.get('p99'), 1)} | {number(ratio, 1, '×')} | {number(on.get('cpu'), 0, '%')} / "
                f"{number(off.get('cpu'), 0, '%')} | {number(on.get('mongodb_per_request'), 2)} / "
                f"{number(off.get('mongodb_per_request'), 2)} |")
    lines += [""] + native_section(directory, scenarios)
    bench = directory / "bench.txt"
    if bench.exists() and bench.read_text().strip():
        lines += ["## `make bench` in the same run", "", "```text", bench.read_text().rstrip(), "```", ""]
    picture = flamegraph(directory)
    self_profile = directory / "perf-self.txt"
    if self_profile.exists():
        lines += ["## CPU profile", "",
                  "`perf record -F 499 --call-graph dwarf` on the service for 20 s of the sustained warm `book(id)` "
                  "load (`loadtest/lib/profile`). Self time by symbol, top entries:", "", "```text"]
        lines += [l for l in self_profile.read_text().splitlines() if l.strip() and not l.startswith("#")][:30]
        lines += ["```", ""]
        grouped = directory / "perf-groups.md"
        if grouped.exists():
            lines += [grouped.read_text(), ""]
        if picture:
            lines += [f"![flamegraph]({picture})", ""]
    failed = [l for l, (_, f) in scenarios.items() if not f["checks_passed"]]
    lines += ["## Result", "", "Every scenario passed its `ensure` checks." if not failed
              else f"Failed checks: {', '.join(failed)}.", ""]
    (directory / "index.md").write_text("\n".join(lines))
    print(f"wrote {directory / 'index.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
