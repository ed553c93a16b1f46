"""Push mode: receive Event Streams webhooks durably, then turn their events into exports.

Two halves, joined only by the store's event inbox:

``WebhookReceiver`` runs on the web server's threads. It checks ``X-Twilio-Signature`` before
anything else (403 unread when missing or wrong), optionally HTTP basic auth (401), parses the
delivery (400 when it is not JSON), commits the Studio events to the inbox in one transaction
(``Store.enqueue_events`` skips CloudEvent ids seen before) and only then answers 200. Other
event types are acknowledged and ignored. A full inbox answers 429 so that Twilio retries; a
store failure answers 503. The receiver does no network I/O: one SQLite commit per delivery
keeps it far inside Twilio's 5 s.

``PushProcessor`` runs on the exporter's event loop. It reads the inbox in arrival order,
keeps a bounded in-memory view of each execution in progress (the steps known so far and which
are applied) and hands each execution's steps to ``Recorder.apply_pushed_many``
(``sources/recording.py``), the same planning and apply path as polling.

- Order: a step waits until it continues its chain (``transform.ready_steps``, the rule the
  transform itself applies: the flow's initial widget, the same ordering; a subflow chain
  once its parent step is known). After ``reorder_window`` the execution's steps are listed
  once over REST to fill the hole, and whatever still waits is applied anyway: the transform
  reports the gap, and hybrid mode's sweep may fill it.
- Widget types: Twilio's step events carry none; they come from the flow definition
  (``PushTarget.flow_definition``: read once per flow revision and cached), by the step's own
  ``flow_sid`` (a subflow's steps name the subflow).
- Completeness: REST is read once per execution, at its end (the execution.ended event or the
  step into ``Ended``, whichever comes first): the step list, so that lost step events cost
  nothing. Other reads happen only on a hole: a step event without a usable field (a fetch of
  that step), a step still waiting after the window, an execution first seen after a restart
  or an eviction, no event for ``idle_recheck``, a missing execution event (a fetch of the
  execution after the window). Where Studio's list and the pushed copy of a step differ, the
  list wins and ``twilio_studio_exporter_event_rest_disagreements_total{field}`` counts it.
- Context: Twilio's step events carry none. With ``hold_until_end`` (the app sets it when
  ``--context-allowlist`` is given) an execution's steps are exported only after the
  end-of-execution read, so that every span carries the allow-listed context from Studio's
  list; metrics then follow executions' ends rather than each step.
- A missing or late execution.started never drops anything: a top-level step names the
  execution's flow, and the execution is read over REST if no execution event came within
  the window.
- Guarantees: metrics are exactly once, because ``apply_pushed`` exports only steps without an
  exported-step mark and commits marks, metrics snapshot and spans in one transaction. Twilio
  delivers at least once; the inbox deduplicates on the event id. Nothing acknowledged is lost:
  an inbox row is deleted (``ack_events``) only after the apply that holds its effects has
  committed; a crash in between replays the row, and the step marks make the replay a no-op.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import parse_qsl, quote, urlsplit

from prometheus_client import CollectorRegistry

from studio_exporter.core.backoff import MAX_BACKOFF_SECONDS, SPREAD, Backoff
from studio_exporter.core.domain import ENDED, Execution, Flow, Step
from studio_exporter.core.eventstreams import (
    EXECUTION_ENDED,
    EXECUTION_STARTED,
    SIGNATURE_HEADER,
    STEP_ENDED,
    STUDIO_EVENT_TYPES,
    EventError,
    ExecutionEvent,
    StepEvent,
    complete_step,
    compute_signature,
    decode_event,
    execution_event,
    parse_delivery,
    step_event,
    url_variants,
    verify_signature,
)
from studio_exporter.core.transform import UNKNOWN_WIDGET_TYPE, ready_steps
from studio_exporter.sinks.selfmetrics import EventRestDisagreements, ExporterMetrics, PushMetrics
from studio_exporter.sources.studio_api import ApiError
from studio_exporter.store.protocols import InboxEvent, InboxFull, StateError, StateStore
from studio_exporter.web.server import HookResponse

log = logging.getLogger(__name__)

#: Where the receiver is mounted on the exporter's web server unless configured otherwise.
DEFAULT_WEBHOOK_PATH = "/webhooks/event-streams"
#: How long a step waits for the step before it, and an ended execution for its end step.
DEFAULT_REORDER_WINDOW = timedelta(seconds=30)
#: A tracked execution with no event for this long gets its steps read once over REST: if every
#: event announcing its end was lost, push alone would otherwise never learn it ended.
DEFAULT_IDLE_RECHECK = timedelta(minutes=10)
#: Executions kept in memory; beyond it, fully applied ones are forgotten (oldest first).
DEFAULT_MAX_TRACKED = 10_000
#: Inbox rows held in memory at once; beyond it the processor stops reading new ones.
DEFAULT_MAX_LOADED = 50_000
#: Inbox rows read per pass.
DEFAULT_BATCH_SIZE = 1_000
#: REST failures for one execution before its events are given up (logged and counted).
MAX_ATTEMPTS = 8
#: An execution whose apply failed is tried again up to 2 s later, then 4 s, 8 s, ... (at least
#: half of each: SPREAD).
APPLY_BACKOFF = Backoff(base=1.0, cap=MAX_BACKOFF_SECONDS, jitter=SPREAD)
#: A pass runs every second when idle: its success is written to the state at most this often.
REMEMBER_SUCCESS_EVERY = timedelta(seconds=30)

_OTHER_TYPE = "other"
#: A Studio event nests four levels deep; deeper JSON is refused before it is parsed.
MAX_NESTING_DEPTH = 32
#: Events (array entries) per delivery; a 1 MiB body holds about 1,700 Studio events.
MAX_EVENTS_PER_DELIVERY = 5_000


# -- receiving ------------------------------------------------------------------------------


def _json(status: int, **fields: object) -> HookResponse:
    return HookResponse(status, json.dumps(fields, sort_keys=True).encode() + b"\n")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")


def nesting_depth(body: bytes, *, limit: int = MAX_NESTING_DEPTH) -> int:
    """How deeply the JSON in ``body`` nests arrays and objects (brackets in strings ignored),
    up to ``limit + 1``; linear and without recursion, so it is safe on any input."""
    brackets = _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for step in brackets.translate(_BRACKET_STEPS):
        depth += step - 1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def _carries_body_hash(url: str) -> bool:
    query = urlsplit(url).query
    return any(name == "bodySHA256" for name, _ in parse_qsl(query, keep_blank_values=True))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


class WebhookReceiver:
    """The Event Streams webhook: a ``server.PostHook`` that commits events before answering.

    ``public_url`` is the sink URL as configured at Twilio, for when a proxy in front of the
    exporter changes the scheme, host or path (the request's query string, which carries
    ``bodySHA256``, is kept). ``on_accepted`` is called (from the HTTP thread) after new events
    were committed: ``PushProcessor.wake``.
    """

    def __init__(
        self,
        store: StateStore,
        auth_token: str,
        *,
        public_url: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        metrics: PushMetrics | CollectorRegistry | None,
        on_accepted: Callable[[], None] | None = None,
    ) -> None:
        """``metrics``: the push families to count into (one ``PushMetrics`` shared by every
        account's receiver and processor), or a registry to register a new set in."""
        if not auth_token:
            raise ValueError("the webhook receiver needs the account's auth token")
        self.store = store
        self.auth_token = auth_token
        self.public_url = public_url
        self.on_accepted = on_accepted
        self._credentials = basic_auth
        self._basic = (
            None
            if basic_auth is None
            else base64.b64encode(f"{basic_auth[0]}:{basic_auth[1]}".encode())
        )
        self.metrics = metrics if isinstance(metrics, PushMetrics) else PushMetrics(metrics)

    def __call__(self, url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        response = self._handle(url, headers, body)
        self.metrics.webhook_answered(response.status)
        return response

    def check_head(self, url: str, headers: Mapping[str, str]) -> HookResponse | None:
        """Before the body is read (``server.HeadCheck``): 403 when the signature is missing, or
        wrong for a URL carrying ``bodySHA256`` (Twilio's signature then covers the URL alone;
        the body is checked against the hash once read). None: read the body and go on."""
        signature = _header(headers, SIGNATURE_HEADER)
        if signature:
            candidates = self._signed_urls(url)
            if not all(_carries_body_hash(candidate) for candidate in candidates):
                return None
            given = signature.strip().encode("utf-8", "replace")
            valid = False
            for candidate in candidates:
                for variant in url_variants(candidate):
                    expected = compute_signature(self.auth_token, variant, b"").encode()
                    valid |= hmac.compare_digest(expected, given)
            if valid:
                return None
        response = _json(403, error="missing or invalid X-Twilio-Signature")
        self.metrics.webhook_answered(403)
        return response

    def _handle(self, url: str, headers: Mapping[str, str], body: bytes) -> HookResponse:
        signature = _header(headers, SIGNATURE_HEADER)
        if not signature or not any(
            verify_signature(self.auth_token, candidate, body, signature)
            for candidate in self._signed_urls(url)
        ):
            return _json(403, error="missing or invalid X-Twilio-Signature")
        if self._basic is not None and not self._basic_auth_ok(headers):
            return _json(401, error="basic auth required")
        if nesting_depth(body) > MAX_NESTING_DEPTH:
            return _json(400, error=f"JSON nested deeper than {MAX_NESTING_DEPTH} levels")
        try:
            delivery = parse_delivery(body)
        except (EventError, RecursionError) as error:
            return _json(400, error=str(error))
        if len(delivery.events) + delivery.rejected > MAX_EVENTS_PER_DELIVERY:
            return _json(413, error=f"more than {MAX_EVENTS_PER_DELIVERY} events in one delivery")
        by_type: dict[str, list[tuple[str, bytes]]] = {}
        ignored: Counter[str] = Counter()
        for event in delivery.events:
            if event.type in STUDIO_EVENT_TYPES:
                by_type.setdefault(event.type, []).append((event.id, event.payload))
            else:
                ignored[event.type] += 1
        accepted: dict[str, int] = {}
        try:
            # One transaction for the whole delivery: one fsync, and a full inbox refuses all
            # of it, so Twilio's retry is whole.
            with self.store.batch() as batch:
                for event_type, events in by_type.items():
                    accepted[event_type] = batch.enqueue_events(events)
        except InboxFull as error:
            log.warning("webhook delivery refused: %s", error)
            return _json(429, error="inbox full, retry later")
        except StateError as error:
            log.error("webhook delivery not stored: %s", error)
            return _json(503, error="state store unavailable")
        except Exception:
            # The database driver's own error (disk full, I/O, a lost PostgreSQL connection):
            # nothing was committed, so Twilio's retry is whole; 503 says "try again later".
            log.exception("webhook delivery not stored: the state store failed")
            return _json(503, error="state store unavailable")
        for event_type, events in by_type.items():
            new = accepted[event_type]
            self._count(event_type, "accepted", new)
            self._count(event_type, "duplicate", len(events) - new)
        for event_type, count in ignored.items():
            log.debug("ignoring %d event(s) of type %s", count, event_type[:100])
            self._count(_OTHER_TYPE, "ignored", count)
        self._count("unknown", "rejected", delivery.rejected)
        total_new = sum(accepted.values())
        if total_new and self.on_accepted is not None:
            self.on_accepted()
        return _json(
            200,
            accepted=total_new,
            duplicate=sum(len(events) for events in by_type.values()) - total_new,
            ignored=sum(ignored.values()),
            rejected=delivery.rejected,
        )

    def signed_url(self, url: str) -> str:
        """The URL the signature is checked against: ``public_url`` if set, else ``url``."""
        if self.public_url is None:
            return url
        query = url.partition("?")[2].partition("#")[0]
        if query and "?" not in self.public_url:
            return f"{self.public_url}?{query}"
        return self.public_url

    def _signed_urls(self, url: str) -> list[str]:
        signed = self.signed_url(url)
        if self._credentials is None or "@" in signed.partition("://")[2].partition("/")[0]:
            return [signed]
        # The sink URL at Twilio carries the basic auth credentials, which the Host header
        # does not: try the URL with them too, in case Twilio signs the URL as configured.
        user, password = (quote(part, safe="") for part in self._credentials)
        scheme, sep, rest = signed.partition("://")
        return [signed, f"{scheme}{sep}{user}:{password}@{rest}"]

    def _basic_auth_ok(self, headers: Mapping[str, str]) -> bool:
        assert self._basic is not None
        value = _header(headers, "Authorization") or ""
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64encode(base64.b64decode(credentials.strip(), validate=True))
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._basic)

    def _count(self, event_type: str, result: str, count: int) -> None:
        if count > 0:
            self.metrics.events_received(event_type, result, count)


# -- processing -----------------------------------------------------------------------------


class PushApi(Protocol):
    """The REST reads the processor needs (``StudioApi`` has them)."""

    async def fetch_step(self, flow_sid: str, execution_sid: str, step_sid: str) -> Step: ...

    async def list_steps(self, flow_sid: str, execution_sid: str) -> list[Step]: ...

    async def fetch_execution(self, flow_sid: str, execution_sid: str) -> Execution: ...


class PushTarget(Protocol):
    """Where executions are exported (``recording.Recorder`` is one)."""

    async def apply_pushed_many(
        self,
        flow_sid: str,
        executions: Sequence[tuple[Execution, Sequence[Step]]],
        *,
        refresh_gauges: bool = True,
    ) -> None: ...

    async def flow_definition(self, flow_sid: str, revision: int | None = None) -> Flow:
        """The flow with its definition, at ``revision`` or newer (read once per revision)."""
        ...


@dataclass(slots=True)
class ProcessReport:
    """What one pass of the processor did, for logs and tests."""

    loaded: int = 0
    steps_applied: int = 0
    executions_applied: int = 0
    acked: int = 0
    dropped: int = 0
    waiting: int = 0
    failures: int = 0


@dataclass(slots=True)
class _Tracked:
    """What is known of one execution in progress."""

    sid: str
    flow_sid: str
    flow_known: bool  # flow_sid is the execution's (not only a subflow step's)
    first_seen: float
    touched: float
    execution: Execution | None = None
    started_rows: set[int] = field(default_factory=set)  # committed by the next apply
    ended: ExecutionEvent | None = None
    ended_rows: set[int] = field(default_factory=set)
    steps: dict[str, Step] = field(default_factory=dict)
    incomplete: dict[str, StepEvent] = field(default_factory=dict)
    step_rows: dict[str, set[int]] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)  # unapplied step sid -> arrival
    applied: set[str] = field(default_factory=set)
    needs_seed: bool = False  # the store knew it when first tracked: read its steps once
    gap_listed: bool = False
    end_listed: bool = False
    end_recheck_at: float | None = None
    retry_at: float = 0.0
    failures: int = 0

    def rows(self) -> set[int]:
        rows = self.started_rows | self.ended_rows
        for step_rows in self.step_rows.values():
            rows |= step_rows
        return rows

    def merge(
        self, steps: Iterable[Step], now: float, disagreements: EventRestDisagreements
    ) -> None:
        """Add steps read over REST. Where a pushed copy differs, REST wins, counted by field.

        The pushed ``date_created`` (milliseconds) is kept when it is the REST one's second.
        """
        for step in steps:
            if step.sid in self.incomplete:
                self.steps[step.sid] = complete_step(self.incomplete.pop(step.sid), step)
                continue
            pushed = self.steps.get(step.sid)
            if pushed is None:
                self.steps[step.sid] = step
                if step.sid not in self.applied:
                    self.arrived.setdefault(step.sid, now)
                continue
            for name in differing_fields(pushed, step):
                disagreements.count(name)
            same_second = pushed.date_created.replace(microsecond=0) == step.date_created
            self.steps[step.sid] = (
                replace(step, date_created=pushed.date_created) if same_second else step
            )


