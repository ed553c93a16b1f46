"""Tests for the export path that poll and push share, with the real store and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.core.domain import Flow
from studio_exporter.sinks.metrics import StudioMetrics
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sources.poller import Poller
from studio_exporter.sources.studio_api import StudioApi
from studio_exporter.store.protocols import StateError
from studio_exporter.store.sqlite import Batch, Store, state_file
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


class GatedStore(Store):
    """A store whose transactions wait at a gate the test opens (or that fail, when told)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.fail: Exception | None = None
        self.committing_threads: set[int] = set()

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        self.committing_threads.add(threading.get_ident())
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise AssertionError("the gate was never opened: the event loop was blocked")
        with super().batch() as batch:
            yield batch
            if self.fail is not None:
                raise self.fail


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[GatedStore]:
    with GatedStore.open(state_file(tmp_path)) as opened:
        yield cast(GatedStore, opened)


def _steps_total(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for family in registry.collect()
        if family.name == "twilio_studio_steps"
        for sample in family.samples
        if sample.name == "twilio_studio_steps_total"
    )


def _gated_poller(gated: GatedStore, registry: CollectorRegistry) -> Poller:
    return Poller(
        cast(StudioApi, FlowsOnlyApi()),
        gated,
        StudioMetrics(registry),
        ExporterMetrics(CollectorRegistry()),
        account_sid=ACCOUNT_SID,
    )


async def _opened_by_the_loop(gated: GatedStore) -> None:
    """Open the gate from the event loop once a commit waits at it."""
    while not gated.entered.is_set():
        await asyncio.sleep(0.005)
    gated.gate.set()


def test_the_commit_leaves_the_event_loop_free(gated: GatedStore) -> None:
    """The transaction runs in a worker thread: the loop goes on (here, it opens the gate the
    commit waits at; a commit on the loop's thread would wait for ever)."""
    registry = CollectorRegistry()
    poller = _gated_poller(gated, registry)

    async def scenario() -> None:
        await asyncio.gather(
            poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [S1, S2]),
            _opened_by_the_loop(gated),
        )

    asyncio.run(scenario())
    assert threading.get_ident() not in gated.committing_threads
    assert _steps_total(registry) == 2
    assert gated.is_known(EXECUTION_SID)
    assert gated.count_pending_spans() > 0


def test_a_failed_commit_takes_back_its_metrics(gated: GatedStore) -> None:
    registry = CollectorRegistry()
    poller = _gated_poller(gated, registry)
    gated.gate.set()
    gated.fail = StateError("disk full")
    with pytest.raises(StateError, match="disk full"):
        asyncio.run(poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [S1, S2]))
    assert _steps_total(registry) == 0
    assert not gated.is_known(EXECUTION_SID)
    gated.fail = None  # the retry counts each step once
    asyncio.run(poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [S1, S2]))
    assert _steps_total(registry) == 2


@pytest.mark.parametrize("fails", [False, True], ids=["commits", "fails"])
def test_a_cancelled_apply_waits_for_its_commit(gated: GatedStore, fails: bool) -> None:
    """Cancelled while its transaction runs: the cancellation is raised once the transaction
    is over, and the metrics match what it did (kept if it committed, taken back if not)."""
    registry = CollectorRegistry()
    poller = _gated_poller(gated, registry)
    gated.fail = StateError("disk full") if fails else None

    async def scenario() -> None:
        apply = asyncio.create_task(poller.recorder.apply_pushed(FLOW_SID, EXECUTION, [S1, S2]))
        while not gated.entered.is_set():
            await asyncio.sleep(0.005)
        apply.cancel()
        await asyncio.sleep(0.05)
        assert not apply.done()  # held until the transaction is over
        gated.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await apply

    asyncio.run(scenario())
    assert _steps_total(registry) == (0 if fails else 2)
    assert gated.is_known(EXECUTION_SID) is not fails
