"""Tests for span building: ids from SIDs, attributes, personal data, SDK spans."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, StatusCode

from studio_exporter.core.domain import ENDED, Execution, ExecutionPath, Flow, Gap, Step, Visit
from studio_exporter.core.transform import build_path
from studio_exporter.sinks.spans import (
    ATTR_CONTACT,
    DEFAULT_FAILURE_EVENTS,
    SpanNotReadyError,
    SpanOptions,
    SpanRecord,
    execution_span,
    parent_span_id,
    path_spans,
    root_span_id,
    span_id_for_step,
    to_readable_spans,
    trace_id_for,
    trace_id_hex,
    visit_span,
)

ACCOUNT = "AC" + "a" * 32
FLOW = Flow("FW" + "b" * 32, ACCOUNT, "Onboarding", "published", 7)
SUBFLOW_SID = "FW" + "d" * 32
EXECUTION_SID = "FN0123456789abcdef0123456789ABCDEF"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def ns(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp()) * 10**9


def make_step(
    number: int,
    widget: str,
    next_widget: str,
    second: float,
    *,
    event: str = "next",
    parent: str | None = None,
    context: Mapping[str, Any] | None = None,
    flow_sid: str = FLOW.sid,
) -> Step:
    return Step(
        sid=f"FT{number:032x}",
        flow_sid=flow_sid,
        execution_sid=EXECUTION_SID,
        event=event,
        transitioned_from=widget,
        transitioned_to=next_widget,
        widget_type="send-message",
        date_created=T0 + timedelta(seconds=second),
        parent_step_sid=parent,
        context=context,
    )


def make_execution(status: str = "ended", **changes: Any) -> Execution:
    execution = Execution(EXECUTION_SID, FLOW.sid, ACCOUNT, status, T0)
    return replace(execution, **changes)


def visit_of(entry: Step | None, exit_step: Step | None, *, parent: str | None = None) -> Visit:
    if exit_step is not None:
        widget = exit_step.transitioned_from
    else:
        assert entry is not None
        widget = entry.transitioned_to
    entered = T0 if entry is None else entry.date_created
    flow_sid = FLOW.sid if parent is None else SUBFLOW_SID
    return Visit(widget, "send-message", flow_sid, entered, entry, exit_step, parent)


# Trigger -> send (2s) -> Ended (5s), a plain ended execution.
S1 = make_step(0x11, "Trigger", "send", 2, event="incomingMessage")
S2 = make_step(0x22, "send", ENDED, 5, event="sent")
PATH = ExecutionPath(make_execution(), (S1, S2), (visit_of(None, S1), visit_of(S1, S2)))


@pytest.mark.parametrize(
    ("sid", "expected"),
    [
        pytest.param(EXECUTION_SID, 0x0123456789ABCDEF0123456789ABCDEF, id="mixed-case-hex"),
        pytest.param("FN" + "0" * 31 + "1", 1, id="small"),
    ],
)
def test_trace_id_is_the_execution_sid_hex(sid: str, expected: int) -> None:
    assert trace_id_for(sid) == expected
    assert trace_id_hex(sid) == f"{expected:032x}"


@pytest.mark.parametrize(
    "sid",
    [
        pytest.param("FT" + "a" * 32, id="step-sid"),
        pytest.param("FN" + "a" * 31, id="short"),
        pytest.param("FN" + "g" * 32, id="not-hex"),
        pytest.param("FN" + "0" * 32, id="all-zero"),
        pytest.param(" FN" + "a" * 32, id="whitespace"),
    ],
)
def test_malformed_execution_sids_are_refused(sid: str) -> None:
    with pytest.raises(ValueError, match="SID"):
        trace_id_for(sid)


@pytest.mark.parametrize(
    ("sid", "expected"),
    [
        pytest.param(EXECUTION_SID, 0x0123456789ABCDEF, id="low-64-bits"),
        pytest.param("FN" + "1" * 16 + "0" * 16, 1, id="zero-low-bits-give-1"),
    ],
)
def test_root_span_id(sid: str, expected: int) -> None:
    assert root_span_id(sid) == expected


@pytest.mark.parametrize(
    ("sid", "expected"),
    [
        pytest.param("FT" + "a" * 16 + "0123456789abcdef", 0x0123456789ABCDEF, id="last-16"),
        pytest.param("FT" + "a" * 16 + "0" * 16, 1, id="zero-gives-1"),
    ],
)
def test_step_span_id(sid: str, expected: int) -> None:
    assert span_id_for_step(sid) == expected


@pytest.mark.parametrize(
    "sid",
    [pytest.param(EXECUTION_SID, id="execution-sid"), pytest.param("FT123", id="short")],
)
def test_malformed_step_sids_are_refused(sid: str) -> None:
    with pytest.raises(ValueError, match="step SID"):
        span_id_for_step(sid)


def test_visit_span_has_the_contract_attributes_and_times() -> None:
    record = visit_span(PATH, FLOW, PATH.visits[1])
    assert record == SpanRecord(
        trace_id=trace_id_for(EXECUTION_SID),
        span_id=0x22,
        parent_span_id=root_span_id(EXECUTION_SID),
        name="send",
        start_ns=ns(2),
        end_ns=ns(5),
        attributes={
            "twilio.studio.flow.sid": FLOW.sid,
            "twilio.studio.flow.name": "Onboarding",
            "twilio.studio.execution.sid": EXECUTION_SID,
            "twilio.studio.step.sid": S2.sid,
            "twilio.studio.widget.name": "send",
            "twilio.studio.widget.type": "send-message",
            "twilio.studio.event": "sent",
            "twilio.studio.next_widget": ENDED,
        },
        status_error=False,
    )


def test_sub_second_times_keep_every_microsecond() -> None:
    exit_step = replace(S1, date_created=T0 + timedelta(seconds=2, microseconds=999_999))
    path = replace(PATH, visits=(visit_of(None, exit_step),))
    assert visit_span(path, FLOW, path.visits[0]).end_ns == ns(2) + 999_999_000


@pytest.mark.parametrize(
    ("event", "failure_events", "error"),
    [
        pytest.param("failed", DEFAULT_FAILURE_EVENTS, True, id="failed"),
        pytest.param("deliveryFailure", DEFAULT_FAILURE_EVENTS, True, id="deliveryFailure"),
        pytest.param("timeout", DEFAULT_FAILURE_EVENTS, False, id="timeout-is-normal"),
        pytest.param("timeout", frozenset({"timeout"}), True, id="configured-set"),
        pytest.param("failed", frozenset[str](), False, id="empty-set"),
    ],
)
def test_status_follows_the_failure_set(
    event: str, failure_events: frozenset[str], error: bool
) -> None:
    exit_step = replace(S2, event=event)
    path = replace(PATH, steps=(S1, exit_step), visits=(visit_of(S1, exit_step),))
    options = SpanOptions(failure_events=failure_events)
    assert visit_span(path, FLOW, path.visits[0], options).status_error is error
    assert execution_span(path, FLOW, options).status_error is error


def test_an_open_visit_has_no_span_yet() -> None:
    with pytest.raises(SpanNotReadyError):
        visit_span(PATH, FLOW, visit_of(S2, None))


def subflow_path(*, parent_closed: bool, status: str) -> ExecutionPath:
    # Trigger -> run_sub (entered by P at 1s); the subflow runs first -> Ended inside it.
    p = make_step(0x1, "Trigger", "run_sub", 1)
    sub_exit = make_step(0x2, "first", ENDED, 4, parent=p.sid, flow_sid=SUBFLOW_SID)
    run_sub_exit = make_step(0x3, "run_sub", ENDED, 6, event="completed")
    steps = [p, sub_exit] + ([run_sub_exit] if parent_closed else [])
    visits = [
        visit_of(None, p),
        visit_of(p, run_sub_exit if parent_closed else None),
        Visit("first", "set-variables", SUBFLOW_SID, p.date_created, None, sub_exit, p.sid, p.sid),
    ]
    return ExecutionPath(make_execution(status), tuple(steps), tuple(visits))


def test_a_subflow_visit_nests_under_the_visit_its_parent_step_opened() -> None:
    path = subflow_path(parent_closed=True, status="ended")
    record = visit_span(path, FLOW, path.visits[2], flow_names={SUBFLOW_SID: "Sub"})
    assert record.parent_span_id == 0x3  # the span of run_sub, closed by step 0x3
    assert record.attributes["twilio.studio.flow.sid"] == SUBFLOW_SID
    assert record.attributes["twilio.studio.flow.name"] == "Sub"


@pytest.mark.parametrize(
    "reading",
    [pytest.param("into", id="parent-is-step-into-run-subflow"),
     pytest.param("out", id="parent-is-step-out-of-run-subflow")],
)  # fmt: skip
def test_a_built_subflow_nests_under_run_subflow_whichever_step_is_named(reading: str) -> None:
    into = make_step(0x1, "Trigger", "run_sub", 1)
    # A step's type is that of the widget it left: run_sub is a run-subflow widget.
    out = replace(make_step(0x3, "run_sub", ENDED, 6, event="completed"), widget_type="run-subflow")
    parent = into if reading == "into" else out
    sub_exit = make_step(0x2, "Trigger", ENDED, 4, parent=parent.sid, flow_sid=SUBFLOW_SID)
    path = build_path(make_execution("ended"), [into, sub_exit, out])
    [sub_visit] = [visit for visit in path.visits if visit.flow_sid == SUBFLOW_SID]
    assert sub_visit.parent_entry_sid == into.sid
    assert sub_visit.duration_seconds == 3.0
    assert visit_span(path, FLOW, sub_visit).parent_span_id == 0x3


def test_a_subflow_visit_under_an_open_parent_nests_under_the_root() -> None:
    path = subflow_path(parent_closed=False, status="active")
    assert parent_span_id(path, path.visits[2]) is None
    record = visit_span(path, FLOW, path.visits[2])
    assert record.parent_span_id == root_span_id(EXECUTION_SID)
    assert "twilio.studio.flow.name" not in record.attributes  # the subflow is not named


def test_execution_span_runs_from_creation_to_the_end_step() -> None:
    record = execution_span(PATH, FLOW)
    assert (record.name, record.span_id, record.parent_span_id) == (
        "Onboarding",
        root_span_id(EXECUTION_SID),
        None,
    )
    assert (record.start_ns, record.end_ns) == (ns(0), ns(5))
    assert record.attributes["twilio.studio.execution.final_widget"] == "send"
    assert record.attributes["twilio.studio.step.sid"] == S2.sid
    assert ATTR_CONTACT not in record.attributes


def test_execution_span_without_an_end_step_ends_at_the_last_update() -> None:
    path = ExecutionPath(
        make_execution(date_updated=T0 + timedelta(seconds=9)),
        (S1,),
        (visit_of(None, S1),),
        gaps=(Gap(EXECUTION_SID, S1, S2),),
    )
    record = execution_span(path, None)
    assert record.end_ns == ns(9)
    assert record.name == FLOW.sid  # no flow definition at hand
    assert record.attributes["twilio.studio.execution.gaps"] == 1


def test_an_active_execution_has_no_root_span_yet() -> None:
    path = replace(PATH, execution=make_execution("active"), steps=(S1,))
    with pytest.raises(SpanNotReadyError):
        execution_span(path, FLOW)


def test_path_spans_builds_the_closed_visits_and_the_root() -> None:
    records = path_spans(PATH, FLOW)
    assert [r.name for r in records] == ["Trigger", "send", "Onboarding"]
    active = replace(PATH, execution=make_execution("active"), steps=(S1,))
    active = replace(active, visits=(visit_of(None, S1), visit_of(S1, None)))
    assert [r.name for r in path_spans(active, FLOW)] == ["Trigger"]


CONTEXT = {
    "flow": {
        "data": {"order_id": "A-17", "count": 3, "vip": True, "caller": "+14155550100"},
        "variables": {"items": ["+14155550100", {"note": "x"}]},
    },
    "widgets": {"ask": {"inbound": {"Body": "yes"}}},
}


def context_span(options: SpanOptions) -> SpanRecord:
    exit_step = replace(S2, context=CONTEXT)
    path = replace(PATH, steps=(S1, exit_step), visits=(visit_of(S1, exit_step),))
    return visit_span(path, FLOW, path.visits[0], options)


def context_attributes(record: SpanRecord) -> dict[str, Any]:
    prefix = "twilio.studio.context."
    return {k[len(prefix) :]: v for k, v in record.attributes.items() if k.startswith(prefix)}


def test_no_context_is_exported_by_default() -> None:
    assert context_attributes(context_span(SpanOptions())) == {}


def test_allow_listed_context_keys_become_attributes() -> None:
    allow = ("flow.data.order_id", "flow.data.count", "flow.data.vip", "widgets.ask.inbound.Body")
    record = context_span(SpanOptions(context_allowlist=(*allow, "flow.data.missing", "nope.x")))
    assert context_attributes(record) == {
        "flow.data.order_id": "A-17",
        "flow.data.count": 3,
        "flow.data.vip": True,
        "widgets.ask.inbound.Body": "yes",
    }


def test_phone_numbers_are_hashed_with_the_salt() -> None:
    options = SpanOptions(
        context_allowlist=("flow.data.caller", "flow.variables.items"), phone_hash_salt="pepper"
    )
    digest = "sha256:" + hashlib.sha256(b"pepper+14155550100").hexdigest()
    values = context_attributes(context_span(options))
    assert values["flow.data.caller"] == digest
    assert json.loads(str(values["flow.variables.items"])) == [digest, {"note": "x"}]
    assert "+14155550100" not in json.dumps(values)


def test_phone_numbers_can_be_kept_when_the_user_says_so() -> None:
    options = SpanOptions(context_allowlist=("flow.data.caller",), hash_phone_numbers=False)
    assert context_attributes(context_span(options)) == {"flow.data.caller": "+14155550100"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(SpanOptions(), None, id="not-by-default"),
        pytest.param(
            SpanOptions(export_contact_channel_address=True),
            "sha256:" + hashlib.sha256(b"whatsapp:+14155550100").hexdigest(),
            id="opted-in-hashed",
        ),
        pytest.param(
            SpanOptions(export_contact_channel_address=True, hash_phone_numbers=False),
            "whatsapp:+14155550100",
            id="opted-in-raw",
        ),
    ],
)
def test_contact_channel_address(options: SpanOptions, expected: str | None) -> None:
    path = replace(PATH, execution=make_execution(contact_channel_address="whatsapp:+14155550100"))
    assert execution_span(path, FLOW, options).attributes.get(ATTR_CONTACT) == expected


def test_the_salt_never_shows_in_a_repr() -> None:
    assert "pepper" not in repr(SpanOptions(phone_hash_salt="pepper"))


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(visit_span(PATH, FLOW, PATH.visits[1]), id="visit"),
        pytest.param(execution_span(PATH, FLOW), id="root"),
        pytest.param(
            SpanRecord(2**128 - 1, 2**64 - 1, 1, "ünïcode", 0, 1, {"f": 1.5, "b": False}, True),
            id="extremes",
        ),
    ],
)
def test_json_round_trip(record: SpanRecord) -> None:
    assert SpanRecord.from_json(record.to_json()) == record
    assert SpanRecord.from_json(record.to_json().encode()) == record


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("{}", id="empty"),
        pytest.param("nonsense", id="not-json"),
        pytest.param(
            '{"trace_id":"zz","span_id":"1","parent_span_id":null,"name":"x","start_ns":0,'
            '"end_ns":1,"attributes":{},"error":false}',
            id="bad-hex",
        ),
        pytest.param(
            '{"trace_id":"1","span_id":"1","parent_span_id":null,"name":"x","start_ns":0,'
            '"end_ns":1,"attributes":{"a":[1]},"error":false}',
            id="bad-attribute",
        ),
    ],
)
def test_from_json_refuses_what_is_not_a_record(data: str) -> None:
    with pytest.raises(ValueError, match="span record"):
        SpanRecord.from_json(data)


def test_readable_spans_carry_the_ids_times_and_status() -> None:
    resource = Resource({"service.name": "test"})
    records = [visit_span(PATH, FLOW, PATH.visits[0]), execution_span(PATH, FLOW)]
    error = replace(records[0], status_error=True)
    visit, root = to_readable_spans([error, records[1]], resource)
    context = visit.get_span_context()
    assert context is not None
    assert (context.trace_id, context.span_id) == (trace_id_for(EXECUTION_SID), 0x11)
    assert context.trace_flags.sampled
    assert not context.is_remote
    assert visit.parent is not None
    assert visit.parent.span_id == root_span_id(EXECUTION_SID)
    assert (visit.start_time, visit.end_time) == (ns(0), ns(2))
    assert visit.status.status_code is StatusCode.ERROR
    assert visit.kind is SpanKind.INTERNAL
    assert visit.resource is resource
    assert dict(visit.attributes or {}) == dict(records[0].attributes)
    assert root.parent is None
    assert root.status.status_code is StatusCode.UNSET
