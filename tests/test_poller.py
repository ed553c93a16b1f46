"""Tests for the poller on a simulated clock: API cost per cycle, gauges, pruning, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.poller import CycleReport
from studio_exporter.simulator import FakeClock, Faults, Simulator, SimulatorConfig
from studio_exporter.span_sink import JsonLinesSender
from studio_exporter.studio_api import ApiError
from studio_exporter.throttle import RetryPolicy
from tests.truthcheck import metric_mismatches, samples

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
HISTORY = 1000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def simulator(clock: FakeClock) -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=21, history_executions=HISTORY, history_days=1, rate=20, speed=1, clock=clock
    )
    with Simulator(config) as sim:
        yield sim


def make_exporter(sim: Simulator, clock: FakeClock, state_dir: Path) -> Exporter:
    config = config_from_mapping(
        {
            "twilio_base_url": sim.url,
            "state_dir": str(state_dir),
            "listen_address": "127.0.0.1:0",
            "lookback": "2d",
        },
        {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
    )
    return build_exporter(
        config,
        span_sender=JsonLinesSender(state_dir / "spans.jsonl"),
        serve_web=False,
        clock=clock,
    )


def requests(sim: Simulator) -> dict[str, int]:
    counts: dict[str, int] = sim.truth()["requests"]["by_operation"]
    return dict(counts)


def run_cycles(exporter: Exporter, sim: Simulator, clock: FakeClock, n: int) -> list[Any]:
    """Advance the clock a minute and poll, n times; per cycle: report and requests made."""

    async def scenario() -> list[Any]:
        results = []
        try:
            for _ in range(n):
                clock.advance(60)
                before = requests(sim)
                report = await exporter.poller.cycle()
                after = requests(sim)
                made = {op: after.get(op, 0) - before.get(op, 0) for op in after}
                results.append((report, made))
        finally:
            await exporter.api.aclose()
        return results

    return asyncio.run(scenario())


def test_steady_state_cost_tracks_active_and_new_not_history(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    try:
        first, *steady = run_cycles(exporter, simulator, clock, 4)
    finally:
        exporter.close()
    report, made = first
    assert report.ok
    assert made["ListExecutionStep"] >= HISTORY  # the first cycle reads the lookback window
    for report, made in steady:
        assert report.ok
        followed = report.executions_read
        # One steps page per execution read, and only active + new executions are read.
        assert made.get("ListExecutionStep", 0) == followed
        assert followed < HISTORY / 10, f"a steady cycle read {followed} executions"
        flows = report.flows
        # New executions (one page each) and the active ones (one page each), per flow.
        assert made.get("ListExecution", 0) <= 2 * flows
    truth = simulator.truth()
    assert metric_mismatches(exporter.registry, truth) == []


def test_gauges_equal_what_is_active_now(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    try:
        run_cycles(exporter, simulator, clock, 3)
    finally:
        exporter.close()
    truth = simulator.truth()
    active = {
        labels["flow_sid"]: value
        for labels, value in samples(exporter.registry, "twilio_studio_executions_active")
    }
    expected_active = {sid: flow["executions_active"] for sid, flow in truth["flows"].items()}
    assert sum(expected_active.values()) > 0, "the scenario should leave executions waiting"
    for flow_sid, count in expected_active.items():
        assert active.get(flow_sid, 0) == count, flow_sid
    waiting = {
        (labels["flow_sid"], labels["widget"]): value
        for labels, value in samples(exporter.registry, "twilio_studio_widget_visits_in_progress")
    }
    expected_waiting = {
        (sid, widget): stats["visits_in_progress"]
        for sid, flow in truth["flows"].items()
        for widget, stats in flow["widgets"].items()
        if stats["visits_in_progress"]
    }
    assert {key: value for key, value in waiting.items() if value} == expected_waiting


def test_a_failing_cycle_is_counted_and_the_next_one_catches_up(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    exporter.api.retry = RetryPolicy(max_attempts=1)

    async def scenario() -> tuple[CycleReport, CycleReport]:
        try:
            simulator.set_faults(Faults(fail_5xx=1.0))
            failed = await exporter.poller.cycle()
            simulator.set_faults(Faults())
            clock.advance(60)
            return failed, await exporter.poller.cycle()
        finally:
            await exporter.api.aclose()

    try:
        failed, recovered = asyncio.run(scenario())
    finally:
        exporter.close()
    assert not failed.ok
    assert recovered.ok
    cycles = samples(exporter.registry, "twilio_studio_exporter_poll_cycles_total")
    assert {labels["result"]: value for labels, value in cycles} == {"ok": 1.0, "error": 1.0}
    assert exporter.readiness().ready
    assert metric_mismatches(exporter.registry, simulator.truth()) == []


def test_prune_forgets_what_studio_no_longer_keeps(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    try:
        run_cycles(exporter, simulator, clock, 1)
        result = exporter.poller.prune(clock() + timedelta(days=31))
        left = sum(len(exporter.store.active_executions(f)) for f in simulator.flow_sids)
    finally:
        exporter.close()
    assert result.executions >= HISTORY
    assert left == 0


def test_a_read_failing_mid_export_abandons_the_reads_ahead_and_loses_nothing(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    exporter.api.retry = RetryPolicy(max_attempts=1)
    left_running: list[int] = []

    async def scenario() -> tuple[CycleReport, CycleReport]:
        try:
            # Listing is done by then: only the executions' step reads fail, some of them.
            listed = {
                flow.sid: await exporter.api.list_executions(
                    flow.sid, created_from=START - timedelta(days=2)
                )
                for flow in await exporter.api.list_flows()
            }
            assert sum(len(executions) for executions in listed.values()) >= 100
            simulator.set_faults(Faults(fail_5xx=0.004))
            report = CycleReport()
            await exporter.poller.refresh_flows(force=True)
            for flow in exporter.poller.flows.values():
                with contextlib.suppress(ApiError):
                    await exporter.poller._poll_flow(flow, report, listed=listed[flow.sid])
            left_running.append(len(asyncio.all_tasks()) - 1)
            simulator.set_faults(Faults())
            clock.advance(60)
            return report, await exporter.poller.cycle()
        finally:
            await exporter.api.aclose()

    try:
        partial, recovered = asyncio.run(scenario())
    finally:
        exporter.close()
    assert 0 < partial.executions_read < HISTORY  # some flows stopped part-way
    assert left_running == [0]  # no read ahead still running or waiting
    assert recovered.ok
    assert metric_mismatches(exporter.registry, simulator.truth()) == []
