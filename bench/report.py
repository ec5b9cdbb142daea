"""Turns one run's Google Benchmark JSON into results.md, the plot's data file
and the README's Performance tables.

usage: report.py <out_dir> [--readme README.md] <program>...
       (reads <out_dir>/<program>.json)

Every ratio compares rows of the same run. Pool ratios are ctxpool's items per
second over the peer's (above 1 means ctxpool is faster), each peer against
ctxpool fed the same way (`latch` or `yield`); TBB's task_group waits its own
way and is compared with ctxpool fed by a latch. Context ratios are
time / time of the peer operation (lower is better), the form in which the
README's Performance tables state the targets.
"""
import json
import os
import re
import sys

WORKLOADS = [
    ("W1_fire_and_forget", "W1 fire-and-forget, one thread"),
    ("W2_submit_wait", "W2 submit + wait on the future"),
    ("W3_fan_out_in", "W3 fan-out/fan-in of 64 tasks"),
    ("W4_four_producers", "W4 four producers"),
    ("W5_recursive", "W5 recursive, depth 16"),
    ("W6_2us_tasks", "W6 tasks hashing 1 KiB"),
]
# A workload's task body: the row timing it inline on one thread, and its nominal cost.
BODY_COST = {"W3_fan_out_in": ("task_body/W3_200ns_inline", "~200 ns"),
             "W6_2us_tasks": ("task_body/W6_2us_inline", "~2 µs")}
# Queueing peers, measured with both feeds.
PEERS = [("handwritten", "hand-written pool"), ("asio", "asio::thread_pool"),
         ("tbb_enqueue", "oneTBB arena enqueue"), ("std_async", "std::async")]
TASK_GROUP = ("tbb_task_group", "oneTBB task_group")
ONE_THREAD_WORKLOADS = ["W1_fire_and_forget", "W3_fan_out_in", "W5_recursive"]
FEEDS = ["latch", "yield"]
# Plot columns: (benchmark peer/feed suffix, legend title).
PLOT = [("ctxpool/latch", "ctxpool"), ("ctxpool/yield", "ctxpool (yield)"),
        ("handwritten/latch", "hand-written"), ("handwritten/yield", "hand-written (yield)"),
        ("asio/latch", "asio::thread_pool"), ("tbb_enqueue/latch", "oneTBB enqueue"),
        ("tbb_task_group", "oneTBB task_group"), ("std_async/latch", "std::async")]
README_BEGIN = "<!-- bench/report.py: begin -->"
README_END = "<!-- bench/report.py: end -->"


def short(name):
    """`W1_fire_and_forget/ctxpool/latch/min_time:0.200/real_time` -> `W1_fire_and_forget/ctxpool/latch`."""
    return re.sub(r"/(min_time|iterations|repeats):[^/]*|/real_time|/manual_time", "", name)


def fmt_time(ns):
    if ns < 1000:
        return f"{ns:.2f} ns" if ns < 10 else f"{ns:.1f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns / 1e6:.2f} ms"


def fmt_rate(ips):
    if ips >= 1e6:
        return f"{ips / 1e6:.2f} M/s"
    if ips >= 1e3:
        return f"{ips / 1e3:.1f} k/s"
    return f"{ips:.0f}/s"


def to_ns(value, unit):
    return value * {"ns": 1, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]


def measured_time(b):
    """The time Google Benchmark measured by: real (wall) time for UseRealTime and
    manual-time rows, else CPU time, which a busy machine disturbs less."""
    name = b.get("run_name", b["name"])
    return b["real_time"] if re.search(r"/(real|manual)_time", name) else b["cpu_time"]


def medians(data):
    """name -> benchmark entry: the medians, or the single runs when there were no repetitions."""
    rows = {}
    aggregated = any(b.get("run_type") == "aggregate" for b in data["benchmarks"])
    for b in data["benchmarks"]:
        if aggregated and b.get("aggregate_name") != "median":
            continue
        rows[short(b.get("run_name", b["name"]))] = b
    return rows


class Run:
    def __init__(self, out_dir, programs):
        self.programs = {}
        self.context = None
        for program in programs:
            with open(os.path.join(out_dir, program + ".json")) as f:
                data = json.load(f)
            self.context = self.context or data["context"]
            self.programs[program] = medians(data)
        self.all = {name: b for rows in self.programs.values() for name, b in rows.items()}

    def ips(self, name):
        b = self.all.get(name)
        return None if b is None or b.get("error_occurred") else b.get("items_per_second")

    def ns(self, name):
        b = self.all.get(name)
        return None if b is None or b.get("error_occurred") else to_ns(measured_time(b), b["time_unit"])

    def counter(self, name, key):
        b = self.all.get(name)
        return None if b is None or b.get("error_occurred") else b.get(key)

    def header(self):
        ctx = self.context or {}
        reps = max((b.get("repetitions", 1) for b in self.all.values()), default=1)
        return (f"{ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz, run "
                f"{ctx.get('date')}, Release (-O2), "
                f"{f'medians of {reps} interleaved repetitions' if reps > 1 else 'single runs'}, "
                "every peer in the same run.")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt_ratio(r):
    if r is None:
        return "—"
    return f"{r:.0f}×" if r >= 10 else f"{r:.2f}×"


