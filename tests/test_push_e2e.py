"""Push and hybrid modes end to end: the simulator's signed webhooks → exporter → truth."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.simulator import DeliveryOptions, FakeClock, Simulator, SimulatorConfig
from tests.otlp_receiver import OtlpReceiver, running_receiver
from tests.truthcheck import (
    expected_span_count,
    metric_mismatches,
    samples,
    widget_type_mismatches,
)

pytestmark = pytest.mark.integration

START = datetime(2026, 5, 4, 8, 0, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as running:
        yield running


class Running:
    """An exporter running its mode's loops on a thread of its own, as `studio-exporter run`."""

    def __init__(self, exporter: Exporter) -> None:
        self.exporter = exporter
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            try:
                await self.exporter.run(self.stop_event)
            finally:
                await self.exporter.api.aclose()

        self.loop.run_until_complete(main())

    def start(self) -> None:
        self.exporter.start()
        self.thread.start()

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=30)
        self.loop.close()
        self.exporter.close()


def make_exporter(
    sim: Simulator,
    clock: FakeClock,
    state_dir: Path,
    receiver: OtlpReceiver,
    mode: str,
    idle_recheck: float = 3.0,
) -> Exporter:
    config = config_from_mapping(
        {
            "twilio_base_url": sim.url,
            "state_dir": str(state_dir),
            "listen_address": "127.0.0.1:0",
            "mode": mode,
            "poll_interval": "2s",
            "lookback": "1d",
        },
        {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
    )
    env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint}
    exporter = build_exporter(config, env=env, clock=clock)
    assert exporter.push is not None
    exporter.push.reorder_window = 1.0  # seconds before a missing predecessor is read over REST
    # Seconds without events before an execution is re-read (a lost execution.ended).
    exporter.push.idle_recheck = idle_recheck
    return exporter


