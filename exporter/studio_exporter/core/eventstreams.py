"""Twilio Event Streams deliveries, purely: request signatures and CloudEvents to domain types.

Signatures follow Twilio's SDK validators (twilio-python ``RequestValidator.validate``): a
JSON-bodied webhook is requested at the sink URL with ``bodySHA256=<hex SHA-256 of the raw
body>`` added to its query string, and ``X-Twilio-Signature`` is Base64(HMAC-SHA1(auth token,
that full URL)). The receiver checks the hash against the body and the HMAC against the URL
with and without the port, since Twilio's own signing is inconsistent about the port.

Events: a delivery is a JSON array of CloudEvents 1.0 (batching on) or a single event, read as
Twilio documents them (docs/events/event-types/studio/flow): no CloudEvent ``time``; execution
events carry ``date_created`` and an integer ``flow_revision``; a step event
(``Studio.FlowStepEvent``) carries ``step_sid``, ``name``, ``transitioned_from``,
``transitioned_to``, ``date_created`` and ``parent_step_sid``, and neither ``sid`` nor ``type``:
the widget type comes from the flow definition (the caller's job). REST's ``sid`` and ``type``
are accepted too. A ``parent_step_sid`` key that is absent is read as null (a serializer that
omits nulls); a value that is not a Step SID is reported missing, so that the caller can
complete the step with a REST fetch. Event timestamps carry milliseconds where REST has whole
seconds; a step is identified by its sid, never by its time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from studio_exporter.core.domain import Execution, Step
from studio_exporter.core.sids import ACCOUNT_SID, EXECUTION_SID, FLOW_SID, STEP_SID, is_sid

SIGNATURE_HEADER = "X-Twilio-Signature"
BODY_HASH_PARAM = "bodySHA256"

EXECUTION_STARTED = "com.twilio.studio.flow.execution.started"
EXECUTION_ENDED = "com.twilio.studio.flow.execution.ended"
STEP_ENDED = "com.twilio.studio.flow.step.ended"
#: The event types the exporter uses; any other type is acknowledged and ignored.
STUDIO_EVENT_TYPES = frozenset({EXECUTION_STARTED, EXECUTION_ENDED, STEP_ENDED})

_DEFAULT_PORTS = {"http": "80", "https": "443"}


# -- signatures -----------------------------------------------------------------------------


def body_sha256(body: bytes) -> str:
    """The hex SHA-256 of a raw request body, as Twilio puts it in ``bodySHA256``."""
    return hashlib.sha256(body).hexdigest()


def with_body_hash(url: str, body: bytes) -> str:
    """``url`` with ``bodySHA256=<hash of body>`` appended to its query string."""
    base, hashmark, fragment = url.partition("#")
    if "?" not in base:
        separator = "?"
    elif base.endswith(("?", "&")):
        separator = ""
    else:
        separator = "&"
    return f"{base}{separator}{BODY_HASH_PARAM}={body_sha256(body)}{hashmark}{fragment}"


def _has_body_hash(url: str) -> bool:
    query = urlsplit(url).query
    return any(name == BODY_HASH_PARAM for name, _ in parse_qsl(query, keep_blank_values=True))


def sign_request(auth_token: str, url: str, body: bytes) -> tuple[str, str]:
    """What Twilio sends for a JSON ``body`` to the sink ``url``: (request URL, signature).

    The request URL is ``url`` with ``bodySHA256`` added (kept as it is if it already has one).
    """
    request_url = url if _has_body_hash(url) else with_body_hash(url, body)
    return request_url, _hmac_sha1_base64(auth_token, request_url)


def compute_signature(auth_token: str, url: str, body: bytes) -> str:
    """``X-Twilio-Signature`` of a JSON ``body`` posted to ``url`` (see ``sign_request``)."""
    return sign_request(auth_token, url, body)[1]


def verify_signature(auth_token: str, url: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is Twilio's for ``body`` requested at ``url``, in constant time.

    ``url`` is the full URL as requested (or as configured, when a proxy rewrites it). When it
    carries ``bodySHA256`` that hash must match the body; when it does not, the hash is added
    the way Twilio adds it. The URL is tried with and without its port (the default port is
    added when absent) and with and without user info (basic auth credentials in the sink URL).
    """
    if not signature:
        return False
    query = urlsplit(url).query
    hashes = [
        value for name, value in parse_qsl(query, keep_blank_values=True) if name == BODY_HASH_PARAM
    ]
    if hashes:
        if len(hashes) != 1 or not hmac.compare_digest(
            hashes[0].encode(), body_sha256(body).encode()
        ):
            return False
        signed = url
    else:
        signed = with_body_hash(url, body)
    given = signature.strip().encode("utf-8", "replace")
    valid = False
    for candidate in url_variants(signed):
        # No early exit: every variant is compared, so timing does not tell which one matched.
        valid |= hmac.compare_digest(_hmac_sha1_base64(auth_token, candidate).encode(), given)
    return valid


