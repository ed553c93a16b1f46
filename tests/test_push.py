"""Tests for push: the webhook receiver over real HTTP, and the processor feeding the recorder."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.core.domain import Execution, Flow, Step, Widget
from studio_exporter.core.eventstreams import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    STEP_ENDED,
    sign_request,
)
from studio_exporter.sinks.selfmetrics import ExporterMetrics, PushMetrics
from studio_exporter.sources.push import DEFAULT_WEBHOOK_PATH, PushProcessor, WebhookReceiver
from studio_exporter.store.protocols import StateError
from studio_exporter.store.sqlite import Store, state_file
from studio_exporter.web.server import HookResponse, PostHook, Readiness, WebServer
from tests.factories import ACCOUNT_SID, EXECUTION_SID, FLOW_SID, make_step, survey

TOKEN = "0badc0de" * 4
WINDOW = 30.0


# -- event factories --------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def step_event(
    step: Step, event_id: str | None = None, *, drop: Sequence[str] = ()
) -> dict[str, Any]:
    """A step.ended event in Twilio's documented shape: ``step_sid``, no ``sid``, no ``type``."""
    data: dict[str, Any] = {
        "account_sid": ACCOUNT_SID,
        "date_created": _iso(step.date_created),
        "execution_sid": step.execution_sid,
        "flow_sid": step.flow_sid,
        "name": step.event,
        "parent_step_sid": step.parent_step_sid,
        "step_sid": step.sid,
        "transitioned_from": step.transitioned_from,
        "transitioned_to": step.transitioned_to,
    }
    for name in drop:
        del data[name]
    return _cloud(STEP_ENDED, data, event_id or f"EV-{step.sid}")


def execution_event(execution: Execution, *, ended: bool = False) -> dict[str, Any]:
    data = {
        "execution_sid": execution.sid,
        "account_sid": ACCOUNT_SID,
        "flow_sid": execution.flow_sid,
        "contact_channel_address": "+15555550100",
        "status": "ended" if ended else "active",
        "date_created": _iso(execution.date_created),
        "started_by": "CA" + "0" * 32,
        "flow_revision": 1,
    }
    kind = EXECUTION_ENDED if ended else EXECUTION_STARTED
    return _cloud(kind, data, f"EV-{'end' if ended else 'start'}-{execution.sid}")


def _cloud(event_type: str, data: dict[str, Any], event_id: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": "/v2/Flows",
        "id": event_id,
        "datacontenttype": "application/json",
        "data": data,
    }


EXECUTION, (S1, S2, S3), FLOW = survey()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(state_file(tmp_path)) as opened:
        yield opened


# -- receiver over real HTTP ------------------------------------------------------------------


