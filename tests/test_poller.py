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
from studio_exporter.core.domain import Execution, Step
from studio_exporter.core.sharding import shard_of
from studio_exporter.simulator import FakeClock, Faults, Simulator, SimulatorConfig
from studio_exporter.sinks.span_sink import JsonLinesSender
from studio_exporter.sources.poller import CycleReport
from studio_exporter.sources.studio_api import ApiError
from studio_exporter.sources.throttle import RetryPolicy
from tests.truthcheck import metric_mismatches, samples, together
from tests.twilio_sdk import twilio_client

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


def make_exporter(sim: Simulator, clock: FakeClock, state_dir: Path, **flags: str) -> Exporter:
    config = config_from_mapping(
        {
            "twilio_base_url": sim.url,
            "state_dir": str(state_dir),
            "listen_address": "127.0.0.1:0",
            "lookback": "2d",
            **flags,
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


def _flow_samples(exporter: Exporter, name: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for labels, value in samples(exporter.registry, name):
        totals[labels["flow_sid"]] = totals.get(labels["flow_sid"], 0.0) + value
    return totals


def _busiest_flow(sim: Simulator) -> str:
    flows: dict[str, Any] = sim.truth()["flows"]
    return max(flows, key=lambda sid: (int(flows[sid]["executions_active"]), sid))


def test_deleting_an_active_execution_does_not_stop_its_flow(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    """Twilio's SDK deletes a followed execution mid-run; the flow's new ones still arrive."""
    exporter = make_exporter(simulator, clock, tmp_path)
    sdk = twilio_client(simulator)

    async def scenario() -> tuple[CycleReport, str, float]:
        try:
            clock.advance(60)
            assert (await exporter.poller.cycle()).ok
            flow = _busiest_flow(simulator)
            doomed = exporter.store.active_executions(flow)[-1]
            await asyncio.to_thread(sdk.studio.v2.flows(flow).executions(doomed.sid).delete)
            started = _flow_samples(exporter, "twilio_studio_executions_started_total")[flow]
            clock.advance(60)
            return await exporter.poller.cycle(), flow, started
        finally:
            await exporter.api.aclose()

    try:
        report, flow, started_before = asyncio.run(scenario())
    finally:
        exporter.close()
    truth = simulator.truth()
    assert report.ok
    assert report.executions_vanished == 1
    vanished = samples(exporter.registry, "twilio_studio_exporter_executions_vanished_total")
    assert vanished == [({}, 1.0)]
    started = _flow_samples(exporter, "twilio_studio_executions_started_total")
    # Every execution Studio still has was exported, the deleted one had been counted before.
    assert started[flow] == truth["flows"][flow]["executions_started"] + 1
    assert started[flow] > started_before, "no new execution of the flow in the next cycle"
    active = _flow_samples(exporter, "twilio_studio_executions_active")
    assert active == {sid: float(f["executions_active"]) for sid, f in truth["flows"].items()}


def test_a_deleted_flow_is_dropped_with_its_gauges(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    sdk = twilio_client(simulator)

    async def scenario() -> tuple[list[CycleReport], str, int]:
        try:
            clock.advance(60)
            assert (await exporter.poller.cycle()).ok
            flow = _busiest_flow(simulator)
            followed = len(exporter.store.active_executions(flow))
            await asyncio.to_thread(sdk.studio.v2.flows(flow).delete)
            reports = []
            for _ in range(2):
                clock.advance(60)
                reports.append(await exporter.poller.cycle())
            assert exporter.store.active_executions(flow) == []
            return reports, flow, followed
        finally:
            await exporter.api.aclose()

    try:
        (failed, dropped), flow, followed = asyncio.run(scenario())
    finally:
        exporter.close()
    assert followed > 0
    # Listing its executions answers 404 once; the next cycle lists flows again and drops it.
    assert failed.failed_flows == [flow]
    assert dropped.ok
    assert flow not in exporter.poller.flows
    assert flow not in _flow_samples(exporter, "twilio_studio_executions_active")
    assert flow not in _flow_samples(exporter, "twilio_studio_widget_visits_in_progress")
    vanished = samples(exporter.registry, "twilio_studio_exporter_executions_vanished_total")
    assert vanished == [({}, float(followed))]


def test_negative_durations_are_counted_and_logged_once_never_clamped(
    simulator: Simulator, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    flow_sid = simulator.flow_sids[0]
    created = START - timedelta(minutes=1)
    # Skewed records: the first step before the execution's creation, its end too.
    execution = Execution("FN" + "1" * 32, flow_sid, simulator.account_sid, "ended", created)
    steps = [
        Step(f"FT{n:032x}", flow_sid, execution.sid, "next", origin, target, "set-variables",
             created + timedelta(seconds=offset))
        for n, origin, target, offset in [(1, "Trigger", "a", -5), (2, "a", "Ended", -2)]
    ]  # fmt: skip

    async def scenario() -> None:
        try:
            await exporter.poller.recorder.apply_pushed(flow_sid, execution, steps)
        finally:
            await exporter.api.aclose()

    try:
        with caplog.at_level("WARNING", logger="studio_exporter.sources.recording"):
            asyncio.run(scenario())
    finally:
        exporter.close()
    anomalies = {
        labels["kind"]: value
        for labels, value in samples(exporter.registry, "twilio_studio_exporter_anomalies_total")
    }
    assert anomalies == {"negative_visit_duration": 1.0, "negative_execution_duration": 1.0}
    logged = [r for r in caplog.records if execution.sid in r.getMessage()]
    assert len(logged) == 1
    durations = {
        labels["widget"]: value
        for labels, value in samples(exporter.registry, "twilio_studio_step_duration_seconds_count")
        if labels["flow_sid"] == flow_sid
    }
    assert durations == {"a": 1.0}  # Trigger's -5 s is left out, not put in the lowest bucket
    ended = samples(exporter.registry, "twilio_studio_execution_duration_seconds_count")
    assert [value for labels, value in ended if labels["flow_sid"] == flow_sid] == []
    executions = samples(exporter.registry, "twilio_studio_executions_ended_total")
    assert sum(value for _, value in executions) == 1


def test_an_execution_that_fails_to_read_holds_back_only_itself(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    exporter.api.retry = RetryPolicy(max_attempts=1)

    async def scenario() -> tuple[CycleReport, dict[str, float], CycleReport]:
        try:
            simulator.set_faults(Faults(fail_5xx=0.02))
            clock.advance(60)
            faulty = await exporter.poller.cycle()
            started = _flow_samples(exporter, "twilio_studio_executions_started_total")
            simulator.set_faults(Faults())
            clock.advance(60)
            return faulty, started, await exporter.poller.cycle()
        finally:
            await exporter.api.aclose()

    try:
        faulty, started, recovered = asyncio.run(scenario())
    finally:
        exporter.close()
    assert faulty.failed_executions, "the scenario should fail some reads of steps"
    flows = {
        simulator.flow_sids[simulator.traffic.by_sid[sid].flow] for sid in faulty.failed_executions
    }
    for flow in flows - set(faulty.failed_flows):
        # The flow's other executions were exported in the same cycle.
        assert started.get(flow, 0) > 0, flow
    assert recovered.ok
    # The new executions whose steps failed were listed again: nothing is missing.
    assert metric_mismatches(exporter.registry, simulator.truth()) == []


def test_flow_definitions_are_read_once_per_revision(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    """What push types its steps with: FetchFlow once per flow and revision, over HTTP."""
    main, other = simulator.flow_sids[0], simulator.flow_sids[1]
    config = config_from_mapping(
        {"twilio_base_url": simulator.url, "state_dir": str(tmp_path), "flows": main},
        {"TWILIO_ACCOUNT_SID": simulator.account_sid, "TWILIO_AUTH_TOKEN": simulator.auth_token},
    )
    exporter = build_exporter(
        config, span_sender=JsonLinesSender(tmp_path / "spans.jsonl"), serve_web=False
    )
    poller = exporter.poller

    async def scenario() -> list[int]:
        try:
            flow = await poller.flow_definition(main, 3)
            assert flow.widgets
            assert flow.revision == 3
            await poller.flow_definition(main, 3)
            await poller.flow_definition(main)
            reads = [requests(simulator).get("FetchFlow", 0)]
            await poller.flow_definition(main, 4)  # published since: read again
            await poller.flow_definition(main, 4)  # Studio still says 3: not read again
            reads.append(requests(simulator).get("FetchFlow", 0))
            await poller.flow_definition(other)
            reads.append(requests(simulator).get("FetchFlow", 0))
            return reads
        finally:
            await exporter.api.aclose()

    assert asyncio.run(scenario()) == [1, 2, 3]
    # A flow outside --flow is read for its widget types, never polled.
    assert set(poller.flows) == {main}
    exporter.close()


def test_reads_failing_mid_export_hold_back_only_their_executions_and_lose_nothing(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, clock, tmp_path)
    exporter.api.retry = RetryPolicy(max_attempts=1)
    left_running: list[int] = []
    total: list[int] = []

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
            total.append(sum(len(executions) for executions in listed.values()))
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
    assert partial.failed_executions, "the scenario should fail some reads of steps"
    # Every other execution was read and exported in the same pass; the failed ones wait.
    assert partial.executions_read + len(partial.failed_executions) == total[0]
    assert left_running == [0]  # no read ahead still running or waiting
    assert recovered.ok
    assert metric_mismatches(exporter.registry, simulator.truth()) == []


def cycle_together(exporters: list[Exporter], clock: FakeClock, n: int) -> None:
    """Advance the clock a minute and poll with every replica, n times."""

    async def scenario() -> None:
        try:
            for _ in range(n):
                clock.advance(60)
                for exporter in exporters:
                    assert (await exporter.poller.cycle()).ok
        finally:
            for exporter in exporters:
                await exporter.api.aclose()

    asyncio.run(scenario())


def test_shards_poll_disjoint_flows_that_sum_to_the_truth(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    replicas = [
        make_exporter(simulator, clock, tmp_path / str(shard), shard=str(shard), total_shards="2")
        for shard in (0, 1)
    ]
    try:
        cycle_together(replicas, clock, 3)
    finally:
        for exporter in replicas:
            exporter.close()
    followed = [set(exporter.poller.flows) for exporter in replicas]
    assert followed[0].isdisjoint(followed[1])
    assert followed[0] | followed[1] == set(simulator.accounts[0].traffic.flow_sids)
    assert all(followed), "seed 21 gives each of two shards some flows"
    for shard, flows in enumerate(followed):
        assert {shard_of(simulator.account_sid, sid, 2) for sid in flows} == {shard}
        info = samples(replicas[shard].registry, "twilio_studio_flow_info")
        assert {labels["flow_sid"] for labels, _ in info} == flows
    registries = [exporter.registry for exporter in replicas]
    assert metric_mismatches(together(*registries), simulator.truth()) == []


def test_a_subflow_of_another_shard_is_named_but_not_polled(
    simulator: Simulator, clock: FakeClock, tmp_path: Path
) -> None:
    traffic = simulator.accounts[0].traffic
    sid_of = dict(zip((spec.key for spec in traffic.flows), traffic.flow_sids, strict=True))
    parent, subflow = next(
        (sid_of[spec.key], sid_of[widget.subflow])
        for spec in traffic.flows
        for widget in spec.widgets
        if widget.subflow is not None
    )
    account = simulator.account_sid
    total = next(
        m for m in range(2, 10) if shard_of(account, parent, m) != shard_of(account, subflow, m)
    )
    exporter = make_exporter(
        simulator,
        clock,
        tmp_path,
        shard=str(shard_of(account, parent, total)),
        total_shards=str(total),
    )
    try:
        cycle_together([exporter], clock, 2)
    finally:
        exporter.close()
    assert parent in exporter.poller.flows
    assert subflow not in exporter.poller.flows  # its owner polls it
    # Its steps ran inside the parent's executions: counted here, under the subflow's name.
    names = {
        labels["flow"]
        for labels, value in samples(exporter.registry, "twilio_studio_steps_total")
        if labels["flow_sid"] == subflow and value
    }
    assert names == {"Identity Check (subflow)"}
