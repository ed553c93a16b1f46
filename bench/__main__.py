"""``python -m bench``: every benchmark row, as a table on stdout and optionally JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import conversion, scenarios

Row = tuple[str, str, str, str, str, str]


def _machine() -> dict[str, Any]:
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average": os.getloadavg(),
    }


def _start_memory(steps: int) -> subprocess.Popen[str]:
    """The memory row in its own process (its RSS is its own), started first to run alongside
    the rows that measure CPU time or request counts, which sharing the machine does not move."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.memory", str(steps), str(steps // 10)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _memory(child: subprocess.Popen[str] | None) -> dict[str, Any]:
    if child is None:
        raise RuntimeError("the memory run did not start")
    out, _ = child.communicate(timeout=900)
    if child.returncode != 0:
        raise RuntimeError(f"the memory run failed with exit code {child.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


def _runs_note(b: dict[str, Any]) -> str:
    """The backfill's runs (ours: the median is shown), as ratios to the floor."""
    runs = b.get("ours_seconds_runs", [])
    if len(runs) < 2:
        return ""
    ratios = ", ".join(f"{seconds / b['floor_seconds']:.2f}" for seconds in sorted(runs))
    return f" (median of {ratios})"


def _rows(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    b = results.get("backfill")
    if b:
        note = (
            f" (baseline measured on {b['baseline_executions']:,},"
            f" scaled x{b['executions'] / b['baseline_executions']:.1f})"
            if b["baseline_extrapolated"]
            else ""
        )
        rows.append(
            (
                f"1 Backfill {b['executions']:,} executions, {b['latency_ms']:.0f} ms/request:"
                f" wall{note}",
                f"{b['ours_seconds']:.1f} s",
                f"{b['baseline_seconds']:.1f} s",
                f"{b['baseline_seconds'] / b['ours_seconds']:.1f}x faster",
                ">= 15x",
                "",
            )
        )
        rows.append(
            (
                f"1 Backfill at concurrency {b['concurrency']}: wall vs latency floor"
                f" ({b['ours_requests']:,} requests x {b['latency_ms']:.0f} ms"
                f" / {b['concurrency']})",
                f"{b['ours_seconds']:.1f} s",
                f"{b['floor_seconds']:.1f} s floor",
                f"{b['ours_seconds'] / b['floor_seconds']:.2f}x floor{_runs_note(b)}",
                "<= 1.5x",
                "",
            )
        )
        if "defaults_seconds" in b:
            rows.append(
                (
                    f"1 Backfill at default flags (`studio-exporter backfill`, concurrency"
                    f" {b['defaults_concurrency']}) vs Twilio's Python SDK (sequential, page"
                    f" size 50){note}",
                    f"{b['defaults_seconds']:.1f} s",
                    f"{b['sdk_seconds']:.1f} s",
                    f"{b['sdk_seconds'] / b['defaults_seconds']:.1f}x faster",
                    ">= 15x",
                    "",
                )
            )
        rows.append(
            (
                "1 Backfill: requests (ours / baseline)",
                f"{b['ours_requests']:,}",
                f"{b['baseline_requests']:,}",
                f"{b['baseline_requests'] / b['ours_requests']:.2f}x fewer",
                "",
                "",
            )
        )
        rows.append(
            (
                f"1 Backfill: requests vs minimum; 429s from the limit of {b['concurrency']}",
                f"{b['ours_requests']:,} ({b['throttled_429']} x 429)",
                f"{b['minimum_requests']:,} minimum",
                f"{b['ours_requests'] / b['minimum_requests']:.3f}x minimum",
                "<= 1.05x",
                "",
            )
        )
    s = results.get("steady")
    if s:
        rows.append(
            (
                f"2 Steady state: requests per cycle ({s['in_window']:,} in window,"
                f" {s['active']} active)",
                f"{s['ours_requests']:,}",
                f"{s['baseline_requests']:,}",
                f"{s['baseline_requests'] / max(1, s['ours_requests']):.0f}x fewer",
                "~ active + new",
                "",
            )
        )
    c = results.get("conversion")
    if c:
        rows.append(
            (
                f"3 Conversion: steps/s, one core, CPU time ({c['steps']:,} steps,"
                f" {c['spans']:,} spans)",
                f"{c['ours_rate']:,.0f}",
                f"{c['floor_rate']:,.0f} (bare SDK spans)",
                f"{c['floor_rate'] / c['ours_rate']:.2f}x of floor time",
                ">= 20,000; <= 2x",
                "",
            )
        )
    m = results.get("memory")
    if m:
        rows.append(
            (
                f"4 Memory: RSS at {m['checkpoint_steps']:,} vs {m['steps']:,} steps; peak",
                f"{m['rss_at_checkpoint_mib']:.0f} -> {m['rss_final_mib']:.0f} MiB,"
                f" peak {m['peak_rss_mib']:.0f}",
                "",
                f"{m['rss_final_mib'] / m['rss_at_checkpoint_mib']:.2f}x growth",
                "< 250 MB, flat",
                "",
            )
        )
        rows.append(
            (
                "4 Memory run: poller chunk path incl. SQLite + shipper, steps/s (wall)",
                f"{m['steps_per_second']:,.0f}",
                "",
                "",
                "",
                "",
            )
        )
    f = results.get("freshness")
    if f:
        rows.append(
            (
                f"5 Freshness: step created -> in /metrics (poll {f['poll_interval']:.0f} s,"
                f" {f['steps']:,} steps)",
                f"median {f['median_seconds']:.2f} s, p99 {f['p99_seconds']:.2f} s",
                f"max {f['max_seconds']:.2f} s",
                "",
                f"<= {f['poll_interval'] + 1:.0f} s",
                "",
            )
        )
    push = results.get("push")
    if f and push:
        rows.append(
            (
                "7 Push (Event Streams) vs poll: step created -> in /metrics, median / max",
                f"{push['median_seconds']:.2f} s / {push['max_seconds']:.2f} s",
                f"poll: {f['median_seconds']:.2f} s / {f['max_seconds']:.2f} s",
                f"{f['median_seconds'] / push['median_seconds']:.1f}x sooner"
                if push["median_seconds"] > 0
                else "",
                "",
                "",
            )
        )
        rows.append(
            (
                f"7 Push vs poll: API requests in {push['window_seconds']:.0f} s of live traffic",
                f"{push['requests']:,}",
                f"poll: {f['requests']:,}",
                f"{f['requests'] / max(push['requests'], 1):.1f}x fewer"
                f" ({f['requests'] - push['requests']:,} saved)",
                "",
                "",
            )
        )
    if push and "rest_per_execution" in push:
        rows.append(
            (
                "7 Push, documented payloads: REST requests per ended execution"
                f" ({push['executions_ended']:,} ended; flow and account reads apart)",
                f"{push['rest_per_execution']:.2f}",
                f"{push['execution_rest_requests']:,} execution reads,"
                f" {push['flow_rest_requests']:,} flow and account reads",
                "",
                "<= 1.0",
                "",
            )
        )
    latency = results.get("push_latency")
    if latency:
        rows.append(
            (
                "7 Push latency: webhook answered 200 -> step in /metrics, steady live traffic"
                f" ({latency['steps']:,} steps, {latency['steps_not_seen']} still held at the"
                " end; `run --mode push` at default flags)",
                f"median {latency['median_seconds'] * 1000:.0f} ms,"
                f" p99 {latency['p99_seconds'] * 1000:.0f} ms",
                f"max {latency['max_seconds'] * 1000:.0f} ms; scraped every"
                f" {latency['scrape_every_seconds'] * 1000:.0f} ms"
                f" (a scrape: {latency['scrape_median_seconds'] * 1000:.0f} ms)",
                "",
                "median <= 50 ms, p99 <= 250 ms",
                "",
            )
        )
    a = results.get("accounts")
    if a:
        steady = a["cycles"]
        walls = sorted(cycle["wall_seconds"] for cycle in steady)
        cpu = max(cycle["cpu_seconds"] for cycle in steady)
        requests = [cycle["requests"] for cycle in steady]
        rss = [cycle["rss_mib"] for cycle in steady]
        reads = sum(cycle["executions_read"] for cycle in steady)
        rows.append(
            (
                f"8 Accounts: {a['subaccounts']} subaccounts + main, default flows, live traffic:"
                f" poll-cycle wall, median / max of {len(steady)}",
                f"{walls[len(walls) // 2]:.1f} s / {walls[-1]:.1f} s",
                f"{a['interval']:.0f} s poll interval",
                f"{a['interval'] / walls[-1]:.1f}x headroom",
                "fits in 30 s",
                "",
            )
        )
        rows.append(
            (
                "8 Accounts: requests per cycle; CPU per cycle (all threads), most of"
                f" {len(steady)}",
                f"{min(requests):,}-{max(requests):,}; {cpu:.1f} s CPU",
                f"{cpu / a['interval']:.0%} of a core",
                "",
                "< 50% of a core",
                "",
            )
        )
        rows.append(
            (
                f"8 Accounts: RSS after the catch-up ({a['first_cycle_steps']:,} steps) -> after"
                f" {reads:,} more executions read",
                f"{a['rss_after_first_mib']:.0f} -> {rss[-1]:.0f} MiB",
                "",
                f"{rss[-1] / a['rss_after_first_mib']:.2f}x growth",
                "flat",
                "",
            )
        )
    r = results.get("simulator")
    if r:
        rows.append(
            (
                "6 Simulator: steps-page requests/s served (16 connections)",
                f"{r['requests_per_second']:,.0f}",
                "",
                "",
                "",
                "",
            )
        )
    return rows


def _table(rows: list[Row]) -> str:
    header: Row = ("Benchmark", "Ours", "Baseline / floor", "Ratio", "Goal", "")
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = []
    for index, row in enumerate(table):
        lines.append("| " + " | ".join(row[i].ljust(widths[i]) for i in range(5)) + " |")
        if index == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--executions", type=int, default=10_000)
    parser.add_argument(
        "--baseline-executions",
        type=int,
        # 2,500 keeps `make bench` under ten minutes on 2 shared cores; the table says it scaled.
        default=2_500,
        help="run the baseline backfill on this many and scale linearly (0: all of them)",
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--memory-steps", type=int, default=1_000_000)
    parser.add_argument("--subaccounts", type=int, default=200)
    parser.add_argument(
        "--only",
        default="backfill,steady,conversion,memory,freshness,push,push_latency,simulator,accounts",
    )
    args = parser.parse_args(argv)
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {"machine": _machine()}
    memory_child = _start_memory(args.memory_steps) if "memory" in wanted else None
    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "conversion": lambda: _conversion(args.executions),
        "steady": lambda: scenarios.steady_state(args.executions, 100),
        "freshness": lambda: scenarios.freshness(20.0, 1.0),
        "push": lambda: scenarios.freshness(20.0, 1.0, mode="push"),
        "push_latency": lambda: scenarios.push_latency(20.0),
        "simulator": lambda: {"requests_per_second": scenarios.simulator_rate(5.0)},
        "accounts": lambda: _accounts(args.subaccounts),
        "memory": lambda: _memory(memory_child),
        "backfill": lambda: scenarios.backfill(
            args.executions,
            args.latency_ms,
            args.concurrency,
            args.baseline_executions or args.executions,
        ),
    }
    failed = False
    started = time.perf_counter()
    for name, run in runs.items():
        if name not in wanted:
            continue
        began = time.perf_counter()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = run()
        except Exception:  # a row that could not run is reported, and the others still run
            traceback.print_exc()
            failed = True
            continue
        print(f"  {name}: {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    results["total_seconds"] = time.perf_counter() - started
    machine = results["machine"]
    print(
        f"\nMachine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"load average at start {machine['load_average'][0]:.1f};"
        f" total {results['total_seconds']:.0f} s\n"
    )
    print(_table(_rows(results)))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 1 if failed else 0


def _accounts(subaccounts: int) -> dict[str, Any]:
    """Row 8 in its own process, so that its CPU time and RSS are the exporter's alone."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.accounts", str(subaccounts), "3", "30"],
        stdout=subprocess.PIPE,
        text=True,
        timeout=900,
        check=True,
    )
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def _conversion(executions: int) -> dict[str, Any]:
    result = conversion.measure(executions)
    return {
        "steps": result.steps,
        "spans": result.spans,
        "ours_cpu_seconds": result.ours_seconds,
        "floor_cpu_seconds": result.floor_seconds,
        "ours_rate": result.ours_rate,
        "floor_rate": result.floor_rate,
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
