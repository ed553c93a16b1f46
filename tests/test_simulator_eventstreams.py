"""Tests for simulator.eventstreams: the simulator's traffic as signed Event Streams webhooks."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.core.eventstreams import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    STEP_ENDED,
    decode_event,
    step_event,
)
from studio_exporter.core.sids import STEP_SID, is_sid
from studio_exporter.simulator import FakeClock, Simulator, SimulatorConfig
from studio_exporter.simulator.clock import epoch_seconds
from studio_exporter.simulator.eventstreams import (
    DeliveryOptions,
    EventFeed,
    EventStreamSender,
)
from studio_exporter.sources.push import DEFAULT_WEBHOOK_PATH, WebhookReceiver
from studio_exporter.store.sqlite import Store, state_file
from studio_exporter.web.server import HookResponse, Readiness, WebServer
from tests.twilio_examples import (
    ENVELOPE_KEYS,
    EXECUTION_DATA_KEYS,
    EXECUTION_ENDED_EXAMPLE,
    EXECUTION_REQUIRED_DATA_KEYS,
    STEP_DATA_KEYS,
    STEP_ENDED_EXAMPLE,
)

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EVENT_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def simulator() -> Simulator:
    clock = FakeClock(START)
    return Simulator(
        SimulatorConfig(seed=3, history_executions=5, rate=3.0, speed=20.0, clock=clock)
    )


def advance(simulator: Simulator, seconds: float) -> float:
    clock = simulator.config.clock
    assert isinstance(clock, FakeClock)
    return epoch_seconds(clock.advance(seconds))


def test_feed_emits_each_event_once_in_order_and_never_history(simulator: Simulator) -> None:
    start = epoch_seconds(START)
    feed = EventFeed(simulator.traffic, simulator.renderer, since=start)
    events = feed.due(advance(simulator, 20)) + feed.due(advance(simulator, 60))
    ids = [event["id"] for event in events]
    assert len(ids) == len(set(ids))
    assert feed.due(advance(simulator, 0)) == []
    history = {r.sid for r in simulator.traffic.existing(start) if r.created < start}
    by_execution: dict[str, list[str]] = {}
    for event in events:
        data = event["data"]
        assert data["execution_sid"] not in history
        by_execution.setdefault(data["execution_sid"], []).append(event["type"])
    assert by_execution
    for types in by_execution.values():
        assert types[0] == EXECUTION_STARTED
        assert set(types[1:-1]) <= {STEP_ENDED}
    ended = [types for types in by_execution.values() if types[-1] == EXECUTION_ENDED]
    assert ended
    step = next(event for event in events if event["type"] == STEP_ENDED)
    pushed = step_event(decode_event(json.dumps(step).encode()))
    assert pushed.missing == ()


@pytest.mark.parametrize(
    "omit_null_parent",
    [pytest.param(False, id="null-parent"), pytest.param(True, id="parent-key-omitted")],
)
def test_feed_sends_exactly_the_documented_shapes(
    simulator: Simulator, omit_null_parent: bool
) -> None:
    feed = EventFeed(
        simulator.traffic,
        simulator.renderer,
        since=epoch_seconds(START),
        omit_null_parent=omit_null_parent,
    )
    events = feed.due(advance(simulator, 60))
    kinds = {event["type"] for event in events}
    assert kinds == {EXECUTION_STARTED, STEP_ENDED, EXECUTION_ENDED}
    for event in events:
        assert set(event) == ENVELOPE_KEYS  # no "time"
        data = event["data"]
        times = [data["date_created"], *([data["date_updated"]] if "date_updated" in data else [])]
        assert all(EVENT_TIME.fullmatch(value) for value in times), times
        if event["type"] == STEP_ENDED:
            assert event["dataschema"] == STEP_ENDED_EXAMPLE["dataschema"]
            # step_sid; no sid, no type, no context; parent_step_sid null or, if asked, absent.
            assert set(data) | {"parent_step_sid"} == STEP_DATA_KEYS
            assert is_sid(data["step_sid"], STEP_SID)
        else:
            assert event["dataschema"] == EXECUTION_ENDED_EXAMPLE["dataschema"]
            assert EXECUTION_REQUIRED_DATA_KEYS <= set(data) <= EXECUTION_DATA_KEYS
            assert type(data["flow_revision"]) is int
            assert data["status"] == ("ended" if event["type"] == EXECUTION_ENDED else "active")
    steps = [event["data"] for event in events if event["type"] == STEP_ENDED]
    assert any(data.get("parent_step_sid") for data in steps)  # subflow steps keep theirs
    top = [data for data in steps if not data.get("parent_step_sid")]
    assert all(("parent_step_sid" in data) is not omit_null_parent for data in top)


class Recorder:
    """A receiver behind a hook that answers 429 to the first ``refuse`` deliveries."""

    def __init__(self, receiver: WebhookReceiver, refuse: int) -> None:
        self.receiver = receiver
        self.refuse = refuse
        self.statuses: list[int] = []

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        if self.refuse > 0:
            self.refuse -= 1
            response = HookResponse(429)
        else:
            response = self.receiver(url, headers, body)
        self.statuses.append(response.status)
        return response


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(state_file(tmp_path)) as opened:
        yield opened


def test_sender_signs_batches_retries_429_and_duplicates_are_deduplicated(
    simulator: Simulator, store: Store
) -> None:
    feed = EventFeed(simulator.traffic, simulator.renderer, since=epoch_seconds(START))
    events = feed.due(advance(simulator, 10))
    registry = CollectorRegistry()
    recorder = Recorder(WebhookReceiver(store, simulator.auth_token, metrics=registry), refuse=2)
    server = WebServer(
        "127.0.0.1",
        0,
        CollectorRegistry(),
        lambda: Readiness(True, {}),
        post_hooks={DEFAULT_WEBHOOK_PATH: recorder},
    )
    server.start()
    options = DeliveryOptions(batch_size=7, duplicates=0.3, reorder=5, seed=1)
    sender = EventStreamSender(
        server.url + DEFAULT_WEBHOOK_PATH, simulator.auth_token, options, sleep=lambda _: None
    )
    try:
        sender.send(events)
        report = sender.flush()
    finally:
        sender.close()
        server.stop()
    assert recorder.statuses[:2] == [429, 429]
    assert set(recorder.statuses[2:]) == {200}
    assert report.retries == 2
    assert report.failed_batches == 0
    assert report.duplicated > 0
    assert store.count_pending_events() == len({event["id"] for event in events})
    duplicates = sum(
        registry.get_sample_value(
            "twilio_studio_exporter_events_received_total", {"type": kind, "result": "duplicate"}
        )
        or 0.0
        for kind in (EXECUTION_STARTED, STEP_ENDED, EXECUTION_ENDED)
    )
    assert duplicates == report.duplicated


def send_recorded(events: list[dict[str, object]], options: DeliveryOptions) -> list[list[str]]:
    """The event ids of each batch the sender posts, answered 200 by an in-memory transport."""
    batches: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        batches.append([event["id"] for event in json.loads(request.content)])
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(answer))
    sender = EventStreamSender("http://127.0.0.1:9/hook", "token", options, client=client)
    sender.send(events)
    sender.close()
    return batches


def test_reordering_and_drops_are_deterministic_for_a_seed(simulator: Simulator) -> None:
    feed = EventFeed(simulator.traffic, simulator.renderer, since=epoch_seconds(START))
    events = feed.due(advance(simulator, 10))
    options = DeliveryOptions(batch_size=10_000, drop=0.2, reorder=4, seed=7)
    first, second = send_recorded(events, options), send_recorded(events, options)
    assert first == second
    sent = first[0]
    assert 0 < len(sent) < len(events)
    assert sent != [event["id"] for event in events if event["id"] in set(sent)]
    in_order = send_recorded(events, DeliveryOptions(batch_size=10_000))
    assert in_order == [[event["id"] for event in events]]