class Endpoint:
    """A real WebServer on 127.0.0.1 whose webhook path calls ``hook`` (set per test)."""

    def __init__(self) -> None:
        self.hook: PostHook | None = None
        self.server = WebServer(
            "127.0.0.1",
            0,
            CollectorRegistry(),
            lambda: Readiness(True, {}),
            post_hooks={DEFAULT_WEBHOOK_PATH: self._call},
        )
        self.server.start()
        self.url = self.server.url + DEFAULT_WEBHOOK_PATH

    def _call(self, url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        assert self.hook is not None
        return self.hook(url, headers, body)

    def post(
        self,
        body: bytes,
        *,
        sign_for: str | None = None,
        signature: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        request_url, computed = sign_request(TOKEN, sign_for or self.url, body)
        sent = {"Content-Type": "application/json", **(headers or {})}
        if signature != "":
            sent["X-Twilio-Signature"] = computed if signature is None else signature
        target = self.url + request_url[len(sign_for or self.url) :]
        return httpx.post(target, content=body, headers=sent, timeout=5)


def make_receiver(store: Store, **options: Any) -> tuple[WebhookReceiver, CollectorRegistry]:
    registry = CollectorRegistry()
    return WebhookReceiver(store, TOKEN, metrics=registry, **options), registry


@pytest.fixture(scope="module")
def server() -> Iterator[Endpoint]:
    served = Endpoint()
    yield served
    served.server.stop()


@pytest.fixture
def endpoint(server: Endpoint, store: Store) -> tuple[Endpoint, CollectorRegistry]:
    receiver, registry = make_receiver(store)
    server.hook = receiver
    return server, registry


def received(registry: CollectorRegistry, event_type: str, result: str) -> float:
    value = registry.get_sample_value(
        "twilio_studio_exporter_events_received_total", {"type": event_type, "result": result}
    )
    return value or 0.0


def batch(*events: dict[str, Any]) -> bytes:
    return json.dumps(list(events)).encode()


def test_signed_batch_is_stored_and_acknowledged(
    endpoint: tuple[Endpoint, CollectorRegistry], store: Store
) -> None:
    served, registry = endpoint
    response = served.post(batch(execution_event(EXECUTION), step_event(S1), step_event(S2)))
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicate": 0, "ignored": 0, "rejected": 0}
    assert [row.event_id for row in store.next_events(10)] == [
        f"EV-start-{EXECUTION_SID}",
        f"EV-{S1.sid}",
        f"EV-{S2.sid}",
    ]
    assert received(registry, STEP_ENDED, "accepted") == 2
    assert received(registry, EXECUTION_STARTED, "accepted") == 1


@pytest.mark.parametrize(
    ("signature", "headers"),
    [
        pytest.param("", {}, id="missing"),
        pytest.param("hPXmLwIy3Fgqv1i9KPmH/HhQ6zo=", {}, id="wrong"),
    ],
)
def test_bad_signature_is_403_and_nothing_is_stored(
    endpoint: tuple[Endpoint, CollectorRegistry],
    store: Store,
    signature: str,
    headers: dict[str, str],
) -> None:
    served, _ = endpoint
    response = served.post(batch(step_event(S1)), signature=signature, headers=headers)
    assert response.status_code == 403
    assert store.count_pending_events() == 0


def test_signature_is_checked_before_the_body_is_read(
    endpoint: tuple[Endpoint, CollectorRegistry],
) -> None:
    served, _ = endpoint
    assert served.post(b"{not json", signature="").status_code == 403
    assert served.post(b"{not json").status_code == 400


def test_replayed_delivery_with_a_changed_byte_is_403(
    endpoint: tuple[Endpoint, CollectorRegistry], store: Store
) -> None:
    served, _ = endpoint
    body = batch(step_event(S1))
    request_url, signature = sign_request(TOKEN, served.url, body)
    tampered = body.replace(b"incomingMessage", b"incomingMessagf")
    response = httpx.post(
        request_url, content=tampered, headers={"X-Twilio-Signature": signature}, timeout=5
    )
    assert response.status_code == 403
    assert store.count_pending_events() == 0


def test_redelivery_is_deduplicated(
    endpoint: tuple[Endpoint, CollectorRegistry], store: Store
) -> None:
    served, registry = endpoint
    body = batch(step_event(S1), step_event(S2))
    assert served.post(body).status_code == 200
    response = served.post(batch(step_event(S2), step_event(S3)))
    assert response.json()["accepted"] == 1
    assert response.json()["duplicate"] == 1
    assert store.count_pending_events() == 3
    assert received(registry, STEP_ENDED, "duplicate") == 1


def test_other_types_are_acknowledged_counted_and_not_stored(
    endpoint: tuple[Endpoint, CollectorRegistry], store: Store
) -> None:
    served, registry = endpoint
    other = _cloud("com.twilio.messaging.message.sent", {}, "EV-sms")
    response = served.post(batch(other, step_event(S1), {"type": STEP_ENDED}))
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicate": 0, "ignored": 1, "rejected": 1}
    assert store.count_pending_events() == 1
    assert received(registry, "other", "ignored") == 1
    assert received(registry, "unknown", "rejected") == 1


def test_full_inbox_answers_429_and_stores_nothing(server: Endpoint, tmp_path: Path) -> None:
    with Store.open(state_file(tmp_path), max_pending_events=2) as small:
        server.hook, _ = make_receiver(small)
        assert server.post(batch(step_event(S1))).status_code == 200
        response = server.post(batch(step_event(S2), step_event(S3)))
        assert response.status_code == 429
        assert small.count_pending_events() == 1


def test_a_failing_database_answers_503_and_keeps_nothing(server: Endpoint, tmp_path: Path) -> None:
    """The driver's own error (here SQLite aborting the insert) is a 503, never a 500."""
    path = state_file(tmp_path)
    with Store.open(path) as failing:
        with contextlib.closing(sqlite3.connect(path)) as other, other:
            other.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON event_inbox "
                "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
            )
        server.hook, registry = make_receiver(failing)
        response = server.post(batch(step_event(S1)))
        assert response.status_code == 503
        assert response.json() == {"error": "state store unavailable"}
        assert failing.count_pending_events() == 0
        assert received(registry, STEP_ENDED, "accepted") == 0


def test_accepted_events_are_committed_before_the_answer(server: Endpoint, store: Store) -> None:
    receiver, _ = make_receiver(store)
    committed_at_answer: list[int] = []

    def hook(url: str, headers: Any, body: bytes) -> HookResponse:
        response = receiver(url, headers, body)
        # Another connection sees only what is committed to the file.
        with sqlite3.connect(store.path) as other:
            committed_at_answer.append(
                other.execute("SELECT COUNT(*) FROM event_inbox").fetchone()[0]
            )
        return response

    server.hook = hook
    assert server.post(batch(step_event(S1), step_event(S2))).status_code == 200
    assert committed_at_answer == [2]


def test_public_url_is_what_the_signature_covers(server: Endpoint, store: Store) -> None:
    public = "https://studio-exporter.example.com/hooks/twilio"
    server.hook, _ = make_receiver(store, public_url=public)
    assert server.post(batch(step_event(S1)), sign_for=public).status_code == 200
    assert server.post(batch(step_event(S2))).status_code == 403


def test_basic_auth(server: Endpoint, store: Store) -> None:
    server.hook, _ = make_receiver(store, basic_auth=("twilio", "s3cret"))
    body = batch(step_event(S1))
    good = "Basic " + base64.b64encode(b"twilio:s3cret").decode()
    wrong = "Basic " + base64.b64encode(b"twilio:nope").decode()
    assert server.post(body).status_code == 401
    assert server.post(body, headers={"Authorization": wrong}).status_code == 401
    assert server.post(body, headers={"Authorization": good}).status_code == 200


def test_accepted_delivery_wakes_the_processor(server: Endpoint, store: Store) -> None:
    woken: list[bool] = []
    server.hook, _ = make_receiver(store, on_accepted=lambda: woken.append(True))
    server.post(batch(step_event(S1)))
    server.post(batch(step_event(S1)))  # a duplicate brings nothing new
    assert woken == [True]


# -- processor ----------------------------------------------------------------------------


class FakeTarget:
    """Stands in for the recorder: records each apply and commits marks like the real one."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[tuple[str, Execution, list[str]]] = []
        self.applied_steps: dict[str, Step] = {}
        self.fail: Exception | None = None
        self.flows = {FLOW.sid: FLOW}
        self.definition_reads: list[tuple[str, int | None]] = []

    async def flow_definition(self, flow_sid: str, revision: int | None = None) -> Flow:
        self.definition_reads.append((flow_sid, revision))
        # A flow this test did not define: one without widgets, as a definition can be.
        return self.flows.get(flow_sid) or Flow(flow_sid, ACCOUNT_SID, flow_sid, "published", 1)

    async def apply_pushed(
        self,
        flow_sid: str,
        execution: Execution,
        steps: Sequence[Step],
        *,
        refresh_gauges: bool = True,
    ) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append((flow_sid, execution, [step.sid for step in steps]))
        for step in steps:  # as first exported: the real recorder exports a step once
            self.applied_steps.setdefault(step.sid, step)
        done = execution.is_ended and any(step.transitioned_to == "Ended" for step in steps)
        with self.store.batch() as commit:
            commit.upsert_execution(execution, done=done)
            commit.mark_steps_exported(execution.sid, [step.sid for step in steps])

    async def apply_pushed_many(
        self,
        flow_sid: str,
        executions: Sequence[tuple[Execution, Sequence[Step]]],
        *,
        refresh_gauges: bool = True,
    ) -> None:
        for execution, steps in executions:
            await self.apply_pushed(flow_sid, execution, steps, refresh_gauges=refresh_gauges)


class FakeApi:
    """Studio's REST view of the execution: what list_steps and fetch_step return."""

    def __init__(self, steps: Sequence[Step] = ()) -> None:
        self.steps = {step.sid: step for step in steps}
        self.calls: list[str] = []

    async def fetch_step(self, flow_sid: str, execution_sid: str, step_sid: str) -> Step:
        self.calls.append(f"fetch_step {step_sid}")
        return self.steps[step_sid]

    async def list_steps(self, flow_sid: str, execution_sid: str) -> list[Step]:
        self.calls.append("list_steps")
        return sorted(self.steps.values(), key=lambda step: step.date_created, reverse=True)

    async def fetch_execution(self, flow_sid: str, execution_sid: str) -> Execution:
        self.calls.append("fetch_execution")
        return EXECUTION


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self, store: Store, rest: Sequence[Step] = ()) -> None:
        self.store = store
        self.target = FakeTarget(store)
        self.api = FakeApi(rest)
        self.clock = Clock()
        self.registry = CollectorRegistry()
        self.processor = self.new_processor()

    def new_processor(self) -> PushProcessor:
        self.processor_registry = CollectorRegistry()
        return PushProcessor(
            self.store,
            self.api,
            self.target,
            registry=self.processor_registry,
            monotonic=self.clock,
        )

    def deliver(self, *events: dict[str, Any]) -> None:
        self.store.enqueue_events([(event["id"], json.dumps(event).encode()) for event in events])

    def process(self) -> None:
        asyncio.run(self.processor.process_once())

    @property
    def applied(self) -> list[list[str]]:
        return [sids for _, _, sids in self.target.calls]