def context_rows(run):
    """(operation, ctxpool time, peer and its time, ratio, target) for the context operations."""
    atomic = run.ns("BM_atomic_increment")
    raw = run.ns("BM_raw_thread_local_read")
    rows = []
    spec = [
        ("`context_var<int>::get`", "BM_context_var_get", "raw `thread_local` read", raw,
         "≤ 4× (moonshot 2×)"),
        ("`set` + `reset`", "BM_context_var_set_reset", "atomic increment", atomic, "≤ 5× (moonshot 2×)"),
        ("`copy_context()`, 1 variable", "BM_copy_context/1", "atomic increment", atomic, "≤ 4×, same for 1 and 10,000"),
        ("`copy_context()`, 10,000 variables", "BM_copy_context/10000", "atomic increment", atomic,
         "≤ 4×, same for 1 and 10,000"),
        ("`context::run` (enter + leave)", "BM_context_run_empty", "atomic increment", atomic, "≤ 2×"),
    ]
    for label, name, peer, peer_ns, target in spec:
        mine = run.ns(name)
        if mine is None:
            continue
        peer_text = f"{peer} {fmt_time(peer_ns)}" if peer_ns is not None else peer
        rows.append((label, fmt_time(mine), peer_text, fmt_ratio(ratio(mine, peer_ns)), target))
    return rows


def pool_cell(run, workload, peer):
    """`latch ratio / yield ratio` of ctxpool over `peer` in `workload`."""
    parts = []
    for feed in FEEDS:
        parts.append(fmt_ratio(ratio(run.ips(f"{workload}/ctxpool/{feed}"), run.ips(f"{workload}/{peer}/{feed}"))))
    return " / ".join(parts) if any(p != "—" for p in parts) else "—"


