"""Turns Google Benchmark JSON (aggregates) into results.md and the plot's data file.

usage: report.py <out_dir> <program>...   (reads <out_dir>/<program>.json)
"""
import json
import os
import re
import sys

# The empty-task throughput group of pool_bench, in the order the plot shows it.
THROUGHPUT = ["ctxpool_post", "ctxpool_post_no_propagation_no_wipe", "ctxpool_asio_post",
              "asio_thread_pool_post", "handwritten_post", "std_async"]


def short(name):
    """`ctxpool_post/min_time:0.300/real_time` -> `ctxpool_post`."""
    return re.sub(r"/(min_time|iterations):[^/]*|/real_time|/manual_time", "", name)


def fmt_time(ns):
    if ns < 1000:
        return f"{ns:.2f} ns" if ns < 10 else f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} us"
    return f"{ns / 1e6:.2f} ms"


def to_ns(value, unit):
    return value * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]


def main():
    out_dir, programs = sys.argv[1], sys.argv[2:]
    lines = ["# ctxpool benchmark results", ""]
    throughput = []
    for program in programs:
        with open(os.path.join(out_dir, program + ".json")) as f:
            data = json.load(f)
        ctx = data["context"]
        if not lines[2:]:
            lines += [
                f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, "
                f"run {ctx.get('date')}; ctxpool built Release (-O2).",
                f"Medians of {os.environ.get('CTXPOOL_BENCH_REPETITIONS', '5')} repetitions"
                " (Google Benchmark); every peer measured in the same run as ctxpool.",
                "",
            ]
        lines += [f"## {program}", "", "| benchmark | median time | items/s | counters |",
                  "|---|---:|---:|---|"]
        for b in data["benchmarks"]:
            if b.get("aggregate_name") != "median":
                continue
            name = short(b["run_name"])
            ns = to_ns(b["real_time"], b["time_unit"])
            ips = b.get("items_per_second")
            skip = {"name", "run_name", "run_type", "repetitions", "repetition_index",
                    "threads", "iterations", "real_time", "cpu_time", "time_unit",
                    "family_index", "per_family_instance_index", "aggregate_name",
                    "aggregate_unit", "items_per_second", "bytes_per_second", "label"}
            counters = ", ".join(f"{k}={v:.4g}" for k, v in b.items()
                                 if k not in skip and isinstance(v, (int, float)))
            lines.append(f"| `{name}` | {fmt_time(ns)} | "
                         f"{'' if ips is None else f'{ips / 1e6:.2f} M'} | {counters} |")
            if program == "pool_bench" and ips and name in THROUGHPUT:
                throughput.append((name, ips))
        lines.append("")
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out_dir, "pool_throughput.dat"), "w") as f:
        for name, ips in sorted(throughput, key=lambda t: THROUGHPUT.index(t[0])):
            label = name.replace("_", " ")
            f.write(f'"{label}" {ips / 1e6:.4f}\n')


if __name__ == "__main__":
    main()