def test_in_order_events_are_applied_and_acknowledged(store: Store) -> None:
    rig = Rig(store)
    rig.deliver(execution_event(EXECUTION), step_event(S1), step_event(S2))
    rig.process()
    assert rig.applied == [[S1.sid, S2.sid]]
    flow_sid, execution, _ = rig.target.calls[0]
    assert flow_sid == FLOW_SID
    assert execution.date_created == EXECUTION.date_created
    assert store.count_pending_events() == 0
    assert rig.api.calls == []  # complete events in order cost no REST request


def test_a_step_waits_for_its_predecessor(store: Store) -> None:
    rig = Rig(store)
    rig.deliver(execution_event(EXECUTION), step_event(S2))
    rig.process()
    assert rig.applied == [[]]  # the start is exported; S2 waits for the step into "ask"
    assert [row.event_id for row in store.next_events(10)] == [f"EV-{S2.sid}"]
    rig.clock.now += 5
    rig.deliver(step_event(S1))
    rig.process()
    assert rig.applied[-1] == [S1.sid, S2.sid]
    assert store.count_pending_events() == 0


def test_a_waiting_step_is_completed_from_rest_after_the_window(store: Store) -> None:
    rig = Rig(store, rest=[S1, S2])
    rig.deliver(execution_event(EXECUTION), step_event(S2))
    rig.process()
    rig.clock.now += WINDOW - 1
    rig.process()
    assert rig.api.calls == []
    rig.clock.now += 1
    rig.process()
    assert rig.api.calls == ["list_steps"]
    assert rig.applied[-1] == [S1.sid, S2.sid]
    assert store.count_pending_events() == 0