def pool_table(run):
    head = ["workload", "ctxpool, latch / yield"] + [label for _, label in PEERS[:3]] + \
           [TASK_GROUP[1]] + [PEERS[3][1]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for workload, label in WORKLOADS:
        if workload in BODY_COST:  # what the task body costs alone, from this run when measured
            row, nominal = BODY_COST[workload]
            body = run.ns(row)
            label += f", {nominal if body is None else fmt_time(body)} each"
        latch, yld = run.ips(f"{workload}/ctxpool/latch"), run.ips(f"{workload}/ctxpool/yield")
        if latch is None and yld is None:
            continue
        mine = " / ".join("—" if v is None else fmt_rate(v) for v in (latch, yld))
        cells = [label, mine] + [pool_cell(run, workload, p) for p, _ in PEERS[:3]]
        cells.append(fmt_ratio(ratio(latch, run.ips(f"{workload}/{TASK_GROUP[0]}"))))
        cells.append(pool_cell(run, workload, PEERS[3][0]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def memory_line(run):
    mine = run.counter("W7_bytes_per_task/ctxpool", "bytes_per_task")
    if mine is None:
        return []
    peers = []
    for peer, label in PEERS[:3] + [TASK_GROUP]:
        value = run.counter(f"W7_bytes_per_task/{peer}", "bytes_per_task")
        if value is not None:
            peers.append(f"{label} {value:.0f} B")
    # Two decimals for ctxpool: a rounded "64 B" would hide a miss of 0.1 B.
    return [f"| W7 bytes per queued task (32-byte capture, anonymous RSS of 1,000,000 queued) | "
            f"**{mine:.2f} B** | {', '.join(peers)} | ≤ 64 B |"]


def other_rows(run):
    rows = []
    with_, without = run.ns("task_cost/with_propagation_and_wipe"), run.ns("task_cost/without")
    if with_ is not None and without is not None:
        per_task = 1e4  # tasks per iteration of task_cost
        rows.append(f"| propagation + wipe, per inline task | +{(with_ - without) / per_task:.1f} ns "
                    f"({with_ / per_task:.1f} vs {without / per_task:.1f} ns) | same pool with both off | |")
    full, bare = run.ips("W1_fire_and_forget/ctxpool/latch"), \
        run.ips("W1_fire_and_forget/ctxpool_no_propagation_no_wipe/latch")
    if full is not None and bare is not None:
        rows.append(f"| propagation + wipe, W1 throughput | {fmt_rate(full)} | {fmt_rate(bare)} with both off "
                    f"({fmt_ratio(ratio(full, bare))}) | within 10% |")
    p50, p99 = run.counter("latency/ctxpool", "p50_ns"), run.counter("latency/ctxpool", "p99_ns")
    if p50 is not None:
        peers = []
        for peer, label in PEERS[:3]:
            q50, q99 = run.counter(f"latency/{peer}", "p50_ns"), run.counter(f"latency/{peer}", "p99_ns")
            if q50 is not None:
                peers.append(f"{label} {q50 / 1e3:.1f} / {q99 / 1e3:.1f} µs")
        rows.append(f"| idle submit → start latency p50 / p99 | {p50 / 1e3:.1f} / {p99 / 1e3:.1f} µs | "
                    f"{', '.join(peers)} | |")
    mine = [run.ips(f"{w}/ctxpool_one_worker/latch") for w in ONE_THREAD_WORKLOADS]
    theirs = [run.ips(f"{w}/{TASK_GROUP[0]}_one_thread") for w in ONE_THREAD_WORKLOADS]
    if None not in mine:
        rate = " / ".join(fmt_rate(x) for x in mine)
        peer = "" if None in theirs else \
            f"{TASK_GROUP[1]} in an arena of 1, the waiter alone: {' / '.join(fmt_rate(x) for x in theirs)}"
        rows.append(f"| one thread alone, W1 / W3 / W5 (reference, no target) | {rate} with 1 worker | "
                    f"{peer} | |")
    trips = run.ips("host/cross_core_round_trip")
    if trips is not None:
        rows.append(f"| host: a cache line passed to the other CPU and back | {1e9 / trips:.0f} ns | "
                    f"the same for every peer | (sets the scale) |")
    off, on = run.ns("task_write_read/detection:0"), run.ns("task_write_read/detection:1")
    if off is not None and on is not None:
        rows.append(f"| residue detection on, task writing and reading a slot | {fmt_time(on)} | "
                    f"{fmt_time(off)} with detection off ({fmt_ratio(ratio(on, off))}) | ≤ 3× |")
    return rows


IO_WORKLOADS = [("io_keepalive", "keep-alive, 32 connections"),
                ("io_conn_per_req", "connection per request, 8 clients")]
IO_PEERS = [("asio_pool", "asio::thread_pool"), ("io_context", "io_context × 2 threads"),
            ("io_per_thread", "io_context per thread")]


def io_table(run):
    """Server workloads (io_bench): ctxpool's requests/s over each peer's, and p99 latencies."""
    head = ["server, 2 threads", "ctxpool req/s, p50 / p99"] + [f"vs {label}: req/s, p99" for _, label in IO_PEERS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for workload, label in IO_WORKLOADS:
        mine = run.ips(f"{workload}/ctxpool")
        if mine is None:
            continue
        p50, p99 = run.counter(f"{workload}/ctxpool", "p50_us"), run.counter(f"{workload}/ctxpool", "p99_us")
        cells = [label, f"{fmt_rate(mine)}, {p50:.0f} / {p99:.0f} µs"]
        for peer, _ in IO_PEERS:
            theirs, their_p99 = run.ips(f"{workload}/{peer}"), run.counter(f"{workload}/{peer}", "p99_us")
            if theirs is None:
                cells.append("—")
                continue
            cells.append(f"{fmt_ratio(ratio(mine, theirs))}, {fmt_ratio(ratio(p99, their_p99))} "
                         f"({their_p99:.0f} µs)")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


FORK_JOIN = [("FJ1_fan_out_in", "fan-out/fan-in of 64 tasks", "ctxpool_task_group", "tbb_task_group"),
             ("FJ2_recursive", "recursive groups, depth 16", "ctxpool_task_group", "tbb_task_group"),
             ("FJ3_parallel_for", "parallel_for over 10^6", "ctxpool_parallel_for", "tbb_parallel_for")]


def fork_join_table(run):
    """Fork-join (fork_join_bench): ctxpool's throughput over oneTBB's."""
    lines = ["| fork-join, 2 threads | ctxpool items/s | vs oneTBB |", "|---|---:|---:|"]
    for workload, label, mine_name, peer_name in FORK_JOIN:
        mine = run.ips(f"{workload}/{mine_name}")
        if mine is None:
            continue
        lines.append(f"| {label} | {fmt_rate(mine)} | "
                     f"{fmt_ratio(ratio(mine, run.ips(f'{workload}/{peer_name}')))} |")
    return lines


def summary(run):
    """The tables the README's Performance section shows."""
    lines = [f"Measured by `bash scripts/run.sh bench`: {run.header()}", ""]
    ctx = context_rows(run)
    if ctx:
        lines += ["| context operation | ctxpool | peer | ratio | target |", "|---|---:|---|---:|---|"]
        lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in ctx]
        lines.append("")
    titled_tables = [
        (pool_table(run),
         "Pools, 2 workers each: ctxpool's throughput over each peer's, with the submitting "
         "thread waiting on a latch / yielding (above 1× ctxpool is faster; task_group "
         "against ctxpool with a latch). Target: ≥ 1.0× every simple pool and asio; "
         "≥ 0.7× oneTBB on W3/W5, ≥ 0.9× on W1/W2/W4."),
        (fork_join_table(run),
         "Fork-join (`bench/fork_join_bench.cpp`): `ctxpool::task_group` and `parallel_for` on "
         "2 workers over oneTBB's `task_group` and `tbb::parallel_for` in an arena of 2 threads "
         "(above 1× ctxpool is faster). Target: ≥ 1.0×."),
        (io_table(run),
         "Servers over loopback, 2 threads each, clients in the benchmark (`bench/io_bench.cpp`): "
         "ctxpool's requests per second over each peer's (above 1× ctxpool is faster), and its "
         "p99 latency over theirs (below 1× ctxpool's is lower). Target: ≥ 1.0× "
         "`asio::thread_pool` and an `io_context` run by 2 threads, p99 ≤ 1.1× theirs."),
    ]
    for table, title in titled_tables:
        if len(table) > 2:  # more than the header rows
            lines += [title, ""] + table + [""]
    extra = memory_line(run) + other_rows(run)
    if extra:
        lines += ["| measure | ctxpool | peers | target |", "|---|---:|---|---|"] + extra + [""]
    return lines


def full_tables(run):
    lines = []
    for program, rows in run.programs.items():
        lines += [f"## {program}", "", "| benchmark | median time | items/s | counters |", "|---|---:|---:|---|"]
        for name, b in rows.items():
            if b.get("error_occurred"):
                lines.append(f"| `{name}` | error: {b.get('error_message', '')} | | |")
                continue
            ns = to_ns(measured_time(b), b["time_unit"])
            ips = b.get("items_per_second")
            skip = {"name", "run_name", "run_type", "repetitions", "repetition_index", "threads",
                    "iterations", "real_time", "cpu_time", "time_unit", "family_index",
                    "per_family_instance_index", "aggregate_name", "aggregate_unit",
                    "items_per_second", "bytes_per_second", "label"}
            counters = ", ".join(f"{k}={v:.4g}" for k, v in b.items()
                                 if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool))
            lines.append(f"| `{name}` | {fmt_time(ns)} | {'' if ips is None else fmt_rate(ips)} | {counters} |")
        lines.append("")
    return lines


def plot_data(run):
    """Rows: workload, then one column per PLOT peer (M items/s; `-` when absent)."""
    lines = ["workload " + " ".join(f'"{title}"' for _, title in PLOT)]
    for workload, _ in WORKLOADS:
        values = []
        for suffix, _ in PLOT:
            ips = run.ips(f"{workload}/{suffix}")
            values.append("-" if ips is None else f"{ips / 1e6:.6f}")
        if all(v == "-" for v in values):
            continue
        lines.append(f'"{workload.split("_")[0]}" ' + " ".join(values))
    return lines


def update_readme(path, lines):
    with open(path) as f:
        text = f.read()
    begin, end = text.find(README_BEGIN), text.find(README_END)
    if begin < 0 or end < begin:
        print(f"report.py: {path} has no '{README_BEGIN}' ... '{README_END}' block; README not updated",
              file=sys.stderr)
        return
    block = README_BEGIN + "\n" + "\n".join(lines).rstrip() + "\n" + README_END
    with open(path, "w") as f:
        f.write(text[:begin] + block + text[end + len(README_END):])
    print(f"updated {path}", file=sys.stderr)


def main():
    args = sys.argv[1:]
    readme = None
    if "--readme" in args:
        i = args.index("--readme")
        readme = args[i + 1]
        del args[i:i + 2]
    out_dir, programs = args[0], args[1:]
    run = Run(out_dir, programs)
    lines = ["# ctxpool benchmark results", "", run.header(), "",
             "Ratios are ctxpool / peer from this run: throughput ratios above 1× mean ctxpool is "
             "faster; context ratios are time over the peer operation's time. Times are wall "
             "time for the rows marked real_time or manual_time (the pools), CPU time for the "
             "single-thread micro-benchmarks.", "",
             "## Summary (also in the README)", ""]
    lines += summary(run)[2:]
    lines += full_tables(run)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out_dir, "pool_throughput.dat"), "w") as f:
        f.write("\n".join(plot_data(run)) + "\n")
    if readme:
        update_readme(readme, summary(run))


if __name__ == "__main__":
    main()