def url_variants(url: str) -> tuple[str, ...]:
    """``url`` without and with its port, each with and without user info; rest kept as is."""
    scheme_end = url.find("://")
    if scheme_end < 0:
        return (url,)
    start = scheme_end + 3
    end = len(url)
    for stop in "/?#":
        found = url.find(stop, start)
        if found >= 0:
            end = min(end, found)
    netloc = url[start:end]
    userinfo, at, hostport = netloc.rpartition("@")
    host, port = _split_host_port(hostport)
    default = _DEFAULT_PORTS.get(url[:scheme_end].lower())
    with_port = hostport if port else (f"{host}:{default}" if default else hostport)
    variants: list[str] = []
    for authority in (host, with_port):
        for info in (userinfo, "") if at else ("",):
            new_netloc = f"{info}@{authority}" if info else authority
            variants.append(url[:start] + new_netloc + url[end:])
    return tuple(dict.fromkeys(variants))


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # an IPv6 literal: the port follows the bracket
        close = hostport.find("]")
        if close >= 0:
            rest = hostport[close + 1 :]
            return hostport[: close + 1], rest[1:] if rest.startswith(":") else ""
    host, colon, port = hostport.rpartition(":")
    if colon and port.isdigit():
        return host, port
    return hostport, ""


def _hmac_sha1_base64(auth_token: str, data: str) -> str:
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


# -- deliveries -----------------------------------------------------------------------------


class EventError(ValueError):
    """A delivery or an event the exporter cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One CloudEvent of a delivery, as compact JSON ready for the inbox."""

    id: str
    type: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """A webhook body split into events; ``rejected`` counts entries without an id or type."""

    events: tuple[RawEvent, ...]
    rejected: int = 0