def test_a_step_whose_predecessor_is_lost_is_applied_after_the_window(store: Store) -> None:
    rig = Rig(store, rest=[S2])  # Studio lost S1 too: a real gap
    rig.deliver(execution_event(EXECUTION), step_event(S2))
    rig.process()
    rig.clock.now += WINDOW
    rig.process()
    assert rig.applied[-1] == [S2.sid]
    assert store.count_pending_events() == 0


def test_a_step_event_missing_fields_is_completed_with_a_fetch(store: Store) -> None:
    rig = Rig(store, rest=[S1])
    rig.deliver(execution_event(EXECUTION), step_event(S1, drop=("name",)))
    rig.process()
    assert rig.api.calls == [f"fetch_step {S1.sid}"]
    assert rig.applied == [[S1.sid]]
    assert rig.target.applied_steps[S1.sid].event == S1.event


def test_widget_types_come_from_the_flow_definition(store: Store) -> None:
    rig = Rig(store)
    rig.deliver(execution_event(EXECUTION), step_event(S1), step_event(S2))
    rig.process()
    assert rig.api.calls == []
    assert {sid: step.widget_type for sid, step in rig.target.applied_steps.items()} == {
        S1.sid: "trigger",
        S2.sid: "send-and-wait-for-reply",
    }
    # The execution event's flow_revision is what the definition is asked for.
    assert (FLOW_SID, 1) in rig.target.definition_reads


