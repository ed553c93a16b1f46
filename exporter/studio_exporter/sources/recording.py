"""The export path that polling and push share: plan → record → commit, one flow per batch.

``Recorder`` turns what was read of an execution (its steps, by poll or push) into exports:
``plan_update`` against the store's exported-step marks, then the metrics, the spans and the
marks, committed to the store in one transaction with the metric snapshot and the flow's
cursor. The transaction runs in a worker thread, so the event loop goes on reading meanwhile.
A rolled-back commit restores the in-memory metrics, so a retry never counts a step twice.
Planning and committing run under one lock, so that polling and push (hybrid mode) never both
export the same step.

The recorder does not list or schedule anything: the flows it exports for are asked of a
``FlowCatalog`` (the poller's), and the span shipper's wake-up is given to its constructor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol, TypeVar

from studio_exporter.core.domain import Execution, ExecutionPath, Flow, Step
from studio_exporter.core.pipeline import ExecutionUpdate, plan_update
from studio_exporter.sinks.metrics import FlowLabels, StudioMetrics, UnitMetrics
from studio_exporter.sinks.otlp import encode_span
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sinks.spans import SpanOptions, execution_span, trace_id_hex, visit_span
from studio_exporter.store.protocols import LeaseLost, StateStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")

#: Executions planned, or their spans encoded, between two turns of the event loop: a batch of
#: them takes milliseconds of CPU, during which answered requests would wait and no new one
#: would be sent.
YIELD_EVERY = 8


class FlowCatalog(Protocol):
    """The flows a recorder exports for, and their names (the poller lists and reads them)."""

    @property
    def flows(self) -> Mapping[str, Flow]:
        """The followed flows, by sid."""
        ...

    async def fetch_labels(self, flow_sid: str) -> FlowLabels:
        """The flow's labels, reading the flow when it is not known yet (a subflow, say)."""
        ...

    def labels(self, flow_sid: str) -> FlowLabels:
        """The flow's labels from what is known, without reading (its sid as name if unknown)."""
        ...

    async def pushed_flow(self, flow_sid: str) -> Flow | None:
        """The followed flow that pushed events name, or None when it is not followed here."""
        ...

    async def flow_definition(self, flow_sid: str, revision: int | None = None) -> Flow:
        """The flow with its definition, at ``revision`` or newer (read once per revision)."""
        ...


class Tally(Protocol):
    """Where a commit's exports are counted (a poll cycle's report)."""

    steps_exported: int
    executions_ended: int


@dataclass(slots=True)
class _PushTally:
    """Push keeps no cycle report: its counts go nowhere."""

    steps_exported: int = 0
    executions_ended: int = 0


