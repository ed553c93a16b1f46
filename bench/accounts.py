"""Row 8 (run as ``python -m bench.accounts N``): one exporter following N subaccounts.

The simulator runs in a child process with the main account and N subaccounts, each with the
default flows (varied per account), a little history and live traffic. The exporter follows
them all (``--include-subaccounts``) in this process, so the CPU time and RSS measured here
are the exporter's own. After a first cycle that catches up the history, steady cycles run
one every ``interval`` seconds; for each: wall time, requests sent to the simulator (Studio
and accounts API), CPU time of this process (all threads: the pollers and the span shippers),
and RSS; the CPU time is that of the whole interval, so the span shippers' work for the cycle
is in it. Memory flat in executions: RSS after the first steady cycle against the last, while
the executions exported keep growing. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from typing import Any

from studio_exporter.accounts import AccountSupervisor
from studio_exporter.app import build_exporter
from studio_exporter.config import config_from_mapping

from .exporters import CountingSpanSender
from .memory import rss_kib
from .simproc import child_simulator

#: The default poll interval: a cycle over every account must fit in it.
POLL_INTERVAL = 30.0


def _requests(accounts: AccountSupervisor) -> int:
    seen = {id(parts.api): parts.api for parts in accounts.followed.values()}
    return accounts.accounts_api.requests_sent + sum(api.requests_sent for api in seen.values())


def run(subaccounts: int, cycles: int, interval: float) -> dict[str, Any]:
    args = (
        "--subaccounts",
        str(subaccounts),
        "--history-executions",
        "20",
        "--history-days",
        "0.5",
        "--rate",
        "1",
        "--speed",
        "10",
        "--seed",
        "8",
    )
    with child_simulator(*args) as sim, tempfile.TemporaryDirectory() as directory:
        config = config_from_mapping(
            {
                "twilio_base_url": sim.url,
                "state_dir": directory,
                "lookback": "1d",
                "include_subaccounts": "true",
                "poll_interval": f"{POLL_INTERVAL:g}s",
            },
            {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
        )
        sink = CountingSpanSender()
        exporter = build_exporter(config, env={}, span_sender=sink, serve_web=False)
        exporter.start()
        accounts = exporter.accounts
        assert accounts is not None
        result: dict[str, Any] = {"subaccounts": subaccounts, "interval": interval}
        steady: list[dict[str, float]] = []

        async def scenario() -> None:
            began = time.perf_counter()
            await accounts.refresh(force=True)
            reports = await accounts.cycle()
            result["followed"] = len(accounts.followed)
            result["first_cycle_seconds"] = time.perf_counter() - began
            result["first_cycle_steps"] = sum(r.steps_exported for r in reports.values())
            result["rss_after_first_mib"] = rss_kib()[0] / 1024
            await asyncio.sleep(max(0.0, interval - accounts.last_cycle_seconds))
            for _ in range(cycles):
                # CPU over the whole interval: the cycle, then the shippers sending its spans.
                requests, cpu = _requests(accounts), time.process_time()
                reports = await accounts.cycle()
                wall = accounts.last_cycle_seconds
                await asyncio.sleep(max(0.0, interval - wall))
                steady.append(
                    {
                        "wall_seconds": wall,
                        "requests": _requests(accounts) - requests,
                        "cpu_seconds": time.process_time() - cpu,
                        "rss_mib": rss_kib()[0] / 1024,
                        "executions_read": sum(r.executions_read for r in reports.values()),
                        "steps": sum(r.steps_exported for r in reports.values()),
                        "failed_accounts": sum(not r.ok for r in reports.values()),
                    }
                )
            await exporter.aclose_apis()

        try:
            asyncio.run(scenario())
            exporter.shipper.flush()
        finally:
            exporter.close()
    result["cycles"] = steady
    result["spans"] = sink.spans
    result["peak_rss_mib"] = rss_kib()[1] / 1024
    return result


def main(argv: list[str]) -> int:
    subaccounts = int(argv[0]) if argv else 200
    cycles = int(argv[1]) if len(argv) > 1 else 4
    interval = float(argv[2]) if len(argv) > 2 else 10.0
    print(json.dumps(run(subaccounts, cycles, interval)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