def test_a_subflow_step_is_typed_by_its_own_flow(store: Store) -> None:
    sub_flow = Flow(
        sid="FW" + "b" * 32,
        account_sid=ACCOUNT_SID,
        name="Sub",
        status="published",
        revision=4,
        widgets=(Widget("Trigger", "trigger"), Widget("check", "run-function")),
    )
    run = make_step("ask", "sub", 5, number=2)
    inner = make_step(
        "check", "Ended", 6, number=10, parent_step_sid=run.sid, flow_sid=sub_flow.sid
    )
    first = make_step(
        "Trigger", "check", 5, number=9, parent_step_sid=run.sid, flow_sid=sub_flow.sid
    )
    rig = Rig(store)
    rig.target.flows[sub_flow.sid] = sub_flow
    rig.deliver(execution_event(EXECUTION), *(step_event(s) for s in (S1, run, first, inner)))
    rig.process()
    assert rig.target.applied_steps[inner.sid].widget_type == "run-function"
    assert rig.target.applied_steps[first.sid].widget_type == "trigger"


def test_the_chain_starts_in_the_flows_initial_widget(store: Store) -> None:
    rig = Rig(store)
    rig.target.flows[FLOW_SID] = replace(
        FLOW, widgets=(Widget("Start", "trigger"), *FLOW.widgets[1:]), initial_widget="Start"
    )
    first = make_step("Start", "ask", 1, number=1)
    rig.deliver(execution_event(EXECUTION), step_event(first), step_event(S2))
    rig.process()
    assert rig.applied == [[first.sid, S2.sid]]  # nothing waited for a step out of "Trigger"
    assert rig.api.calls == []


@pytest.mark.parametrize(
    "late", [pytest.param(True, id="started-late"), pytest.param(False, id="started-lost")]
)
def test_an_execution_whose_started_event_is_late_or_lost_is_not_dropped(
    store: Store, late: bool
) -> None:
    rig = Rig(store, rest=[S1, S2])
    rig.deliver(step_event(S1), step_event(S2))
    rig.process()
    assert rig.applied == []  # the started event may still come: its time is needed
    rig.clock.now += WINDOW
    if late:
        rig.deliver(execution_event(EXECUTION))
    rig.process()
    assert rig.applied == [[S1.sid, S2.sid]]
    assert rig.api.calls == ([] if late else ["fetch_execution"])
    assert rig.target.calls[-1][1].date_created == EXECUTION.date_created
    assert store.count_pending_events() == 0


def test_ended_event_alone_gives_the_execution_without_rest(store: Store) -> None:
    rig = Rig(store, rest=[S1, S2, S3])
    rig.deliver(
        step_event(S1), step_event(S2), step_event(S3), execution_event(EXECUTION, ended=True)
    )
    rig.process()
    assert rig.api.calls == ["list_steps"]  # the completeness read, nothing else
    assert rig.applied == [[S1.sid, S2.sid, S3.sid]]
    assert store.is_done(EXECUTION_SID)