@dataclass(frozen=True, slots=True)
class _Plan:
    """An apply decided for one execution: the steps to hand over, and which are new."""

    tracked: _Tracked
    execution: Execution
    steps: list[Step]
    ready: set[str]


def differing_fields(pushed: Step, rest: Step) -> list[str]:
    """Twilio's names of the fields where a pushed step and Studio's REST copy differ.

    ``date_created`` differs only beyond the second (REST has whole seconds); ``type`` is
    compared when the pushed step has one (from the event, or from the flow definition).
    """
    differing = [
        name
        for name, ours, theirs in (
            ("name", pushed.event, rest.event),
            ("transitioned_from", pushed.transitioned_from, rest.transitioned_from),
            ("transitioned_to", pushed.transitioned_to, rest.transitioned_to),
            ("parent_step_sid", pushed.parent_step_sid, rest.parent_step_sid),
            ("flow_sid", pushed.flow_sid, rest.flow_sid),
        )
        if ours != theirs
    ]
    if pushed.widget_type and pushed.widget_type != rest.widget_type:
        differing.append("type")
    if pushed.date_created.replace(microsecond=0) != rest.date_created.replace(microsecond=0):
        differing.append("date_created")
    return differing


class PushProcessor:
    """Drains the event inbox into ``target.apply_pushed_many``; see the module docstring."""

    def __init__(
        self,
        store: StateStore,
        api: PushApi,
        target: PushTarget,
        *,
        reorder_window: timedelta = DEFAULT_REORDER_WINDOW,
        idle_recheck: timedelta = DEFAULT_IDLE_RECHECK,
        fetch_on_end: bool = True,
        hold_until_end: bool = False,
        max_tracked: int = DEFAULT_MAX_TRACKED,
        max_loaded: int = DEFAULT_MAX_LOADED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        registry: CollectorRegistry | None = None,
        health: ExporterMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        metrics: PushMetrics | None = None,
        holds: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store = store
        self.api = api
        #: With replicas (leases), whether this replica holds the account: only the holder
        #: applies the inbox, which every replica's receiver fills.
        self.holds = holds
        self.target = target
        self.reorder_window = reorder_window.total_seconds()
        self.idle_recheck = idle_recheck.total_seconds()
        self.fetch_on_end = fetch_on_end
        self.hold_until_end = hold_until_end and fetch_on_end
        self.max_tracked = max_tracked
        self.max_loaded = max_loaded
        self.batch_size = batch_size
        self.monotonic = monotonic
        self.health = health
        self.clock = clock
        self._remembered_at: float | None = None
        self._tracked: dict[str, _Tracked] = {}
        self._loaded: set[int] = set()
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Passes in a row that failed; /health/ready reports push as degraded while > 0.
        self.consecutive_failures = 0
        #: The push families: shared with the other accounts' processors and receivers when
        #: given, else a new set registered in ``registry``.
        self.metrics = metrics if metrics is not None else PushMetrics(registry)

    # -- running ------------------------------------------------------------------------------

    def wake(self) -> None:
        """Ask for a pass now; safe to call from any thread (the receiver's)."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(wakeup.set)

    async def run(self, stop: asyncio.Event, idle: timedelta = timedelta(seconds=1)) -> None:
        """Process until ``stop`` is set; a failing pass is logged and retried."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        while not stop.is_set():
            self._wakeup.clear()
            try:
                report = await self.process_once()
            except Exception:
                log.exception("push processing pass failed")
                report = ProcessReport(failures=1)
            self.consecutive_failures = self.consecutive_failures + 1 if report.failures else 0
            # An execution waiting out its backoff after a failure is not a success either.
            if not report.failures and not any(t.failures for t in self._tracked.values()):
                self._succeeded()
            if report.loaded and not report.failures:
                continue  # more may be queued behind a full batch
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _first(stop.wait(), self._wakeup.wait()), timeout=idle.total_seconds()
                )

    def forget(self) -> None:
        """Drop what is held in memory: the account moved to another replica, which goes on
        from the inbox (nothing read here was acknowledged without its effects committed)."""
        self._tracked.clear()
        self._loaded.clear()

    async def process_once(self) -> ProcessReport:
        """Read new inbox events, advance every execution with work, acknowledge what applied."""
        report = ProcessReport()
        if not self.holds():
            self.forget()
            return report
        now = self.monotonic()
        to_ack: set[int] = set()
        for row in self._load():
            report.loaded += 1
            self._accept(row, now, to_ack, report)
        plans: list[_Plan] = []
        due = [
            tracked
            for tracked in list(self._tracked.values())
            if tracked.retry_at <= now and self._has_work(tracked, now)
        ]
        # The executions' REST reads run side by side (the limiter bounds them), not one after
        # another: every step of the pass waits for the slowest read, not for their sum.
        prepared = await asyncio.gather(
            *(self._prepare(tracked, now) for tracked in due), return_exceptions=True
        )
        for tracked, outcome in zip(due, prepared, strict=True):
            if isinstance(outcome, ApiError | EventError | StateError):
                report.failures += 1
                self._failed(tracked, now, outcome, to_ack, report)
            elif isinstance(outcome, BaseException):
                raise outcome
            elif outcome is not None:
                plans.append(outcome)
        # One apply (one commit) per flow and pass rather than per execution: every commit is
        # an fsync and wakes the span shipper, and a step reaches /metrics only once the
        # applies before it in the pass are done.
        by_flow: dict[str, list[_Plan]] = {}
        for plan in plans:
            by_flow.setdefault(plan.tracked.flow_sid, []).append(plan)
        for index, (flow_sid, group) in enumerate(by_flow.items()):
            try:
                await self.target.apply_pushed_many(
                    flow_sid,
                    [(plan.execution, plan.steps) for plan in group],
                    # The gauges are recomputed from the store: once per pass is enough.
                    refresh_gauges=index == len(by_flow) - 1,
                )
            except (ApiError, StateError) as error:
                for plan in group:
                    report.failures += 1
                    self._failed(plan.tracked, now, error, to_ack, report)
                continue
            for plan in group:
                plan.tracked.failures = 0
                self._applied(plan, now, to_ack, report)
        if to_ack:
            report.acked = self.store.ack_events(to_ack)
            self._loaded -= to_ack
        self._evict()
        report.waiting = sum(len(t.arrived) for t in self._tracked.values())
        self.metrics.set_events_pending(self.store.count_pending_events())
        return report

    def _succeeded(self) -> None:
        """A pass without failure: the freshness gauge moves; the state learns it now and then."""
        at = self.clock()
        if self.health is not None:
            self.health.succeeded("push", at)
        now = self.monotonic()
        every = REMEMBER_SUCCESS_EVERY.total_seconds()
        if self._remembered_at is not None and now - self._remembered_at < every:
            return
        try:
            self.store.set_last_success("push", at)
        except StateError as error:
            log.warning("could not record the push pass in the state: %s", error)
            return
        self._remembered_at = now

    # -- reading the inbox --------------------------------------------------------------------

    def _load(self) -> list[InboxEvent]:
        if len(self._loaded) >= self.max_loaded:
            return []
        # next_events reads from the oldest row, and rows waiting for their predecessors stay
        # in the inbox: read past the ones already held.
        rows = self.store.next_events(len(self._loaded) + self.batch_size)
        fresh = [row for row in rows if row.id not in self._loaded]
        self._loaded.update(row.id for row in fresh)
        return fresh

    def _accept(self, row: InboxEvent, now: float, to_ack: set[int], report: ProcessReport) -> None:
        try:
            event = decode_event(row.payload)
            if event.type == STEP_ENDED:
                self._accept_step(row, step_event(event), now, to_ack)
            elif event.type in (EXECUTION_STARTED, EXECUTION_ENDED):
                self._accept_execution(row, execution_event(event), now, to_ack)
            else:
                raise EventError(f"unexpected event type {event.type[:100]}")
        except EventError as error:
            log.warning("dropping inbox event %s: %s", row.event_id[:64], error)
            self.metrics.events_dropped("malformed")
            report.dropped += 1
            to_ack.add(row.id)

    def _accept_step(
        self, row: InboxEvent, pushed: StepEvent, now: float, to_ack: set[int]
    ) -> None:
        # Only a top-level step is known to carry the execution's own flow sid (a subflow's
        # steps carry the subflow's).
        top_level = "parent_step_sid" in pushed.fields and pushed.fields["parent_step_sid"] is None
        tracked = self._track(pushed.execution_sid, pushed.flow_sid, top_level, now)
        if tracked is None or pushed.sid in tracked.applied:
            to_ack.add(row.id)  # its effects are committed already
            return
        tracked.step_rows.setdefault(pushed.sid, set()).add(row.id)
        tracked.arrived.setdefault(pushed.sid, now)
        if pushed.step is not None:
            tracked.steps[pushed.sid] = pushed.step
            tracked.incomplete.pop(pushed.sid, None)
        elif pushed.sid not in tracked.steps:
            tracked.incomplete[pushed.sid] = pushed

    def _accept_execution(
        self, row: InboxEvent, info: ExecutionEvent, now: float, to_ack: set[int]
    ) -> None:
        tracked = self._track(info.execution_sid, info.flow_sid, True, now)
        if tracked is None:
            to_ack.add(row.id)
            return
        if info.ended:
            tracked.ended = info
            tracked.ended_rows.add(row.id)
            if info.date_created is not None:
                tracked.execution = info.execution()
            elif tracked.execution is not None:
                tracked.execution = info.execution(tracked.execution.date_created)
        else:
            tracked.started_rows.add(row.id)
            if tracked.execution is None and info.date_created is not None:
                tracked.execution = info.execution()

    def _track(
        self, execution_sid: str, flow_sid: str, flow_known: bool, now: float
    ) -> _Tracked | None:
        """The execution's entry, made if new; None when the store says it is done."""
        tracked = self._tracked.get(execution_sid)
        if tracked is None:
            if self.store.is_done(execution_sid):
                return None
            tracked = _Tracked(execution_sid, flow_sid, flow_known, now, now)
            tracked.needs_seed = self.store.is_known(execution_sid)
            self._tracked[execution_sid] = tracked
        elif flow_known and not tracked.flow_known:
            tracked.flow_sid, tracked.flow_known = flow_sid, True
        tracked.touched = now
        return tracked

    # -- advancing one execution ----------------------------------------------------------

    def _has_work(self, tracked: _Tracked, now: float) -> bool:
        if tracked.started_rows or tracked.ended_rows or tracked.arrived or tracked.incomplete:
            return True
        if self._idle(tracked, now):
            return True
        return tracked.end_recheck_at is not None and tracked.end_recheck_at <= now

    def _idle(self, tracked: _Tracked, now: float) -> bool:
        return (
            tracked.ended is None
            and tracked.flow_known
            and now - tracked.touched >= self.idle_recheck
        )

    async def _prepare(self, tracked: _Tracked, now: float) -> _Plan | None:
        """Do the REST reads the execution needs and pick the steps to apply, if any."""
        sid = tracked.sid
        if not tracked.flow_known:
            # Only subflow steps so far: they carry the subflow's sid, not the execution's.
            # Wait for an execution event or a top-level step: nothing is dropped meanwhile.
            return None
        flow_sid = tracked.flow_sid
        if tracked.needs_seed:
            # Known to the store but not to this process (a restart, an eviction): learn the
            # steps applied before, or every step that follows would wait for its predecessor.
            self._merge(tracked, await self._list_steps(flow_sid, sid, "seed_list"), now)
            tracked.needs_seed = False
        for step_sid, partial in list(tracked.incomplete.items()):
            self.metrics.rest_read("step_fetch")
            fetched = await self.api.fetch_step(flow_sid, sid, step_sid)
            tracked.steps[step_sid] = complete_step(partial, fetched)
            del tracked.incomplete[step_sid]
        if tracked.execution is None:
            tracked.execution = self._stored_execution(flow_sid, sid, tracked.ended)
        if tracked.execution is None:
            if now - tracked.first_seen < self.reorder_window and tracked.ended is None:
                return None  # the started event may still come
            self.metrics.rest_read("execution_fetch")
            fetched_execution = await self.api.fetch_execution(flow_sid, sid)
            tracked.execution = (
                fetched_execution
                if tracked.ended is None
                else tracked.ended.execution(fetched_execution.date_created)
            )
        # Typed before any REST read, so that a type Studio gives otherwise is counted.
        flow = await self.target.flow_definition(flow_sid, tracked.execution.flow_version)
        await self._type_steps(tracked, flow)
        if self._idle(tracked, now):
            self._merge(tracked, await self._list_steps(flow_sid, sid, "idle_list"), now)
            tracked.touched = now
        recheck = tracked.end_recheck_at is not None and tracked.end_recheck_at <= now
        # The end is known from the execution.ended event or from the step into Ended (its
        # event may have been lost): either way, read Studio's list once before the apply
        # that ends the execution, since an ended execution is never read again.
        ending = tracked.ended is not None or any(
            step.parent_step_sid is None and step.transitioned_to == ENDED
            for step in tracked.steps.values()
        )
        if ending and self.fetch_on_end and (not tracked.end_listed or recheck):
            self._merge(tracked, await self._list_steps(flow_sid, sid, "end_list"), now)
            tracked.end_listed = True
        execution = tracked.execution
        pending = tracked.steps.keys() - tracked.applied
        if ending and tracked.end_listed:
            ready = set(pending)  # Studio's own list after the end: nothing more will come
        elif self.hold_until_end:
            ready = set()  # the steps' context comes with Studio's list at the end
        else:
            ready = ready_steps(execution, tracked.steps.values(), tracked.applied, flow)
            if not tracked.gap_listed and self._overdue(tracked, pending - ready, now):
                self._merge(tracked, await self._list_steps(flow_sid, sid, "gap_list"), now)
                tracked.gap_listed = True
                await self._type_steps(tracked, flow)
                pending = tracked.steps.keys() - tracked.applied
                ready = ready_steps(execution, tracked.steps.values(), tracked.applied, flow)
            ready |= self._overdue(tracked, pending - ready, now)
        if not ready and not tracked.started_rows and not tracked.ended_rows and not recheck:
            return None
        applying = tracked.applied | ready
        steps = sorted((tracked.steps[s] for s in applying), key=_order)
        return _Plan(tracked, execution, steps, ready)

    def _merge(self, tracked: _Tracked, steps: Iterable[Step], now: float) -> None:
        tracked.merge(steps, now, self.metrics.disagreements)

    async def _type_steps(self, tracked: _Tracked, flow: Flow) -> None:
        """Give pushed steps (Twilio's carry no type) their widget's type from the definition."""
        flows = {flow.sid: flow}
        for step_sid, step in list(tracked.steps.items()):
            if step.widget_type:
                continue
            step_flow = flows.get(step.flow_sid)
            if step_flow is None:
                # A subflow is a flow of its own; its revision is not in its steps' events.
                step_flow = flows[step.flow_sid] = await self.target.flow_definition(step.flow_sid)
            widget_type = step_flow.widget_type(step.transitioned_from) or UNKNOWN_WIDGET_TYPE
            tracked.steps[step_sid] = replace(step, widget_type=widget_type)

    def _stored_execution(
        self, flow_sid: str, sid: str, ended: ExecutionEvent | None
    ) -> Execution | None:
        """The execution as the store last recorded it (after a restart or an eviction)."""
        if not self.store.is_known(sid):
            return None
        for execution in self.store.active_executions(flow_sid):
            if execution.sid == sid:
                return execution if ended is None else ended.execution(execution.date_created)
        return None

    def _overdue(self, tracked: _Tracked, sids: Iterable[str], now: float) -> set[str]:
        return {s for s in sids if now - tracked.arrived.get(s, now) >= self.reorder_window}

    def _applied(self, plan: _Plan, now: float, to_ack: set[int], report: ProcessReport) -> None:
        """Book a committed apply: acknowledge the rows whose effects it holds."""
        tracked = plan.tracked
        report.executions_applied += 1
        report.steps_applied += len(plan.ready)
        tracked.applied |= plan.ready
        for step_sid in tracked.applied & tracked.step_rows.keys():
            tracked.arrived.pop(step_sid, None)
            to_ack.update(tracked.step_rows.pop(step_sid))
        for step_sid in plan.ready:
            tracked.arrived.pop(step_sid, None)
        to_ack.update(tracked.started_rows)
        tracked.started_rows.clear()
        if self.store.is_done(tracked.sid):
            # Every step is exported; anything still held for it is covered.
            to_ack.update(tracked.rows())
            del self._tracked[tracked.sid]
            return
        to_ack.update(tracked.ended_rows)
        tracked.ended_rows.clear()
        if tracked.ended is not None:
            # Ended, but its end step is not visible yet: read it again after the window; the
            # poller believes Studio's "ended" on the second read.
            tracked.end_recheck_at = now + self.reorder_window

    async def _list_steps(self, flow_sid: str, execution_sid: str, reason: str) -> list[Step]:
        self.metrics.rest_read(reason)
        return await self.api.list_steps(flow_sid, execution_sid)

    def _failed(
        self,
        tracked: _Tracked,
        now: float,
        error: Exception,
        to_ack: set[int],
        report: ProcessReport,
    ) -> None:
        tracked.failures += 1
        if tracked.failures >= MAX_ATTEMPTS and not isinstance(error, StateError):
            # Not a passing failure (a step Studio no longer has, a flow deleted): give up the
            # events; in hybrid mode the polling sweep still reads what Studio has.
            log.warning(
                "giving up %d event(s) of execution %s after %d attempts: %s",
                len(tracked.rows()),
                tracked.sid,
                tracked.failures,
                error,
            )
            dropped = tracked.rows()
            self.metrics.events_dropped("api_error", len(dropped))
            report.dropped += len(dropped)
            to_ack.update(dropped)
            del self._tracked[tracked.sid]
            return
        delay = APPLY_BACKOFF.delay(tracked.failures)
        tracked.retry_at = now + delay
        log.warning(
            "push: execution %s not applied (%s); retrying in %.0fs", tracked.sid, error, delay
        )

    def _evict(self) -> None:
        excess = len(self._tracked) - self.max_tracked
        if excess <= 0:
            return
        idle = sorted(
            (
                t
                for t in self._tracked.values()
                if not t.rows() and not t.arrived and not t.incomplete and t.ended is None
            ),
            key=lambda t: t.touched,
        )
        for tracked in idle[:excess]:
            del self._tracked[tracked.sid]


def _order(step: Step) -> tuple[datetime, str]:
    return (step.date_created, step.sid)


async def _first(*waits: Awaitable[object]) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
