"""The simulator as an Event Streams sink's sender: signed CloudEvent webhooks of its traffic.

``EventFeed`` turns the simulated executions into the CloudEvents Twilio would emit
(execution.started, one step.ended per step, execution.ended), each once its time has come, in
exactly the shapes Twilio documents (docs/events/event-types/studio/flow): no CloudEvent
``time``; execution data with ``started_by`` and an integer ``flow_revision``; step data with
``step_sid`` and neither ``sid`` nor ``type``; times with milliseconds and ``Z``.
``EventStreamSender`` POSTs them to a URL as batched JSON arrays signed like Twilio's
(``X-Twilio-Signature`` over the URL with ``bodySHA256``), retrying 429, 5xx and connection
failures with backoff; on demand it duplicates, reorders and drops events, deterministically
for a seed. ``EventStreamsPusher`` runs the two on a background thread against the clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from studio_exporter.core.eventstreams import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    SIGNATURE_HEADER,
    STEP_ENDED,
    sign_request,
)

from .resources import Renderer
from .traffic import ExecutionRecord, Traffic

log = logging.getLogger(__name__)

_STEP_SCHEMA = "https://events-schemas.twilio.com/Studio.FlowStepEvent/1"
_EXECUTION_SCHEMA = "https://events-schemas.twilio.com/Studio.FlowExecutionEvent/2"
#: A step event's data, REST name to event name: what Studio.FlowStepEvent documents.
_STEP_FIELDS = {
    "account_sid": "account_sid",
    "date_created": "date_created",
    "execution_sid": "execution_sid",
    "flow_sid": "flow_sid",
    "name": "name",
    "parent_step_sid": "parent_step_sid",
    "sid": "step_sid",
    "transitioned_from": "transitioned_from",
    "transitioned_to": "transitioned_to",
}


def _event_time(epoch: int) -> str:
    """Event Streams timestamps carry milliseconds (the simulator's are whole seconds)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _event_id(kind: str, sid: str, seed: int) -> str:
    digest = hashlib.sha256(f"{seed}:{kind}:{sid}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _cloud(event_type: str, schema: str, event_id: str, data: dict[str, Any]) -> dict[str, Any]:
    # Twilio's documented examples carry no "time": an event's times are in its data.
    return {
        "specversion": "1.0",
        "type": event_type,
        "source": "/v2/Flows",
        "id": event_id,
        "dataschema": schema,
        "datacontenttype": "application/json",
        "data": data,
    }


class EventFeed:
    """The CloudEvents of the simulated traffic whose time has come, each returned once.

    Only executions created at or after ``since`` are followed: Event Streams delivers what
    happens after a subscription exists, never history. ``omit_null_parent`` leaves the
    ``parent_step_sid`` key out of top-level steps instead of sending it null (a serializer
    that omits nulls: the documentation does not say which Twilio does).
    """

    def __init__(
        self,
        traffic: Traffic,
        renderer: Renderer,
        *,
        since: float,
        omit_null_parent: bool = False,
    ) -> None:
        self.traffic = traffic
        self.renderer = renderer
        self.since = since
        self.omit_null_parent = omit_null_parent
        self._emitted: dict[str, int] = {}  # execution sid -> events emitted (start, steps, end)
        self._done: set[str] = set()

    @property
    def executions_ended(self) -> int:
        """Executions whose every event, execution.ended included, has been returned."""
        return len(self._done)

    def due(self, now: float) -> list[dict[str, Any]]:
        """Events that happened up to ``now`` and were not returned before, in time order."""
        self.traffic.advance(now)
        timed: list[tuple[int, int, dict[str, Any]]] = []
        for record in self.traffic.existing(now):
            if record.created < self.since or record.sid in self._done:
                continue
            events = self.events(record, now)
            start = self._emitted.get(record.sid, 0)
            for position, (when, event) in enumerate(events[start:], start):
                timed.append((when, position, event))
            self._emitted[record.sid] = len(events)
            if len(events) == record.step_count + 2:
                self._done.add(record.sid)
                del self._emitted[record.sid]
        timed.sort(key=lambda item: (item[0], item[1]))
        return [event for _, _, event in timed]

    def events(self, record: ExecutionRecord, now: float) -> list[tuple[int, dict[str, Any]]]:
        """The execution's events up to ``now`` with their times, in the order they happen."""
        seed = self.traffic.config.seed
        flow_sid = self.traffic.flow_sids[record.flow]
        visible = record.visible_steps(now)
        execution = self.renderer.execution("", record, now)
        base = {
            "execution_sid": record.sid,
            "account_sid": self.renderer.account_sid,
            "flow_sid": flow_sid,
            "contact_channel_address": execution["contact_channel_address"],
            "date_created": _event_time(record.created),
            "started_by": execution["initiated_by"],
            "flow_revision": execution["flow_version"],
        }
        started = {**base, "status": "active", "date_updated": base["date_created"]}
        events = [
            (
                record.created,
                _cloud(
                    EXECUTION_STARTED,
                    _EXECUTION_SCHEMA,
                    _event_id("started", record.sid, seed),
                    started,
                ),
            )
        ]
        for index in range(visible):
            rendered = self.renderer.step("", record, index)
            step = {event_name: rendered[name] for name, event_name in _STEP_FIELDS.items()}
            if self.omit_null_parent and step["parent_step_sid"] is None:
                del step["parent_step_sid"]
            when = record.step_time(index)
            step["date_created"] = _event_time(when)
            events.append(
                (
                    when,
                    _cloud(
                        STEP_ENDED, _STEP_SCHEMA, _event_id("step", step["step_sid"], seed), step
                    ),
                )
            )
        if visible == record.step_count:
            ended_at = record.ended_at
            ended = {
                **base,
                "status": "ended",
                "ended_reason": "FLOW_END",
                "date_updated": _event_time(ended_at),
            }
            events.append(
                (
                    ended_at,
                    _cloud(
                        EXECUTION_ENDED,
                        _EXECUTION_SCHEMA,
                        _event_id("ended", record.sid, seed),
                        ended,
                    ),
                )
            )
        return events


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the sender misbehaves on purpose: probabilities per event, and reordering.

    ``duplicates``: an event is sent again in a later batch. ``drop``: an event is never sent
    (Event Streams loses nothing it accepted, but step logs are best-effort). ``reorder``:
    events are shuffled within windows of this many events (0: in time order).
    """

    batch_size: int = 50
    duplicates: float = 0.0
    drop: float = 0.0
    reorder: int = 0
    max_attempts: int = 8
    backoff: float = 0.05
    max_backoff: float = 2.0
    seed: int = 0


@dataclass(slots=True)
class SendReport:
    """What the sender did: events handed over, batches answered 2xx, retries, give-ups."""

    events: int = 0
    batches: int = 0
    retries: int = 0
    failed_batches: int = 0
    dropped: int = 0
    duplicated: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class EventStreamSender:
    """POSTs events as signed, batched JSON arrays to ``url``, as an Event Streams sink does."""

    def __init__(
        self,
        url: str,
        auth_token: str,
        options: DeliveryOptions | None = None,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.auth_token = auth_token
        self.options = options or DeliveryOptions()
        self.sleep = sleep
        self._client = client or httpx.Client(timeout=10.0)
        self._rng = random.Random(self.options.seed)
        self._held: list[dict[str, Any]] = []  # duplicates waiting for a later batch
        self.report = SendReport()

    def close(self) -> None:
        self._client.close()

    def send(self, events: Sequence[dict[str, Any]]) -> SendReport:
        """Deliver ``events`` (plus duplicates held from before); returns the running report."""
        options = self.options
        outgoing: list[dict[str, Any]] = list(self._held)
        self._held = []
        for event in events:
            self.report.events += 1
            if options.drop and self._rng.random() < options.drop:
                self.report.dropped += 1
                continue
            outgoing.append(event)
            if options.duplicates and self._rng.random() < options.duplicates:
                self.report.duplicated += 1
                self._held.append(event)
        if options.reorder > 1:
            for start in range(0, len(outgoing), options.reorder):
                window = outgoing[start : start + options.reorder]
                self._rng.shuffle(window)
                outgoing[start : start + options.reorder] = window
        for start in range(0, len(outgoing), options.batch_size):
            self._post(outgoing[start : start + options.batch_size])
        return self.report

    def flush(self) -> SendReport:
        """Send the duplicates still held back."""
        return self.send(())

    def _post(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps(batch, separators=(",", ":")).encode()  # exactly the bytes signed
        request_url, signature = sign_request(self.auth_token, self.url, body)
        headers = {SIGNATURE_HEADER: signature, "Content-Type": "application/json"}
        options = self.options
        for attempt in range(1, options.max_attempts + 1):
            wait: float | None = None
            try:
                response = self._client.post(request_url, content=body, headers=headers)
            except httpx.TransportError as error:
                log.debug("event streams delivery failed: %s", error)
                status = 0
            else:
                status = response.status_code
                self.report.statuses[status] = self.report.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    self.report.batches += 1
                    return
                if status != 429 and status < 500:
                    break  # Twilio drops a batch answered with another 4xx
                retry_after = response.headers.get("Retry-After", "")
                wait = float(retry_after) if retry_after.isdigit() else None
            if attempt < options.max_attempts:
                self.report.retries += 1
                self.sleep(
                    wait
                    if wait is not None
                    else min(options.backoff * 2 ** (attempt - 1), options.max_backoff)
                )
        self.report.failed_batches += 1
        log.warning(
            "event streams batch of %d events given up (last status %s)", len(batch), status
        )


class EventStreamsPusher:
    """Sends a feed's due events every ``interval`` seconds from a background thread."""

    def __init__(
        self,
        feed: EventFeed,
        sender: EventStreamSender,
        clock: Callable[[], float],
        *,
        interval: float = 0.2,
    ) -> None:
        self.feed = feed
        self.sender = sender
        self.clock = clock
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> int:
        """Send what is due now; returns how many events that was."""
        events = self.feed.due(self.clock())
        self.sender.send(events)
        return len(events)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="simulator-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after a last tick, so everything due is sent, duplicates included."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.sender.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a broken tick must not kill the simulator
                log.exception("sending simulator events failed")
            self._stop.wait(self.interval)
        try:
            self.tick()
            self.sender.flush()
        except Exception:
            log.exception("sending the last simulator events failed")