@pytest.mark.parametrize(
    "hold", [pytest.param(True, id="context-allowlist"), pytest.param(False, id="no-allowlist")]
)
def test_allowlisted_context_comes_from_the_end_read(store: Store, hold: bool) -> None:
    with_context = [
        replace(step, context={"flow": {"data": {"n": step.sid}}}) for step in (S1, S2, S3)
    ]
    rig = Rig(store, rest=with_context)
    rig.processor.hold_until_end = hold
    rig.deliver(execution_event(EXECUTION), step_event(S1), step_event(S2))
    rig.process()
    # Holding, nothing is exported before the end; otherwise the pushed steps go at once,
    # without context (Twilio's events carry none).
    assert rig.applied == ([[]] if hold else [[S1.sid, S2.sid]])
    rig.deliver(step_event(S3), execution_event(EXECUTION, ended=True))
    rig.process()
    assert rig.api.calls == ["list_steps"]
    contexts = {sid: step.context for sid, step in rig.target.applied_steps.items()}
    if hold:
        assert contexts == {step.sid: step.context for step in with_context}
    else:
        assert contexts[S1.sid] is None  # exported before the REST read: no context


def test_rest_wins_where_it_disagrees_and_it_is_counted(store: Store) -> None:
    rest_s2 = replace(S2, event="reply", widget_type="send-message")
    rig = Rig(store, rest=[S1, rest_s2, S3])
    rig.deliver(
        execution_event(EXECUTION),
        step_event(S1),
        step_event(S2),
        step_event(S3),
    )
    rig.process()
    assert rig.api.calls == ["list_steps"]
    applied = rig.target.applied_steps
    assert (applied[S2.sid].event, applied[S2.sid].widget_type) == ("reply", "send-message")
    # The pushed milliseconds are kept where REST has the same second.
    assert applied[S2.sid].date_created == S2.date_created

    def disagreements(field: str) -> float | None:
        return rig.processor_registry.get_sample_value(
            "twilio_studio_exporter_event_rest_disagreements_total", {"field": field}
        )

    assert disagreements("name") == 1
    assert disagreements("type") == 1
    assert disagreements("transitioned_to") == 0


def test_execution_ended_reads_the_step_list_once_and_finishes(store: Store) -> None:
    rig = Rig(store, rest=[S1, S2, S3])
    rig.deliver(execution_event(EXECUTION), step_event(S1))
    rig.process()
    # S2's and S3's events are lost; the ended event arrives.
    rig.deliver(execution_event(EXECUTION, ended=True))
    rig.process()
    assert rig.api.calls == ["list_steps"]
    assert rig.applied[-1] == [S1.sid, S2.sid, S3.sid]
    assert rig.target.calls[-1][1].is_ended
    assert store.is_done(EXECUTION_SID)
    assert store.count_pending_events() == 0
    # A late redelivery for a done execution is acknowledged without any work.
    rig.deliver(step_event(S3, "EV-late"))
    rig.process()
    assert len(rig.target.calls) == 2
    assert store.count_pending_events() == 0


def test_redelivered_applied_step_is_acknowledged_without_an_apply(store: Store) -> None:
    rig = Rig(store)
    rig.deliver(execution_event(EXECUTION), step_event(S1))
    rig.process()
    rig.deliver(step_event(S1, "EV-again"))
    rig.process()
    assert rig.applied == [[S1.sid]]
    assert store.count_pending_events() == 0


def test_nothing_is_acknowledged_when_the_apply_fails(store: Store) -> None:
    rig = Rig(store)
    rig.target.fail = StateError("disk full")
    rig.deliver(execution_event(EXECUTION), step_event(S1))
    rig.process()
    assert store.count_pending_events() == 2
    # A restart: a new processor replays the inbox.
    rig.target.fail = None
    rig.processor = rig.new_processor()
    rig.process()
    assert rig.applied == [[S1.sid]]
    assert store.count_pending_events() == 0


def run_passes(processor: PushProcessor, seconds: float) -> None:
    """``processor.run`` with a short idle wait, stopped after ``seconds``."""

    async def scenario() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await processor.run(stop, idle=timedelta(milliseconds=5))

    asyncio.run(scenario())


PUSH_FRESHNESS = "twilio_studio_exporter_last_successful_push_timestamp_seconds"