class Recorder:
    """Exports executions' updates: metrics, spans and marks committed in one transaction.

    ``on_spans_queued`` is called after a commit that queued spans (the shipper's wake-up), so
    they leave now.
    """

    def __init__(
        self,
        store: StateStore,
        metrics: StudioMetrics,
        health: ExporterMetrics,
        *,
        catalog: FlowCatalog,
        span_options: SpanOptions,
        clock: Callable[[], datetime],
        account_sid: str,
        on_spans_queued: Callable[[], None] | None = None,
        units: UnitMetrics | None = None,
        unit_of: Callable[[str], str] = str,
    ) -> None:
        self.store = store
        #: The unit a flow's exports are counted and fenced under: the flow, or its account.
        self.unit_of = unit_of
        self.metrics = metrics
        #: Where replicas lease flows: each flow's series, snapshotted with its commits.
        self.units = units
        self.health = health
        self.catalog = catalog
        self.span_options = span_options
        self.clock = clock
        #: The account whose flows these are: the first label of every series recorded.
        self.account_sid = account_sid
        self.on_spans_queued = on_spans_queued
        self._ended_without_end_step: set[str] = set()
        self._in_progress: dict[str, dict[tuple[str, str], int]] = {}
        #: Followed executions whose anomalies were logged already (logged once per execution).
        self._anomalies_logged: set[str] = set()
        # Reading what is exported, planning and committing happen under this lock, so that
        # polling and push (hybrid mode) never both export the same step.
        self._export_lock = asyncio.Lock()

    def metrics_for(self, flow_sid: str) -> StudioMetrics:
        """Where the flow's exports are counted: the account's metrics, or the flow's unit's.

        Raises ``LeaseLost`` for a leased flow this replica does not hold (any more).
        """
        if self.units is None:
            return self.metrics
        unit = self.units.unit(self.unit_of(flow_sid))
        if unit is None:
            raise LeaseLost(f"flow {flow_sid} of account {self.account_sid} is not held here")
        return unit

    def drop_tracking(self, sids: Iterable[str]) -> None:
        """Forget what is held in memory about executions no longer followed."""
        for sid in sids:
            self._in_progress.pop(sid, None)
            self._ended_without_end_step.discard(sid)
            self._anomalies_logged.discard(sid)

    # -- poll ---------------------------------------------------------------------------------

    async def export_read(
        self,
        flow: Flow,
        read: Sequence[tuple[Execution, list[Step]]],
        report: Tally,
        *,
        cursor: datetime | None,
        forget: Sequence[str] = (),
    ) -> None:
        """Plan and apply executions whose steps have been read, in one transaction.

        ``forget`` executions are forgotten and ``cursor`` committed in the same transaction.
        """
        # What is already exported is read again under the lock: in hybrid mode the push
        # processor may have exported some of these steps while the requests were in flight.
        async with self._export_lock:
            sids = [execution.sid for execution, _ in read]
            known = self.store.known_executions(sids)
            done = self.store.done_executions(sids) if known else set()
            updates: list[ExecutionUpdate] = []
            for index, (execution, steps) in enumerate(read, 1):
                if execution.sid not in done:
                    first_seen = execution.sid not in known
                    updates.append(self._plan(execution, steps, flow, first_seen=first_seen))
                if index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            await self._apply(flow, updates, report, cursor=cursor, forget=forget)

    # -- push (Event Streams) -----------------------------------------------------------------

    async def apply_pushed(
        self,
        flow_sid: str,
        execution: Execution,
        steps: Sequence[Step],
        *,
        refresh_gauges: bool = True,
    ) -> None:
        """Export what webhook events brought for one execution, through the polling path.

        ``steps`` are the execution's steps known so far (any subset, in any order). The same
        ``plan_update`` and ``_apply`` as polling run on them, so a step counts once whether
        push or poll saw it first: the store's exported-step marks decide. An execution
        already done is left alone. Raises ``ApiError`` when the flow cannot be read (the
        caller keeps the events and retries) and ``StateError`` when the commit fails.
        """
        await self.apply_pushed_many(flow_sid, [(execution, steps)], refresh_gauges=refresh_gauges)

    async def apply_pushed_many(
        self,
        flow_sid: str,
        executions: Sequence[tuple[Execution, Sequence[Step]]],
        *,
        refresh_gauges: bool = True,
    ) -> None:
        """``apply_pushed`` for several executions of one flow, in one transaction."""
        flow = await self.catalog.pushed_flow(flow_sid)
        if flow is None:
            return
        async with self._export_lock:
            updates: list[ExecutionUpdate] = []
            for execution, steps in executions:
                first_seen = not self.store.is_known(execution.sid)
                if not first_seen and self.store.is_done(execution.sid):
                    continue
                updates.append(self._plan(execution, steps, flow, first_seen=first_seen))
            if updates:
                await self._apply(flow, updates, _PushTally(), cursor=None)
        if refresh_gauges:
            self.refresh_gauges()

    async def flow_definition(self, flow_sid: str, revision: int | None = None) -> Flow:
        """The flow with its definition, at ``revision`` or newer (read once per revision)."""
        return await self.catalog.flow_definition(flow_sid, revision)

    # -- plan → record → commit ---------------------------------------------------------------

    def _plan(
        self, execution: Execution, steps: Sequence[Step], flow: Flow, *, first_seen: bool
    ) -> ExecutionUpdate:
        """What is new in the execution, against the store's marks (call under the lock)."""
        exported = (
            set()
            if first_seen
            else self.store.exported_steps(execution.sid, [step.sid for step in steps])
        )
        return plan_update(
            execution,
            steps,
            flow,
            exported=exported,
            first_seen=first_seen,
            status_ended=self._status_ended(execution),
        )

    def _status_ended(self, execution: Execution) -> bool:
        """Studio says ended but no step to Ended was seen: believe it on the second read."""
        if not execution.is_ended:
            self._ended_without_end_step.discard(execution.sid)
            return False
        if execution.sid in self._ended_without_end_step:
            self._ended_without_end_step.discard(execution.sid)
            return True
        self._ended_without_end_step.add(execution.sid)
        return False

    async def _apply(
        self,
        flow: Flow,
        updates: Iterable[ExecutionUpdate],
        report: Tally,
        *,
        cursor: datetime | None,
        forget: Sequence[str] = (),
    ) -> None:
        labels = FlowLabels(flow.sid, flow.name, self.account_sid)
        label_cache: dict[str, FlowLabels] = {flow.sid: labels}
        updates = list(updates)
        for update in updates:
            for step in update.new_steps:
                if step.flow_sid not in label_cache:
                    label_cache[step.flow_sid] = await self.catalog.fetch_labels(step.flow_sid)
        # Spans depend on nothing the transaction changes: encoded before it, with turns of the
        # event loop in between. The metrics are recorded here too, then the transaction runs
        # in a worker thread; the export lock keeps every other apply out until it is over.
        flow_names = {sid: labels.flow_name for sid, labels in label_cache.items()}
        span_payloads: list[bytes] = []
        for index, update in enumerate(updates, 1):
            self._encode_spans(update, flow_names, span_payloads)
            if index % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        metrics = self.metrics_for(flow.sid)
        unit = self.unit_of(flow.sid)
        snapshot_before = metrics.snapshot()
        now = self.clock()
        anomalies: list[_Anomaly] = []
        committed = False
        try:
            for index, update in enumerate(updates, 1):
                self._record(update, labels, label_cache, now, report, anomalies, metrics)
                if index % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            snapshot = metrics.snapshot()
            dropped, cancelled = await _run_to_completion(
                lambda: self._commit(
                    updates,
                    span_payloads,
                    forget=forget,
                    cursor=(flow.sid, cursor),
                    unit=unit,
                    snapshot=snapshot,
                )
            )
            committed = True
        except BaseException:
            # The transaction rolled back: so must the in-memory metrics, or a retry would
            # count the same steps twice.
            if not committed:
                metrics.restore(snapshot_before)
            raise
        finished: list[str] = []
        for update in updates:
            done = _is_done(update)
            self._track_open(update, done)
            if done:
                self._ended_without_end_step.discard(update.execution.sid)
                finished.append(update.execution.sid)
        if dropped:
            self.health.spans_dropped(dropped)
        self._report_anomalies(anomalies)
        self._anomalies_logged.difference_update(finished)
        if span_payloads and self.on_spans_queued is not None:
            self.on_spans_queued()
        if cancelled:
            raise asyncio.CancelledError

    def _commit(
        self,
        updates: Sequence[ExecutionUpdate],
        span_payloads: Sequence[bytes],
        *,
        forget: Sequence[str],
        cursor: tuple[str, datetime | None],
        unit: str,
        snapshot: bytes,
    ) -> int:
        """The transaction of an apply (run off the event loop): the spans dropped to the cap."""
        dropped = 0
        with self.store.batch() as batch:
            for update in updates:
                batch.mark_steps_exported(
                    update.execution.sid, [step.sid for step in update.new_steps]
                )
                batch.upsert_execution(update.execution, done=_is_done(update))
            if span_payloads:
                dropped = batch.enqueue_spans(span_payloads)
            if forget:
                batch.forget_executions(forget)
            flow_sid, position = cursor
            if position is not None:
                batch.set_cursor(flow_sid, position)
            if self.units is None:
                batch.save_metric_snapshot(snapshot)
            else:
                batch.save_unit_snapshot(unit, snapshot)
            # Last, so the lease row is locked only for the commit (store.leases).
            batch.hold_unit(unit)
        return dropped

    def _report_anomalies(self, anomalies: Sequence[_Anomaly]) -> None:
        """Count what the last commit left out of the histograms; log once per execution."""
        for anomaly in anomalies:
            self.health.anomaly(anomaly.kind)
            if anomaly.execution_sid in self._anomalies_logged:
                continue
            self._anomalies_logged.add(anomaly.execution_sid)
            log.warning(
                "execution %s: %s (%s): Studio's timestamps are kept as given and the duration "
                "is left out of its histogram (counted in twilio_studio_exporter_anomalies_total)",
                anomaly.execution_sid,
                anomaly.kind,
                anomaly.detail,
            )

    def _encode_spans(
        self, update: ExecutionUpdate, flow_names: Mapping[str, str], payloads: list[bytes]
    ) -> None:
        """The spans of the visits the update closes, and of the execution if it ended."""
        execution = update.execution
        flow = self.catalog.flows.get(execution.flow_sid) or _unknown_flow(execution.flow_sid)
        for visit in update.span_visits:
            payloads.append(
                encode_span(
                    visit_span(update.path, flow, visit, self.span_options, flow_names=flow_names)
                )
            )
        if update.ended:
            payloads.append(
                encode_span(execution_span(_as_ended(update.path), flow, self.span_options))
            )

    def _record(
        self,
        update: ExecutionUpdate,
        labels: FlowLabels,
        label_cache: dict[str, FlowLabels],
        now: datetime,
        report: Tally,
        anomalies: list[_Anomaly],
        metrics: StudioMetrics,
    ) -> None:
        """The update's metrics (inside the transaction: a rollback restores them)."""
        execution = update.execution
        trace_hex = trace_id_hex(execution.sid)
        if update.started:
            metrics.record_execution_started(labels)
        for step in update.new_steps:
            metrics.record_step(label_cache.get(step.flow_sid, labels), step)
            self.health.export_lag(max(0.0, (now - step.date_created).total_seconds()))
        for visit in update.closed_visits:
            duration = visit.duration_seconds
            if duration is not None and duration < 0:
                detail = f"{visit.widget} left {-duration:g}s before it was entered"
                anomalies.append(_Anomaly(execution.sid, "negative_visit_duration", detail))
                continue
            metrics.record_visit(label_cache.get(visit.flow_sid, labels), visit, trace_hex)
        for _gap in update.new_gaps:
            metrics.record_gap(labels)
        if update.ended:
            duration = update.duration_seconds
            if duration is not None and duration < 0:
                detail = f"ended {-duration:g}s before it was created"
                anomalies.append(_Anomaly(execution.sid, "negative_execution_duration", detail))
                duration = None
            metrics.record_execution_ended(labels, update.final_widget, duration, trace_hex)
            report.executions_ended += 1
        report.steps_exported += len(update.new_steps)

    def _track_open(self, update: ExecutionUpdate, done: bool) -> None:
        sid = update.execution.sid
        if done:
            self._in_progress.pop(sid, None)
            return
        counts: dict[tuple[str, str], int] = {}
        for visit in update.open_visits:
            key = (visit.flow_sid, visit.widget)
            counts[key] = counts.get(key, 0) + 1
        self._in_progress[sid] = counts

    def refresh_gauges(self) -> None:
        """Set the active and in-progress gauges from the followed executions of the flows."""
        active: dict[str, int] = {}
        flow_of: dict[str, str] = {}
        for flow_sid in self.catalog.flows:
            sids = [execution.sid for execution in self.store.active_executions(flow_sid)]
            active[flow_sid] = len(sids)
            flow_of.update(dict.fromkeys(sids, flow_sid))
        # In progress by the flow whose unit counts them, then by (flow, widget) visited.
        in_progress: dict[str, dict[tuple[str, str], int]] = {}
        for sid in list(self._in_progress):
            if sid not in flow_of:
                del self._in_progress[sid]
                continue
            counts = in_progress.setdefault(flow_of[sid], {})
            for key, count in self._in_progress[sid].items():
                counts[key] = counts.get(key, 0) + count
        if self.units is None:
            self._set_gauges(self.metrics, active, in_progress)
            return
        # One setting per unit: a unit's gauges are replaced as a whole.
        by_unit: dict[str, list[str]] = {}
        for flow_sid in active:
            by_unit.setdefault(self.unit_of(flow_sid), []).append(flow_sid)
        for unit_key, flow_sids in by_unit.items():
            unit = self.units.unit(unit_key)
            if unit is not None:
                self._set_gauges(
                    unit,
                    {flow_sid: active[flow_sid] for flow_sid in flow_sids},
                    {flow_sid: in_progress.get(flow_sid, {}) for flow_sid in flow_sids},
                )

    def _set_gauges(
        self,
        metrics: StudioMetrics,
        active: Mapping[str, int],
        in_progress: Mapping[str, Mapping[tuple[str, str], int]],
    ) -> None:
        metrics.set_active(
            {self.catalog.labels(flow_sid): count for flow_sid, count in active.items()}
        )
        merged: dict[tuple[FlowLabels, str], int] = {}
        for counts in in_progress.values():
            for (flow_sid, widget), count in counts.items():
                key = (self.catalog.labels(flow_sid), widget)
                merged[key] = merged.get(key, 0) + count
        metrics.set_in_progress(merged)