def wait_until_equal(exporter: Exporter, sim: Simulator, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    problems = ["not compared yet"]
    while time.monotonic() < deadline:
        problems = metric_mismatches(exporter.registry, sim.truth())
        if not problems and exporter.store.count_pending_events() == 0:
            return []
        time.sleep(0.5)
    return problems


def run_scenario(
    tmp_path: Path,
    receiver: OtlpReceiver,
    mode: str,
    options: DeliveryOptions,
    *,
    replay_history: bool = False,
    omit_null_parent: bool = False,
) -> tuple[Exporter, Simulator, dict[str, Any], list[str]]:
    """Live traffic pushed as it happens, or (``replay_history``) a finished history pushed
    at once: every execution then has ended, which is when push alone must be complete."""
    clock = FakeClock(START)
    if replay_history:
        config = SimulatorConfig(
            seed=9, history_executions=200, history_days=0.05, rate=0, clock=clock
        )
    else:
        config = SimulatorConfig(seed=8, history_executions=0, rate=0.2, speed=30, clock=clock)
    with Simulator(config) as sim:
        # Nothing is lost unless events are dropped: no re-read of a silent execution then.
        idle_recheck = 3.0 if options.drop else 3600.0
        exporter = make_exporter(sim, clock, tmp_path, receiver, mode, idle_recheck)
        running = Running(exporter)
        running.start()
        try:
            assert exporter.web is not None
            pusher = sim.push_events_to(
                f"{exporter.web.url}{exporter.config.webhook_path}",
                options,
                interval=0.05,
                since=START - timedelta(days=1) if replay_history else None,
                omit_null_parent=omit_null_parent,
            )
            for _ in range(40):  # 40 simulated minutes, a little faster than real time
                clock.advance(60)
                time.sleep(0.1)
            pusher.stop()
            problems = wait_until_equal(exporter, sim, timeout=60)
            truth = sim.truth()
            assert exporter.shipper.flush()
        finally:
            running.stop()
        report = pusher.sender.report
    return exporter, sim, {"truth": truth, "sent": report}, problems


#: Requests about flows or the account, not executions: once per flow (and revision) and per
#: account refresh (the account's name for twilio_studio_account_info), not per execution.
FLOW_OPERATIONS = frozenset({"ListFlow", "FetchFlow", "FetchAccount", "ListAccount"})


@pytest.mark.parametrize(
    ("mode", "options", "replay_history"),
    [
        pytest.param("push", DeliveryOptions(seed=1), False, id="push-live"),
        pytest.param(
            "push",
            DeliveryOptions(seed=2, duplicates=0.2, reorder=8),
            False,
            id="push-live-duplicated-reordered",
        ),
        pytest.param(
            "push",
            DeliveryOptions(seed=5, duplicates=0.2, reorder=8),
            True,
            id="push-ended-duplicated-reordered",
        ),
        pytest.param(
            "hybrid",
            DeliveryOptions(seed=3, duplicates=0.2, reorder=8, drop=0.05),
            False,
            id="hybrid-live-duplicated-reordered-dropped",
        ),
    ],
)
def test_push_equals_truth_and_each_span_arrives_once(
    tmp_path: Path,
    receiver: OtlpReceiver,
    mode: str,
    options: DeliveryOptions,
    replay_history: bool,
) -> None:
    """Every step once, every span once, metrics equal to the truth.

    Event Streams delivers at least once, duplicated and out of order, which push alone
    handles. Lost events (``drop``) are outside that contract (step logs are best-effort): a
    lost event is filled by the REST read at the execution's end, after ``idle_recheck`` of
    silence, or by hybrid mode's sweep; see the README for the one case a hole can mislead.
    """
    exporter, _, result, problems = run_scenario(
        tmp_path, receiver, mode, options, replay_history=replay_history
    )
    truth = result["truth"]
    assert sum(f["executions_started"] for f in truth["flows"].values()) > 50
    assert problems == []
    spans = receiver.wait_for_spans(expected_span_count(truth), timeout=30)
    ids = [(span.trace_id, span.span_id) for span in spans]
    assert len(ids) == expected_span_count(truth)
    assert len(set(ids)) == len(ids), "a span arrived twice"
    received = {
        labels["result"]: value
        for labels, value in samples(
            exporter.registry, "twilio_studio_exporter_events_received_total"
        )
        if labels["type"] != "other"
    }
    assert received.get("accepted", 0) > 0
    if options.duplicates:
        assert received.get("duplicate", 0) > 0, received
    # Twilio's events carry no widget type: each comes from the flow definition, and the
    # end-of-execution REST read found no field where a pushed step differed.
    assert widget_type_mismatches(exporter.registry, truth) == []
    assert all(
        value == 0
        for _, value in samples(
            exporter.registry, "twilio_studio_exporter_event_rest_disagreements_total"
        )
    )
    if mode == "push":
        assert_at_most_one_rest_request_per_execution(exporter, truth)


def assert_at_most_one_rest_request_per_execution(
    exporter: Exporter, truth: dict[str, Any]
) -> None:
    """Push reads an execution over REST once, at its end (no hole in these deliveries)."""
    executions = sum(f["executions_started"] for f in truth["flows"].values())
    by_operation = truth["requests"]["by_operation"]
    per_execution = sum(
        count for operation, count in by_operation.items() if operation not in FLOW_OPERATIONS
    )
    assert per_execution <= executions, by_operation
    reasons = {
        labels["reason"]: value
        for labels, value in samples(
            exporter.registry, "twilio_studio_exporter_push_rest_reads_total"
        )
        if value
    }
    assert set(reasons) <= {"end_list"}, reasons
    ended = sum(f["executions_ended"] for f in truth["flows"].values())
    assert reasons.get("end_list", 0) == ended


@pytest.mark.parametrize(
    "omit_null_parent",
    [pytest.param(False, id="parent-null"), pytest.param(True, id="parent-key-omitted")],
)
def test_documented_payloads_cost_one_rest_read_per_execution(
    tmp_path: Path, receiver: OtlpReceiver, omit_null_parent: bool
) -> None:
    """The acceptance case: documented shapes, duplicated and reordered, for executions whose
    steps the API also serves; metrics and spans equal the API's truth, REST once each."""
    exporter, _, result, problems = run_scenario(
        tmp_path,
        receiver,
        "push",
        DeliveryOptions(seed=6, duplicates=0.3, reorder=8),
        replay_history=True,
        omit_null_parent=omit_null_parent,
    )
    truth = result["truth"]
    assert problems == []
    spans = receiver.wait_for_spans(expected_span_count(truth), timeout=30)
    assert len({(span.trace_id, span.span_id) for span in spans}) == len(spans)
    assert len(spans) == expected_span_count(truth)
    assert widget_type_mismatches(exporter.registry, truth) == []
    assert_at_most_one_rest_request_per_execution(exporter, truth)


def test_push_reads_far_less_than_polling(tmp_path: Path, receiver: OtlpReceiver) -> None:
    _, _, result, problems = run_scenario(tmp_path, receiver, "push", DeliveryOptions(seed=4))
    assert problems == []
    steps_reads = result["truth"]["requests"]["by_operation"].get("ListExecutionStep", 0)
    executions = sum(f["executions_started"] for f in result["truth"]["flows"].values())
    # Polling reads each execution's steps at least once; push only where an event lacked
    # something (an execution's end is read once to be sure nothing was lost).
    assert steps_reads <= executions