def test_every_account_counts_into_one_set_of_push_series(store: Store) -> None:
    """Each account has its own receiver and processor; /metrics has one set of series."""
    registry = CollectorRegistry()
    shared = PushMetrics(registry)
    rig = Rig(store)
    processors = [PushProcessor(store, rig.api, rig.target, metrics=shared) for _ in range(2)]
    assert all(processor.metrics is shared for processor in processors)
    for _ in range(2):
        receiver = WebhookReceiver(store, TOKEN, metrics=shared)
        assert receiver("http://exporter/webhooks", {}, b"[]").status == 403  # unsigned
    requests = "twilio_studio_exporter_webhook_requests_total"
    assert registry.get_sample_value(requests, {"code": "403"}) == 2


def test_a_pass_without_failure_moves_the_push_freshness_gauge_and_the_state(store: Store) -> None:
    """Push mode's own freshness signal: the Stalled alert reads it (there is no poll)."""
    rig = Rig(store)
    registry = CollectorRegistry()
    health = ExporterMetrics(registry, sources=("push",))
    ticks = iter(range(10_000))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    processor = PushProcessor(
        store,
        rig.api,
        rig.target,
        registry=CollectorRegistry(),
        health=health,
        clock=lambda: start + timedelta(seconds=next(ticks)),
        monotonic=rig.clock,
    )
    rig.deliver(execution_event(EXECUTION), step_event(S1))
    run_passes(processor, 0.2)
    assert rig.applied == [[S1.sid]]
    latest = registry.get_sample_value(PUSH_FRESHNESS)
    assert latest is not None
    assert latest > start.timestamp()  # several passes, each one later
    # Idle passes run every second: the state is written once per REMEMBER_SUCCESS_EVERY.
    assert store.last_success("push") == start
    rig.clock.now += 31
    run_passes(processor, 0.05)
    remembered = store.last_success("push")
    assert remembered is not None
    assert remembered > start


def test_a_failing_pass_leaves_the_push_freshness_gauge_alone(store: Store) -> None:
    rig = Rig(store)
    registry = CollectorRegistry()
    health = ExporterMetrics(registry, sources=("push",))
    processor = PushProcessor(
        store, rig.api, rig.target, registry=CollectorRegistry(), health=health
    )
    rig.target.fail = StateError("disk full")
    rig.deliver(execution_event(EXECUTION), step_event(S1))
    run_passes(processor, 0.05)
    assert rig.applied == []  # every pass failed or waited out the backoff
    assert registry.get_sample_value(PUSH_FRESHNESS) == 0
    assert store.last_success("push") is None


def test_after_a_restart_a_known_execution_is_read_once(store: Store) -> None:
    rig = Rig(store, rest=[S1])
    rig.deliver(execution_event(EXECUTION), step_event(S1))
    rig.process()
    rig.processor = rig.new_processor()  # S1 is applied, but the new process does not know it
    rig.deliver(step_event(S2))
    rig.process()
    assert rig.api.calls == ["list_steps"]
    assert rig.applied[-1] == [S1.sid, S2.sid]


def test_subflow_steps_wait_for_their_parent_step(store: Store) -> None:
    sub_flow = "FW" + "b" * 32
    run = make_step("ask", "sub", 5, number=2)
    inner = make_step("Trigger", "Ended", 6, number=10, parent_step_sid=run.sid, flow_sid=sub_flow)
    rig = Rig(store)
    rig.deliver(execution_event(EXECUTION), step_event(S1), step_event(inner))
    rig.process()
    assert rig.applied == [[S1.sid]]
    rig.deliver(step_event(run))
    rig.process()
    assert rig.applied[-1] == [S1.sid, run.sid, inner.sid]
    assert {flow for flow, _, _ in rig.target.calls} == {FLOW_SID}


def test_malformed_inbox_event_is_dropped_and_counted(store: Store) -> None:
    rig = Rig(store)
    bad = step_event(S1, "EV-bad")
    del bad["data"]["execution_sid"]
    rig.deliver(bad)
    asyncio.run(rig.processor.process_once())
    assert store.count_pending_events() == 0
    assert rig.target.calls == []
