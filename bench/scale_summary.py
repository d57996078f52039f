#!/usr/bin/env python3
"""Medians of bench/scale.sh's JSON lines, against issue 16's targets.

    bench/scale_summary.py bench/results/scale-<time>.jsonl
    bench/scale_summary.py --one <measure> < one-result.json   # a one-line digest of one run

Each line is {"measure", "binary", "engine", "run", "result"}; "result" is huddle-bench's JSON
line (fanout for bus, fanout and cross; connections for conn-1node and conn-3nodes).
"""
import json
import statistics
import sys


def dig(result, path, default=None):
    value = result
    for key in path.split("."):
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return default
    return value


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, int) or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def first_node_per_socket(r):
    """RSS per socket of the first --server-pid alone, from rss_per_pid."""
    pid = dig(r, "rss_per_pid.0")
    if not pid or pid["before_kib"] is None or pid["after_kib"] is None or not r["connected"]:
        return r.get("rss_bytes_per_socket") if not pid else None
    return (pid["after_kib"] - pid["before_kib"]) * 1024 / r["connected"]


def one(measure, r):
    if measure.startswith("conn"):
        s = (f"{r['connected']}/{r['params']['count']} connected, {r['failed']} failed, "
             f"{r['alive_after_hold']} alive; RSS {fmt(r.get('rss_bytes_per_socket'))} B/socket")
        if r.get("first_error"):
            s += f" (first error: {r['first_error']})"
        return s
    s = (f"deliveries/s {fmt(r['deliveries_per_s'])}, p99 {fmt(dig(r, 'delivery_latency.p99_ms'))} ms, "
         f"lost {r['lost']}, send errors {sum(r['send_errors'].values())}")
    if "same_node" in r:
        s += (f"; same-node p99 {fmt(dig(r, 'same_node.delivery_latency.p99_ms'))} ms, "
              f"cross-node p99 {fmt(dig(r, 'cross_node.delivery_latency.p99_ms'))} ms")
    bus = r.get("bus")
    if bus:
        per = ", ".join(fmt(n["received_per_msg"], 3) for n in bus["nodes"])
        s += f"; bus received/msg per node: {per}"
    return s


def summary(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = {}
    for row in rows:
        by.setdefault((row["measure"], row["binary"]), []).append(row["result"])
    engine = rows[0]["engine"] if rows else "?"
    runs = max((row["run"] for row in rows), default=0)
    print(f"\nissue 16 on {engine}, medians of up to {runs} run(s)\n")

    new = by.get(("bus", "new"))
    if new:
        base = by.get(("bus", "baseline"))
        print("1. bus envelopes received per message sent (target: new <= 1/10 of baseline on every node)")
        nodes = len(dig(new[0], "bus.nodes", []))
        worst = None
        for i in range(nodes):
            n = median(dig(r, f"bus.nodes.{i}.received_per_msg") for r in new)
            npub = median(dig(r, f"bus.nodes.{i}.published_per_msg") for r in new)
            line = f"   node {i + 1}: new {fmt(n, 3)} received/msg ({fmt(npub, 3)} published/msg)"
            if base:
                b = median(dig(r, f"bus.nodes.{i}.received_per_msg") for r in base)
                bpub = median(dig(r, f"bus.nodes.{i}.published_per_msg") for r in base)
                ratio = n / b if n is not None and b else None
                if ratio is not None:
                    worst = ratio if worst is None else max(worst, ratio)
                line += (f", baseline {fmt(b, 3)} ({fmt(bpub, 3)} published/msg): "
                         f"new/baseline {fmt(ratio, 3)}")
            print(line)
        lost = max(r["lost"] for r in new)
        if worst is not None:
            verdict = "PASS" if worst <= 0.1 and lost == 0 else "FAIL"
            print(f"   worst node new/baseline {fmt(worst, 3)}, most lost in a run {lost}: {verdict}")
        else:
            print(f"   (no baseline: set BASELINE for the ratio), most lost in a run {lost}")

    one_node, three = by.get(("conn-1node", "new")), by.get(("conn-3nodes", "new"))
    if one_node or three:
        print("2. idle sockets: server RSS per socket (target: three nodes no worse than one)")
        meds = {}
        for label, rs in (("one node", one_node), ("three nodes", three)):
            if not rs:
                continue
            meds[label] = median(r.get("rss_bytes_per_socket") for r in rs)
            connected = min(r["connected"] for r in rs)
            failed = max(r["failed"] for r in rs)
            alone = ""
            if label == "one node":
                first = median(first_node_per_socket(r) for r in rs)
                alone = f" (the first node's own RSS: {fmt(first)} B/socket)"
            print(f"   {label}: {fmt(meds[label])} B/socket{alone}; fewest connected "
                  f"{connected:,} of {rs[0]['params']['count']:,}, most failed {failed}")
        if len(meds) == 2 and meds["one node"] and meds["three nodes"] is not None:
            ratio = meds["three nodes"] / meds["one node"]
            print(f"   three / one = {fmt(ratio, 3)}: {'PASS' if ratio <= 1 else 'FAIL'}")

    fan = by.get(("fanout", "new"))
    if fan:
        p99 = median(dig(r, "delivery_latency.p99_ms") for r in fan)
        lost = max(r["lost"] for r in fan)
        rate = median(r["deliveries_per_s"] for r in fan)
        errors = max(sum(r["send_errors"].values()) for r in fan)
        p = fan[0]["params"]
        print(f"3. one room of {p['members']:,} members over {len(fan[0].get('urls') or [1])} nodes "
              f"at {fmt(p['rate'])} msg/s (target: p99 <= 50 ms, nothing lost)")
        print(f"   deliveries/s {fmt(rate)}, p99 {fmt(p99)} ms "
              f"(same node {fmt(median(dig(r, 'same_node.delivery_latency.p99_ms') for r in fan))}, "
              f"cross node {fmt(median(dig(r, 'cross_node.delivery_latency.p99_ms') for r in fan))}), "
              f"most lost in a run {lost}, send errors {errors}: "
              f"{'PASS' if p99 is not None and p99 <= 50 and lost == 0 and errors == 0 else 'FAIL'}")

    for binary in ("baseline", "new"):
        cross = by.get(("cross", binary))
        if not cross:
            continue
        same = median(dig(r, "same_node.delivery_latency.p99_ms") for r in cross)
        other = median(dig(r, "cross_node.delivery_latency.p99_ms") for r in cross)
        diff = median(r.get("cross_minus_same_p99_ms") for r in cross)
        lost = max(r["lost"] for r in cross)
        verdict = ""
        if binary == "new":
            verdict = ": " + ("PASS" if diff is not None and diff <= 2 and lost == 0 else "FAIL")
        print(f"4. cross-node vs same-node p99, {binary} (target: at most 2 ms above): same "
              f"{fmt(same)} ms, cross {fmt(other)} ms, median difference {fmt(diff)} ms, "
              f"most lost {lost}{verdict}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        text = sys.stdin.read().strip()
        print(one(sys.argv[2], json.loads(text)) if text else "no result")
    else:
        summary(sys.argv[1])
