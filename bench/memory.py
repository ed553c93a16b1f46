"""Row 4 (run as ``python -m bench.memory STEPS``): RSS while the poller exports generated steps.

The steps come from the simulator's traffic model through the poller's own chunk path
(``Poller._export_items``: plan, metrics, SQLite batch, span outbox), with an in-memory stand-in
for the HTTP API, because serving a million steps over HTTP would take longer than the whole
benchmark may. The outbox is drained after each chunk by the real shipper to an encoder.
Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry

from studio_exporter.core.domain import Execution, Step
from studio_exporter.sinks.metrics import StudioMetrics
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sinks.shipper import SpanShipper
from studio_exporter.sources.poller import CHUNK_SIZE, CycleReport, Poller
from studio_exporter.sources.studio_api import StudioApi
from studio_exporter.store.sqlite import Store, state_file

from .exporters import CountingSpanSender
from .workload import Workload


class _StepsFromMemory:
    """Answers ``list_steps`` from the generated chunk: the only API call the chunk path makes."""

    def __init__(self) -> None:
        self.steps: dict[str, list[Step]] = {}

    async def list_steps(self, flow_sid: str, execution_sid: str) -> list[Step]:
        return self.steps.pop(execution_sid)


def rss_kib() -> tuple[int, int]:
    """(current RSS, peak RSS) in KiB, from /proc."""
    values: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


def run(total_steps: int, checkpoint: int) -> dict[str, Any]:
    workload = Workload(seed=5)
    api = _StepsFromMemory()
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(state_file(Path(directory)))
        registry = CollectorRegistry()
        metrics = StudioMetrics(registry)
        health = ExporterMetrics(registry, version="bench")
        poller = Poller(cast(StudioApi, api), store, metrics, health)
        poller.flows = {flow.sid: flow for flow in workload.flows}
        sink = CountingSpanSender()
        shipper = SpanShipper(store, sink, Resource.create({}), health, batch_size=512)
        report = CycleReport()
        serial = 0
        at_checkpoint: tuple[int, int] | None = None
        started = time.perf_counter()

        async def export() -> None:
            nonlocal serial, at_checkpoint
            while report.steps_exported < total_steps:
                by_flow: dict[str, list[tuple[Execution, bool]]] = {}
                for flow, execution, steps in workload.executions(serial, CHUNK_SIZE):
                    api.steps[execution.sid] = steps
                    by_flow.setdefault(flow.sid, []).append((execution, True))
                serial += CHUNK_SIZE
                for flow_sid, chunk in by_flow.items():
                    await poller._export_items(poller.flows[flow_sid], chunk, report, cursor=None)
                shipper.flush()
                if at_checkpoint is None and report.steps_exported >= checkpoint:
                    at_checkpoint = rss_kib()

        asyncio.run(export())
        seconds = time.perf_counter() - started
        final = rss_kib()
        store.close()
    return {
        "steps": report.steps_exported,
        "executions": serial,
        "spans": sink.spans,
        "seconds": seconds,
        "steps_per_second": report.steps_exported / seconds,
        "rss_at_checkpoint_mib": (at_checkpoint or final)[0] / 1024,
        "checkpoint_steps": checkpoint,
        "rss_final_mib": final[0] / 1024,
        "peak_rss_mib": final[1] / 1024,
    }


def main(argv: list[str]) -> int:
    total = int(argv[0]) if argv else 1_000_000
    checkpoint = int(argv[1]) if len(argv) > 1 else total // 10
    print(json.dumps(run(total, checkpoint)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
