"""Spans from Studio executions: plain records with deterministic ids, and SDK spans from them."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeAlias

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from studio_exporter.core.domain import ENDED, ExecutionPath, Flow, Visit

#: Events that mark the widget they leave as failed. A ``timeout`` of a wait-for-reply widget
#: is a normal outcome (nobody answered), so it is not in the set.
DEFAULT_FAILURE_EVENTS: Final = frozenset({"failed", "fail", "deliveryFailure", "error"})

ATTR_FLOW_SID: Final = "twilio.studio.flow.sid"
ATTR_FLOW_NAME: Final = "twilio.studio.flow.name"
ATTR_EXECUTION_SID: Final = "twilio.studio.execution.sid"
ATTR_STEP_SID: Final = "twilio.studio.step.sid"
ATTR_WIDGET_NAME: Final = "twilio.studio.widget.name"
ATTR_WIDGET_TYPE: Final = "twilio.studio.widget.type"
ATTR_EVENT: Final = "twilio.studio.event"
ATTR_NEXT_WIDGET: Final = "twilio.studio.next_widget"
ATTR_FINAL_WIDGET: Final = "twilio.studio.execution.final_widget"
ATTR_GAPS: Final = "twilio.studio.execution.gaps"
ATTR_CONTACT: Final = "twilio.studio.execution.contact_channel_address"
ATTR_CONTEXT_PREFIX: Final = "twilio.studio.context."

INSTRUMENTATION_SCOPE: Final = InstrumentationScope("twilio-studio-exporter")

_EXECUTION_SID = re.compile(r"FN[0-9a-fA-F]{32}")
_STEP_SID = re.compile(r"FT[0-9a-fA-F]{32}")
# E.164, optionally behind a channel prefix as in contact addresses ("whatsapp:+14155550100").
_PHONE_NUMBER = re.compile(r"(?:[a-z][a-z0-9_-]*:)?\+[1-9][0-9]{6,14}")
_LOW_64_BITS: Final = (1 << 64) - 1
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_STATUS_ERROR: Final = Status(StatusCode.ERROR)
_STATUS_UNSET: Final = Status(StatusCode.UNSET)

AttributeValue: TypeAlias = str | bool | int | float


class SpanNotReadyError(ValueError):
    """The span cannot be built yet: its visit is open, or its execution has not ended."""


@dataclass(frozen=True, slots=True)
class SpanOptions:
    """What goes into spans beyond the contract's attributes. Personal data is opt-in.

    ``context_allowlist`` names step-context keys, dotted (``flow.data.order_id``,
    ``widgets.ask_name.inbound.Body``), whose values become ``twilio.studio.context.<key>``
    attributes. ``export_contact_channel_address`` adds the execution's contact address to the
    root span. Opted-in values that look like phone numbers are replaced by
    ``sha256:<hex of sha256(salt + value)>`` while ``hash_phone_numbers`` holds (the default);
    without a secret salt such a hash can be reversed by trying every number.
    """

    failure_events: frozenset[str] = DEFAULT_FAILURE_EVENTS
    context_allowlist: tuple[str, ...] = ()
    export_contact_channel_address: bool = False
    hash_phone_numbers: bool = True
    phone_hash_salt: str = field(default="", repr=False)


DEFAULT_SPAN_OPTIONS: Final = SpanOptions()


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished span as plain data: what the outbox stores between building and export."""

    trace_id: int
    span_id: int
    parent_span_id: int | None
    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    status_error: bool = False

    def to_json(self) -> str:
        """Compact JSON; ids as lowercase hex (as OTLP/JSON writes them)."""
        return json.dumps(
            {
                "trace_id": f"{self.trace_id:032x}",
                "span_id": f"{self.span_id:016x}",
                "parent_span_id": None
                if self.parent_span_id is None
                else f"{self.parent_span_id:016x}",
                "name": self.name,
                "start_ns": self.start_ns,
                "end_ns": self.end_ns,
                "attributes": dict(self.attributes),
                "error": self.status_error,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, data: str | bytes) -> SpanRecord:
        try:
            raw = json.loads(data)
            parent = raw["parent_span_id"]
            attributes = raw["attributes"]
            if not isinstance(attributes, dict) or not all(
                isinstance(v, str | bool | int | float) for v in attributes.values()
            ):
                raise TypeError("attributes must map names to str, bool, int or float")
            record = cls(
                trace_id=int(raw["trace_id"], 16),
                span_id=int(raw["span_id"], 16),
                parent_span_id=None if parent is None else int(parent, 16),
                name=str(raw["name"]),
                start_ns=int(raw["start_ns"]),
                end_ns=int(raw["end_ns"]),
                attributes=attributes,
                status_error=bool(raw["error"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a span record: {error}") from error
        return record


@functools.lru_cache(maxsize=1024)  # asked once a span, and an execution has several
def trace_id_for(execution_sid: str) -> int:
    """The trace id: the 128-bit number the execution SID's 32 hex digits spell."""
    if not _EXECUTION_SID.fullmatch(execution_sid):
        raise ValueError(f"not an execution SID: {execution_sid!r}")
    trace_id = int(execution_sid[2:], 16)
    if trace_id == 0:
        raise ValueError(f"execution SID {execution_sid!r} gives the invalid all-zero trace id")
    return trace_id


def trace_id_hex(execution_sid: str) -> str:
    """The trace id as 32 lowercase hex digits (for exemplars and links to a tracing UI)."""
    return f"{trace_id_for(execution_sid):032x}"


def root_span_id(execution_sid: str) -> int:
    """The execution's root span id: the low 64 bits of its trace id (1 if they are zero)."""
    return (trace_id_for(execution_sid) & _LOW_64_BITS) or 1


def span_id_for_step(step_sid: str) -> int:
    """The span id of the visit a step closes: the step SID's last 16 hex digits (1 if zero)."""
    if not _STEP_SID.fullmatch(step_sid):
        raise ValueError(f"not a step SID: {step_sid!r}")
    return int(step_sid[-16:], 16) or 1


def parent_span_id(path: ExecutionPath, visit: Visit) -> int | None:
    """The span id a visit's span nests under, or None while it cannot be known yet.

    Top-level visits nest under the root. A subflow visit nests under the run-subflow visit it
    ran inside (the one its ``parent_entry_sid`` entered, whichever step Twilio's
    ``parent_step_sid`` names), whose span id comes from the step that closed it: unknown while
    that visit is open. Once the execution has ended, a parent visit that never closed (or was
    never seen: a gap) leaves the root as the nearest known ancestor.
    """
    if visit.parent_step_sid is None:
        return root_span_id(path.execution.sid)
    for candidate in path.visits:
        entry = candidate.entry_step
        if entry is not None and entry.sid == visit.parent_entry_sid:
            if candidate.exit_step is not None:
                return span_id_for_step(candidate.exit_step.sid)
            break
    return root_span_id(path.execution.sid) if path.execution.is_ended else None


def visit_span(
    path: ExecutionPath,
    flow: Flow | None,
    visit: Visit,
    options: SpanOptions = DEFAULT_SPAN_OPTIONS,
    *,
    flow_names: Mapping[str, str] | None = None,
) -> SpanRecord:
    """The span of a closed visit: named after the widget, from entering to leaving it.

    ``flow`` is the flow the visit belongs to (None if unknown: the name attribute is left out);
    ``flow_names`` may name other flows (subflows) by SID. A subflow visit whose parent visit
    is still open nests under the root: its span is exported once, when it closes, and the
    parent's span id is not known before the parent closes. Raises SpanNotReadyError for an
    open visit.
    """
    exit_step = visit.exit_step
    if exit_step is None:
        raise SpanNotReadyError(f"visit of {visit.widget!r} is still open")
    parent = parent_span_id(path, visit) or root_span_id(path.execution.sid)
    execution_sid = path.execution.sid
    attributes: dict[str, AttributeValue] = {
        ATTR_FLOW_SID: visit.flow_sid,
        ATTR_EXECUTION_SID: execution_sid,
        ATTR_STEP_SID: exit_step.sid,
        ATTR_WIDGET_NAME: visit.widget,
        ATTR_WIDGET_TYPE: visit.widget_type,
        ATTR_EVENT: exit_step.event,
        ATTR_NEXT_WIDGET: exit_step.transitioned_to,
    }
    if flow is not None and visit.flow_sid == flow.sid:
        flow_name: str | None = flow.name
    else:
        flow_name = (flow_names or {}).get(visit.flow_sid)
    if flow_name is not None:
        attributes[ATTR_FLOW_NAME] = flow_name
    if options.context_allowlist and exit_step.context is not None:
        _add_context(attributes, exit_step.context, options)
    return SpanRecord(
        trace_id=trace_id_for(execution_sid),
        span_id=span_id_for_step(exit_step.sid),
        parent_span_id=parent,
        name=visit.widget,
        start_ns=_unix_ns(visit.entered_at),
        end_ns=_unix_ns(exit_step.date_created),
        attributes=attributes,
        status_error=exit_step.event in options.failure_events,
    )


def execution_span(
    path: ExecutionPath, flow: Flow | None, options: SpanOptions = DEFAULT_SPAN_OPTIONS
) -> SpanRecord:
    """The root span of an ended execution: named after the flow, from creation to the end.

    The end is the step into ``Ended``; without one (a gap at the end) the execution's last
    update, or else its last known step. Its status is ERROR when that end step's event is a
    failure. Without ``flow`` the span is named after the flow SID. Raises SpanNotReadyError
    while the execution is active and has no step into ``Ended``.
    """
    execution = path.execution
    end_step = path.end_step
    if end_step is None and not execution.is_ended:
        raise SpanNotReadyError(f"execution {execution.sid} is still {execution.status}")
    attributes: dict[str, AttributeValue] = {
        ATTR_FLOW_SID: execution.flow_sid,
        ATTR_EXECUTION_SID: execution.sid,
    }
    if flow is not None:
        attributes[ATTR_FLOW_NAME] = flow.name
    if end_step is not None:
        ended_at = end_step.date_created
        attributes[ATTR_STEP_SID] = end_step.sid
        attributes[ATTR_EVENT] = end_step.event
        attributes[ATTR_FINAL_WIDGET] = end_step.transitioned_from
        attributes[ATTR_NEXT_WIDGET] = ENDED
    elif execution.date_updated is not None:
        ended_at = execution.date_updated
    else:
        ended_at = max((s.date_created for s in path.steps), default=execution.date_created)
    if path.gaps:
        attributes[ATTR_GAPS] = len(path.gaps)
    if options.export_contact_channel_address and execution.contact_channel_address:
        attributes[ATTR_CONTACT] = _personal(execution.contact_channel_address, options)
    return SpanRecord(
        trace_id=trace_id_for(execution.sid),
        span_id=root_span_id(execution.sid),
        parent_span_id=None,
        name=execution.flow_sid if flow is None else flow.name,
        start_ns=_unix_ns(execution.date_created),
        end_ns=_unix_ns(max(ended_at, execution.date_created)),
        attributes=attributes,
        status_error=end_step is not None and end_step.event in options.failure_events,
    )


def path_spans(
    path: ExecutionPath,
    flow: Flow | None,
    options: SpanOptions = DEFAULT_SPAN_OPTIONS,
    *,
    flow_names: Mapping[str, str] | None = None,
) -> list[SpanRecord]:
    """Every span of the path that can be built now: closed visits, then the root once the
    execution has ended. Callers skip the span ids they already exported."""
    records = [
        visit_span(path, flow, visit, options, flow_names=flow_names)
        for visit in path.visits
        if visit.exit_step is not None
    ]
    if path.execution.is_ended or path.end_step is not None:
        records.append(execution_span(path, flow, options))
    return records


def to_readable_spans(records: Sequence[SpanRecord], resource: Resource) -> list[ReadableSpan]:
    """SDK spans with the records' ids and historical times, for any SDK SpanExporter."""
    spans = []
    for record in records:
        trace_id = record.trace_id
        parent = (
            None
            if record.parent_span_id is None
            else SpanContext(trace_id, record.parent_span_id, False, _SAMPLED)
        )
        spans.append(
            ReadableSpan(
                name=record.name,
                context=SpanContext(trace_id, record.span_id, False, _SAMPLED),
                parent=parent,
                resource=resource,
                attributes=record.attributes,
                kind=SpanKind.INTERNAL,
                status=_STATUS_ERROR if record.status_error else _STATUS_UNSET,
                start_time=record.start_ns,
                end_time=record.end_ns,
                instrumentation_scope=INSTRUMENTATION_SCOPE,
            )
        )
    return spans


def _unix_ns(moment: datetime) -> int:
    # Integer arithmetic: a float of nanoseconds since 1970 cannot hold every nanosecond.
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000


def _add_context(
    attributes: dict[str, AttributeValue], context: Mapping[str, Any], options: SpanOptions
) -> None:
    for key in options.context_allowlist:
        value: Any = context
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                value = None
                break
            value = value[part]
        if value is not None:
            attributes[ATTR_CONTEXT_PREFIX + key] = _attribute_value(value, options)


def _attribute_value(value: Any, options: SpanOptions) -> AttributeValue:
    if isinstance(value, str):
        return _personal(value, options)
    if isinstance(value, bool | int | float):
        return value
    # Lists and objects become JSON, with any phone number inside hashed first.
    return json.dumps(_scrub(value, options), separators=(",", ":"), sort_keys=True, default=str)


def _scrub(value: Any, options: SpanOptions) -> Any:
    if isinstance(value, str):
        return _personal(value, options)
    if isinstance(value, Mapping):
        return {str(k): _scrub(v, options) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, options) for v in value]
    return value


def _personal(value: str, options: SpanOptions) -> str:
    if options.hash_phone_numbers and _PHONE_NUMBER.fullmatch(value):
        digest = hashlib.sha256((options.phone_hash_salt + value).encode()).hexdigest()
        return f"sha256:{digest}"
    return value