def parse_delivery(body: bytes) -> Delivery:
    """Split a delivery (a JSON array of CloudEvents, or one event) into events.

    Raises ``EventError`` when the body is not JSON or neither an array nor an object. An entry
    that is not an object or lacks a string ``id`` or ``type`` cannot be deduplicated or routed:
    it is counted in ``rejected`` and the rest of the batch is kept.
    """
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise EventError(f"delivery is not JSON: {error}") from None
    if isinstance(document, dict):
        entries: list[Any] = [document]
    elif isinstance(document, list):
        entries = document
    else:
        raise EventError(f"delivery is a JSON {type(document).__name__}, not events")
    events: list[RawEvent] = []
    rejected = 0
    for entry in entries:
        if not isinstance(entry, dict):
            rejected += 1
            continue
        event_id, event_type = entry.get("id"), entry.get("type")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
            rejected += 1
            continue
        payload = json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode()
        events.append(RawEvent(event_id, event_type, payload))
    return Delivery(tuple(events), rejected)


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The CloudEvents 1.0 attributes the exporter reads."""

    id: str
    type: str
    source: str
    time: datetime | None
    data: Mapping[str, Any]


def decode_event(payload: bytes) -> CloudEvent:
    """An inbox payload (one event's JSON) back to a CloudEvent; ``EventError`` if unusable."""
    try:
        entry = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as error:
        raise EventError(f"event is not JSON: {error}") from None
    if not isinstance(entry, dict):
        raise EventError("event is not a JSON object")
    event_id, event_type = entry.get("id"), entry.get("type")
    if not isinstance(event_id, str) or not isinstance(event_type, str):
        raise EventError("event without id or type")
    data, source = entry.get("data"), entry.get("source")
    return CloudEvent(
        id=event_id,
        type=event_type,
        source=source if isinstance(source, str) else "",
        time=parse_time(entry.get("time")),
        data=data if isinstance(data, dict) else {},
    )


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp (milliseconds and ``Z`` allowed) as aware UTC, else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# -- executions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecutionEvent:
    """An execution.started or execution.ended event.

    ``date_created`` is None when the event lacks it (an ended event then needs the execution
    from the store or REST); ``ended`` says which of the two events this is.
    """

    ended: bool
    execution_sid: str
    flow_sid: str
    account_sid: str
    status: str
    date_created: datetime | None
    date_updated: datetime | None = None
    flow_version: int | None = None
    ended_reason: str | None = None

    def execution(self, date_created: datetime | None = None) -> Execution:
        """The domain execution; ``date_created`` fills in when the event has none."""
        created = self.date_created or date_created
        if created is None:
            raise EventError(f"execution {self.execution_sid} without date_created")
        return Execution(
            sid=self.execution_sid,
            flow_sid=self.flow_sid,
            account_sid=self.account_sid,
            status=self.status,
            date_created=created,
            date_updated=self.date_updated,
            flow_version=self.flow_version,
        )


def execution_event(event: CloudEvent) -> ExecutionEvent:
    """Read an execution event; ``EventError`` without a valid execution or flow sid."""
    if event.type not in (EXECUTION_STARTED, EXECUTION_ENDED):
        raise EventError(f"{event.type} is not an execution event")
    data = event.data
    sid = _sid(data.get("execution_sid"), EXECUTION_SID)
    flow_sid = _sid(data.get("flow_sid"), FLOW_SID)
    if sid is None or flow_sid is None:
        raise EventError(f"{event.type} {event.id} without a valid execution_sid and flow_sid")
    ended = event.type == EXECUTION_ENDED
    status = data.get("status")
    created = parse_time(data.get("date_created"))
    if created is None and not ended:
        created = event.time  # the started event is emitted when the execution is created
    version = data.get("flow_revision", data.get("flow_version"))
    reason = data.get("ended_reason")
    return ExecutionEvent(
        ended=ended,
        execution_sid=sid,
        flow_sid=flow_sid,
        account_sid=_sid(data.get("account_sid"), ACCOUNT_SID) or "",
        # The event's type is authoritative: a started event with a stale status cannot end.
        status="ended"
        if ended
        else (status if isinstance(status, str) and status != "ended" else "active"),
        date_created=created,
        date_updated=parse_time(data.get("date_updated")),
        flow_version=version
        if isinstance(version, int) and not isinstance(version, bool)
        else None,
        ended_reason=reason if isinstance(reason, str) else None,
    )


# -- steps ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepEvent:
    """A step.ended event: the step when complete, else what is missing to build it.

    ``sid``, ``execution_sid`` and ``flow_sid`` are always known (they locate the step for a
    REST fetch); ``fields`` keeps the other values the event had, for ``complete_step``. The
    step's ``widget_type`` is empty unless the event carried a ``type`` (Twilio's do not).
    """

    sid: str
    execution_sid: str
    flow_sid: str
    step: Step | None
    missing: tuple[str, ...]
    fields: Mapping[str, Any]


def step_event(event: CloudEvent) -> StepEvent:
    """Read a step event tolerantly; ``EventError`` only when the step cannot be located."""
    if event.type != STEP_ENDED:
        raise EventError(f"{event.type} is not a step event")
    data = event.data
    sid = _sid(data.get("step_sid", data.get("sid")), STEP_SID)
    execution_sid = _sid(data.get("execution_sid"), EXECUTION_SID)
    flow_sid = _sid(data.get("flow_sid"), FLOW_SID)
    if sid is None or execution_sid is None or flow_sid is None:
        raise EventError(
            f"step event {event.id} without a valid step_sid, execution_sid and flow_sid"
        )
    fields: dict[str, Any] = {}
    missing: list[str] = []
    for name in ("name", "transitioned_from", "transitioned_to"):
        value = data.get(name)
        if isinstance(value, str) and value:
            fields[name] = value
        else:
            missing.append(name)
    widget_type = data.get("type")
    if isinstance(widget_type, str) and widget_type:
        fields["type"] = widget_type
    created = parse_time(data.get("date_created"))
    if created is None:
        missing.append("date_created")
    else:
        fields["date_created"] = created
    parent = data.get("parent_step_sid")
    fields["parent_step_sid"] = _sid(parent, STEP_SID)
    if parent is not None and fields["parent_step_sid"] is None:
        missing.append("parent_step_sid")
        del fields["parent_step_sid"]
    fields["account_sid"] = _sid(data.get("account_sid"), ACCOUNT_SID) or ""
    step = None
    if not missing:
        step = Step(
            sid=sid,
            flow_sid=flow_sid,
            execution_sid=execution_sid,
            event=fields["name"],
            transitioned_from=fields["transitioned_from"],
            transitioned_to=fields["transitioned_to"],
            widget_type=fields.get("type", ""),
            date_created=fields["date_created"],
            parent_step_sid=fields["parent_step_sid"],
            account_sid=fields["account_sid"],
        )
    return StepEvent(sid, execution_sid, flow_sid, step, tuple(missing), fields)


def complete_step(partial: StepEvent, fetched: Step) -> Step:
    """The step from a REST fetch, with the event's values where it had them.

    The event's ``date_created`` (milliseconds) is kept over the fetched one (whole seconds).
    """
    if fetched.sid != partial.sid:
        raise EventError(f"fetched step {fetched.sid} is not {partial.sid}")
    fields = partial.fields
    return Step(
        sid=partial.sid,
        flow_sid=partial.flow_sid,
        execution_sid=partial.execution_sid,
        event=fields.get("name", fetched.event),
        transitioned_from=fields.get("transitioned_from", fetched.transitioned_from),
        transitioned_to=fields.get("transitioned_to", fetched.transitioned_to),
        widget_type=fields.get("type", fetched.widget_type),
        date_created=fields.get("date_created", fetched.date_created),
        parent_step_sid=fields.get("parent_step_sid", fetched.parent_step_sid),
        account_sid=fields.get("account_sid") or fetched.account_sid,
        context=fetched.context,
    )


def _sid(value: object, prefix: str) -> str | None:
    # Checked here because these values end up in REST URL paths (fetch_step).
    return value if isinstance(value, str) and is_sid(value, prefix) else None
