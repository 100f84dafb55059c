"""Collapses `perf script` output into folded stacks, or sums folded stacks by layer.

    perf script | fold.py > perf.folded        one `root;...;leaf count` line per distinct stack
    fold.py --groups < perf.folded             a Markdown table: share of samples by layer

The layers are named by the crates and modules a frame belongs to, judged on the innermost
frame that matches (a sample in serde_json called from async-graphql counts as JSON). They
show where the time of a request goes without reading a flame graph.
"""

import re
import sys
from collections import Counter

# (layer, pattern on a frame), first match from the leaf upwards wins.
LAYERS = [
    ("kernel: network and syscalls", re.compile(r" \[k\]$")),
    ("memory allocation", re.compile(r"malloc|free|realloc|_int_|cfree|alloc::alloc|__rust_alloc|__rust_dealloc")),
    ("JSON (serde_json)", re.compile(r"serde_json")),
    ("GraphQL parse and validate", re.compile(r"async_graphql_parser|async_graphql::validation|async_graphql::registry")),
    ("GraphQL execution", re.compile(r"async_graphql")),
    ("Redis client", re.compile(r"redis::")),
    ("MongoDB driver and BSON", re.compile(r"mongodb::|bson::")),
    ("metrics (prometheus)", re.compile(r"prometheus::")),
    ("tracing", re.compile(r"tracing")),
    ("HTTP (hyper, axum, tower)", re.compile(r"hyper::|axum::|tower|http::|h2::")),
    ("oponn code", re.compile(r"oponn::")),
    ("tokio runtime", re.compile(r"tokio::")),
]


def fold(lines):
    stacks = Counter()
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                stacks[";".join(reversed(frames))] += 1
            frames = []
            continue
        if not line.startswith(("\t", " ")):
            continue  # the sample's header line
        parts = line.strip().split(" ", 1)
        if len(parts) < 2:
            continue
        symbol = re.sub(r"\+0x[0-9a-f]+$", "", parts[1].rsplit(" (", 1)[0]).strip()
        dso = parts[1].rsplit("(", 1)[-1].rstrip(")")
        if symbol == "[unknown]":
            symbol = f"[{dso.rsplit('/', 1)[-1]}]"
        if "kernel" in dso:
            symbol += " [k]"
        frames.append(symbol)
    if frames:
        stacks[";".join(reversed(frames))] += 1
    for stack, count in stacks.most_common():
        print(f"{stack} {count}")


def groups(lines):
    shares = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        total += int(count)
        layer = "other"
        for frame in reversed(stack.split(";")):
            matched = next((name for name, pattern in LAYERS if pattern.search(frame)), None)
            if matched:
                layer = matched
                break
        shares[layer] += int(count)
    print(f"Time by layer (innermost matching frame of each of {total:,} samples, `loadtest/lib/fold.py --groups`):\n")
    print("| layer | share of CPU samples |\n|---|---:|")
    for layer, count in shares.most_common():
        print(f"| {layer} | {count / total * 100:.1f}% |")


if __name__ == "__main__":
    if "--groups" in sys.argv[1:]:
        groups(sys.stdin)
    else:
        fold(sys.stdin)
