#!/usr/bin/env python3
"""Tables for BENCHMARKS.md from bench/compare.sh's JSON lines: the median of each figure over
the runs, per server, and how many times better Huddle is (above 1: Huddle better).

    bench/summarize.py bench/results/compare-<time>.jsonl
    bench/summarize.py bench/results/compare-baseline-<time>.jsonl --against baseline
    bench/summarize.py --one < one-result.json      # a one-line digest of one huddle-bench result
"""
import json
import statistics
import sys


def dig(result, path):
    value = result
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def login_p99_ratio(r):
    alone = dig(r, "persist_only.ack_latency.p99_ms")
    loaded = dig(r, "persist_with_logins.ack_latency.p99_ms")
    return loaded / alone if alone and loaded is not None else None


def cpu_sum(kind):
    def figure(r):
        server = dig(r, f"cpu.server_cpu_us_per_{kind}")
        pg = dig(r, f"cpu.postgres_cpu_us_per_{kind}")
        return server + pg if server is not None and pg is not None else None
    return figure


def error_count(r):
    errors = r.get("errors")
    return sum(errors.values()) if isinstance(errors, dict) else None


def resume_complete(r):
    complete = r.get("complete")
    return None if complete is None else (1 if complete else 0)


# react and edit: persist's figures per op, plus the ops that changed nothing.
OPS = [
    ("acked ops/s", "acked_per_s", "higher"),
    ("ack p50 (ms)", "ack_latency.p50_ms", "lower"),
    ("ack p99 (ms)", "ack_latency.p99_ms", "lower"),
    ("ack max (ms)", "ack_latency.max_ms", "lower"),
    ("errors", error_count, "lower"),
    ("server CPU µs/op", "cpu.server_cpu_us_per_op", "lower"),
    ("server + Postgres CPU µs/op", cpu_sum("op"), "lower"),
    ("acks that changed nothing", "noop_acks", "lower"),
    ("unacked", "unacked", "lower"),
]

# Per scenario kind: (label, path or function, "higher" or "lower" is better).
PERSIST = [
    ("acked msgs/s", "acked_per_s", "higher"),
    ("ack p50 (ms)", "ack_latency.p50_ms", "lower"),
    ("ack p99 (ms)", "ack_latency.p99_ms", "lower"),
    ("server CPU µs/msg", "cpu.server_cpu_us_per_msg", "lower"),
    ("Postgres CPU µs/msg", "cpu.postgres_cpu_us_per_msg", "lower"),
    ("server + Postgres CPU µs/msg", cpu_sum("msg"), "lower"),
    ("unacked", "unacked", "lower"),
]
FIGURES = {
    "persist": PERSIST,
    "fanout": [
        ("deliveries/s", "deliveries_per_s", "higher"),
        ("delivery p50 (ms)", "delivery_latency.p50_ms", "lower"),
        ("delivery p99 (ms)", "delivery_latency.p99_ms", "lower"),
        ("delivery max (ms)", "delivery_latency.max_ms", "lower"),
        ("lost", "lost", "lower"),
        ("server CPU µs/delivery", "cpu.server_cpu_us_per_delivery", "lower"),
        ("server + Postgres CPU µs/delivery", cpu_sum("delivery"), "lower"),
    ],
    "join": [
        ("joins/s", "joins_per_s", "higher"),
        ("join p50 (ms)", "join_latency.p50_ms", "lower"),
        ("join p99 (ms)", "join_latency.p99_ms", "lower"),
        ("server + Postgres CPU µs/join", cpu_sum("join"), "lower"),
    ],
    "login": [
        ("logins/s", "persist_with_logins.logins_ok_per_s", "higher"),
        ("login p50 (ms)", "persist_with_logins.login_latency.p50_ms", "lower"),
        ("message p99 alone (ms)", "persist_only.ack_latency.p99_ms", "lower"),
        ("message p99 during logins (ms)", "persist_with_logins.ack_latency.p99_ms", "lower"),
        ("p99 during / alone", login_p99_ratio, "lower"),
    ],
    "react": OPS,
    "edit": OPS,
    "resume": [
        ("catch-up median (ms)", "catchup_ms.median", "lower"),
        ("catch-up max (ms)", "catchup_ms.max", "lower"),
        ("join median (ms)", "join_ms.median", "lower"),
        ("messages received", "messages_received", "lower"),
        ("updates received", "updates_received", "lower"),
        ("server CPU ms/catch-up", "server_cpu_ms_per_catchup", "lower"),
        ("missed", "missed", "lower"),
        ("complete (1 = yes)", resume_complete, "higher"),
    ],
    "connections": [
        ("connected", "connected", "higher"),
        ("connects/s", "connects_per_s", "higher"),
        ("server RSS bytes/socket", "rss_bytes_per_socket", "lower"),
    ],
}


def figures_for(scenario):
    return FIGURES[scenario.split("-")[0]]


def value(result, how):
    return how(result) if callable(how) else dig(result, how)


def fmt(x):
    if x is None:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def one(result):
    kind = result.get("scenario", "")
    parts = []
    for label, how, _ in FIGURES.get(kind, []):
        parts.append(f"{label} {fmt(value(result, how))}")
    return "; ".join(parts)


def tables(path, against="node-seed"):
    runs = {}
    order = []
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            key = row["scenario"]
            if key not in runs:
                order.append(key)
                runs[key] = {"huddle": [], "peer": []}
            runs[key][row["server"]].append(row["result"])
    for scenario in order:
        by_server = runs[scenario]
        n = len(by_server["huddle"])
        # v2 scenarios run against Huddle alone unless a baseline build is compared.
        alone = not by_server["peer"]
        print(f"\n#### {scenario} (median of {n})\n")
        if alone:
            print("| figure | Huddle |")
            print("|---|---|")
        else:
            print(f"| figure | Huddle | {against} | Huddle better by |")
            print("|---|---|---|---|")
        for label, how, better in figures_for(scenario):
            med = {}
            for server, results in by_server.items():
                xs = [v for v in (value(r, how) for r in results) if v is not None]
                med[server] = statistics.median(xs) if xs else None
            h, p = med["huddle"], med["peer"]
            ratio = None
            # A zero on either side (nothing lost, an RSS that did not move) has no ratio.
            if h and p:
                ratio = h / p if better == "higher" else p / h
            shown = "–" if ratio is None else f"{fmt(ratio)}×"
            if alone:
                print(f"| {label} | {fmt(h)} |")
            else:
                print(f"| {label} | {fmt(h)} | {fmt(p)} | {shown} |")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        text = sys.stdin.read().strip()
        print(one(json.loads(text)) if text else "no result")
    elif sys.argv[2:3] == ["--against"]:
        tables(sys.argv[1], sys.argv[3])
    else:
        tables(sys.argv[1])