@dataclass(frozen=True, slots=True)
class _Anomaly:
    """Data Studio gave that cannot be right, found while recording one execution."""

    execution_sid: str
    kind: str  # one of selfmetrics.ANOMALY_KINDS
    detail: str


def _is_done(update: ExecutionUpdate) -> bool:
    """Whether the execution is followed no more once the update is committed."""
    return update.ended or (update.execution.is_ended and update.path.end_step is not None)


async def _run_to_completion(commit: Callable[[], _T]) -> tuple[_T, bool]:
    """``commit()`` in a worker thread, while the event loop serves the requests in flight.

    The store's driver leaves the interpreter lock while the database works, so the answers
    that arrive meanwhile are parsed instead of waiting for the commit. A commit cannot be
    called back once started: a cancellation is held until it has finished, so that the caller
    knows whether it committed (its metrics must match the store either way). Returns the
    commit's result and whether a cancellation is to be raised; raises the commit's error
    (``CancelledError`` caused by it when cancelled meanwhile).
    """
    job = asyncio.ensure_future(asyncio.to_thread(commit))
    cancelled = False
    while not job.done():
        try:
            await asyncio.wait([job])  # a cancelled wait leaves the job running
        except asyncio.CancelledError:
            cancelled = True
    error = job.exception()
    if cancelled and error is not None:
        raise asyncio.CancelledError from error  # rolled back, and cancelled all the same
    return job.result(), cancelled


def _unknown_flow(flow_sid: str) -> Flow:
    return Flow(sid=flow_sid, account_sid="", name=flow_sid, status="unknown", revision=0)


def _as_ended(path: ExecutionPath) -> ExecutionPath:
    """The path with its execution marked ended (its end step may be newer than its status)."""
    if path.execution.is_ended:
        return path
    return replace(path, execution=replace(path.execution, status="ended"))
