"""Tests for the export path that poll and push share, with the real store and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.core.domain import Flow
from studio_exporter.sinks.metrics import StudioMetrics
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sources.poller import Poller
from studio_exporter.sources.studio_api import StudioApi
from studio_exporter.store.sqlite import Store, state_file
from tests.factories import ACCOUNT_SID, EXECUTION_SID, FLOW_SID, make_execution, make_step, survey

EXECUTION, (S1, S2, S3), FLOW = survey()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(state_file(tmp_path)) as opened:
        yield opened


class FlowsOnlyApi:
    """The REST reads of the poller (the recorder's flow catalog) that push may make: the flows."""

    async def list_flows(self) -> list[Flow]:
        return [FLOW]

    async def fetch_flow(self, flow_sid: str) -> Flow:
        return FLOW


def test_apply_pushed_counts_each_step_once(store: Store) -> None:
    registry = CollectorRegistry()
    metrics = StudioMetrics(registry)
    account_sid = "AC" + "1" * 32
    poller = Poller(
        cast(StudioApi, FlowsOnlyApi()),
        store,
        metrics,
        ExporterMetrics(CollectorRegistry()),
        account_sid=account_sid,
    )
    ended = make_execution(status="ended")

    async def scenario() -> None:
        await poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [])
        await poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [S1, S2])
        await poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [S1, S2])  # a redelivery
        await poller.recorder.apply_pushed(FLOW_SID, ended, [S1, S2, S3])
        await poller.recorder.apply_pushed(FLOW_SID, ended, [S1, S2, S3])  # done: left alone

    asyncio.run(scenario())
    labels = {"account_sid": account_sid, "flow_sid": FLOW_SID, "flow": "Survey"}
    assert registry.get_sample_value("twilio_studio_executions_started_total", labels) == 1
    assert (
        registry.get_sample_value(
            "twilio_studio_executions_ended_total", {**labels, "final_widget": "confirm"}
        )
        == 1
    )
    steps = sum(
        sample.value
        for family in registry.collect()
        if family.name == "twilio_studio_steps"
        for sample in family.samples
        if sample.name == "twilio_studio_steps_total"
    )
    assert steps == 3
    assert store.is_done(EXECUTION_SID)


def test_apply_pushed_many_exports_each_execution_once(store: Store) -> None:
    registry = CollectorRegistry()
    poller = Poller(
        cast(StudioApi, FlowsOnlyApi()),
        store,
        StudioMetrics(registry),
        ExporterMetrics(CollectorRegistry()),
        account_sid=ACCOUNT_SID,
    )
    other_sid = "FN" + "2" * 32
    other = make_execution(sid=other_sid, status="ended")
    other_steps = [
        make_step("Trigger", "ask", 1, number=11, execution_sid=other_sid, event="incomingMessage"),
        make_step("ask", "Ended", 3, number=12, execution_sid=other_sid),
    ]
    batch = [(make_execution(status="ended"), [S1, S2, S3]), (other, other_steps)]

    async def scenario() -> None:
        await poller.recorder.apply_pushed_many(FLOW_SID, batch)
        await poller.recorder.apply_pushed_many(FLOW_SID, batch)  # a redelivery of both

    asyncio.run(scenario())
    labels = {"account_sid": ACCOUNT_SID, "flow_sid": FLOW_SID, "flow": "Survey"}
    assert registry.get_sample_value("twilio_studio_executions_started_total", labels) == 2
    steps = sum(
        sample.value
        for family in registry.collect()
        if family.name == "twilio_studio_steps"
        for sample in family.samples
        if sample.name == "twilio_studio_steps_total"
    )
    assert steps == 5
    assert store.is_done(EXECUTION_SID)
    assert store.is_done(other_sid)


def test_span_wake_up_follows_only_commits_that_queued_spans(store: Store) -> None:
    """The wake-up given to the constructor: called after a commit with spans, only then."""
    wakes: list[int] = []
    poller = Poller(
        cast(StudioApi, FlowsOnlyApi()),
        store,
        StudioMetrics(CollectorRegistry()),
        ExporterMetrics(CollectorRegistry()),
        account_sid=ACCOUNT_SID,
        on_spans_queued=lambda: wakes.append(store.count_pending_spans()),
    )
    recorder = poller.recorder

    async def scenario() -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        for steps in ([], [S1, S2], [S1, S2]):  # started only; two visits closed; a redelivery
            await recorder.apply_pushed(FLOW_SID, EXECUTION, steps)
            seen.append((len(wakes), store.count_pending_spans()))
        return seen

    seen = asyncio.run(scenario())
    assert seen[0] == (0, 0)  # committed (the execution is known now), but no span queued
    assert seen[1][0] == 1
    assert seen[1][1] > 0  # the visit spans
    assert wakes == [seen[1][1]]  # called once, after the spans were committed
    assert seen[2] == seen[1]  # nothing new: no span, no wake-up
    assert store.is_known(EXECUTION_SID)
