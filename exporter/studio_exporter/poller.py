"""The controller: follows flows → executions → steps and hands what is new to the sinks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from studio_exporter.config import RETENTION
from studio_exporter.domain import Execution, ExecutionPath, Flow, Step
from studio_exporter.metrics import FlowLabels, StudioMetrics
from studio_exporter.pipeline import ExecutionUpdate, plan_update
from studio_exporter.selfmetrics import ExporterMetrics
from studio_exporter.spans import SpanOptions, execution_span, trace_id_hex, visit_span
from studio_exporter.state import PruneResult, Store
from studio_exporter.studio_api import ApiError, StudioApi

log = logging.getLogger(__name__)

#: Executions created in the same second as the cursor may be listed late: re-list a margin.
CURSOR_OVERLAP = timedelta(seconds=5)
#: How often state older than Studio's retention is deleted.
PRUNE_EVERY = timedelta(hours=1)
#: Executions handled in one transaction: bounds memory during a backfill of thousands.
CHUNK_SIZE = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class CycleReport:
    """What one poll cycle did, for logs, the demo summary and tests."""

    flows: int = 0
    executions_listed: int = 0
    executions_read: int = 0
    steps_exported: int = 0
    executions_ended: int = 0
    failed_flows: list[str] = field(default_factory=list)
    #: The ``ApiError`` reason of each failure (``unauthorized``, ``timeout``, ...).
    error_reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed_flows


@dataclass(slots=True)
class _FlowProgress:
    """Backfill progress: executions handled out of those listed."""

    done: int = 0
    total: int = 0


class Poller:
    """Polls Studio and exports every step once.

    A failing flow is logged and counted, and the others go on; a failed cycle never raises.
    What has been exported is committed to the store in the same transaction as the metric
    snapshot and the spans queued for sending, so a crash at any point neither loses nor
    double-counts a step.
    """

    def __init__(
        self,
        api: StudioApi,
        store: Store,
        metrics: StudioMetrics,
        health: ExporterMetrics,
        *,
        flow_filter: Sequence[str] = (),
        lookback: timedelta = timedelta(hours=1),
        flow_refresh_interval: timedelta = timedelta(minutes=5),
        span_options: SpanOptions | None = None,
        clock: Callable[[], datetime] = utc_now,
        account_sid: str = "",
    ) -> None:
        self.api = api
        #: The account whose flows these are: the first label of every series this poller adds.
        self.account_sid = account_sid
        self.store = store
        self.metrics = metrics
        self.health = health
        self.flow_filter = tuple(flow_filter)
        self.lookback = lookback
        self.flow_refresh_interval = flow_refresh_interval
        self.span_options = span_options or SpanOptions()
        self.clock = clock
        self.flows: dict[str, Flow] = {}
        self._flows_refreshed_at: float | None = None
        self._ended_without_end_step: set[str] = set()
        self._in_progress: dict[str, dict[tuple[str, str], int]] = {}
        self._active: dict[str, int] = {}
        self.last_report = CycleReport()
        self.last_success: datetime | None = None
        self.consecutive_failures = 0
        self._pruned_at: datetime | None = None
        # Reading what is exported, planning and committing happen under this lock, so that
        # polling and push (hybrid mode) never both export the same step.
        self._export_lock = asyncio.Lock()
        #: Called after a commit that queued spans (the shipper's wake-up), so they leave now.
        self.on_spans_queued: Callable[[], None] | None = None

    # -- flows --------------------------------------------------------------------------------

    async def refresh_flows(self, *, force: bool = False) -> None:
        now = time.monotonic()
        due = (
            self._flows_refreshed_at is None
            or now - self._flows_refreshed_at >= self.flow_refresh_interval.total_seconds()
        )
        if not (force or due):
            return
        listed = await self.api.list_flows()
        wanted = {flow.sid: flow for flow in listed}
        if self.flow_filter:
            missing = [sid for sid in self.flow_filter if sid not in wanted]
            for sid in missing:
                log.warning("flow %s given with --flow is not in the account", sid)
            wanted = {sid: flow for sid, flow in wanted.items() if sid in self.flow_filter}
        for sid, flow in wanted.items():
            known = self.flows.get(sid)
            if flow.widgets or (known is not None and known.revision == flow.revision):
                self.flows[sid] = flow if flow.widgets else known  # type: ignore[assignment]
            else:
                self.flows[sid] = await self.api.fetch_flow(sid)
        for sid in list(self.flows):
            if sid not in wanted:
                del self.flows[sid]
        for flow in self.flows.values():
            # Gaps start at 0 per flow, so the series exists before the first gap.
            self.metrics.record_gap(FlowLabels(flow.sid, flow.name, self.account_sid), 0)
        self._flows_refreshed_at = now

    async def _labels(self, flow_sid: str) -> FlowLabels:
        flow = self.flows.get(flow_sid)
        if flow is None:
            # A subflow's steps carry the subflow's sid; it may be outside --flow.
            try:
                flow = await self.api.fetch_flow(flow_sid)
            except ApiError:
                return FlowLabels(flow_sid, flow_sid, self.account_sid)
            self.flows.setdefault(flow_sid, flow)
        return FlowLabels(flow.sid, flow.name, self.account_sid)

    # -- cycles -------------------------------------------------------------------------------

    async def cycle(self) -> CycleReport:
        """One poll of every flow. Never raises: failures are logged, counted and reported."""
        report = CycleReport()
        try:
            await self.refresh_flows()
        except ApiError as error:
            self.health.poll_error(error.reason)
            report.error_reasons.append(error.reason)
            log.warning("listing flows failed: %s", error)
            if not self.flows:
                report.failed_flows.append("*")
                self._finish_cycle(report)
                return report
        report.flows = len(self.flows)
        now = self.clock()
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            self.prune(now)
        results = await asyncio.gather(
            *(self._poll_flow(flow, report) for flow in list(self.flows.values())),
            return_exceptions=True,
        )
        for flow_sid, result in zip(list(self.flows), results, strict=False):
            if isinstance(result, BaseException):
                if isinstance(result, asyncio.CancelledError):
                    raise result
                reason = result.reason if isinstance(result, ApiError) else type(result).__name__
                self.health.poll_error(reason)
                report.error_reasons.append(reason)
                report.failed_flows.append(flow_sid)
                log.warning("polling flow %s failed: %s", flow_sid, result, exc_info=result)
        self._refresh_gauges()
        self._finish_cycle(report)
        return report

    def _finish_cycle(self, report: CycleReport) -> None:
        self.health.poll_cycle(ok=report.ok)
        self.last_report = report
        if report.ok:
            self.last_success = self.clock()
            self.consecutive_failures = 0
            self.health.poll_succeeded(self.last_success)
        else:
            self.consecutive_failures += 1

    async def _list_new(self, flow: Flow, since: datetime | None) -> list[Execution]:
        """The flow's executions since ``since``, or since its cursor (minus an overlap)."""
        now = self.clock()
        cursor = self.store.cursor(flow.sid)
        if since is not None:
            created_from = since
        elif cursor is not None:
            # After a long stop, catch up from the cursor, as far back as Studio keeps data.
            created_from = max(cursor - CURSOR_OVERLAP, now - RETENTION)
        else:
            created_from = now - self.lookback
        return await self.api.list_executions(flow.sid, created_from=created_from)

    async def _poll_flow(
        self,
        flow: Flow,
        report: CycleReport,
        *,
        since: datetime | None = None,
        listed: list[Execution] | None = None,
        progress: Callable[[], None] | None = None,
    ) -> None:
        if listed is None:
            listed = await self._list_new(flow, since)
            report.executions_listed += len(listed)
        listed_sids = [execution.sid for execution in listed]
        known = self.store.known_executions(listed_sids)
        done = self.store.done_executions(listed_sids) if known else set()
        targets: dict[str, tuple[Execution, bool]] = {}
        for execution in listed:
            if execution.sid not in known:
                targets[execution.sid] = (execution, True)
            elif execution.sid not in done:
                targets[execution.sid] = (execution, False)
        followed = [
            execution
            for execution in self.store.active_executions(flow.sid)
            if execution.sid not in targets
        ]
        if followed:
            oldest = min(execution.date_created for execution in followed)
            still_active = {
                execution.sid: execution
                for execution in await self.api.list_executions(
                    flow.sid, created_from=oldest, status="active"
                )
            }
            for execution in followed:
                current = still_active.get(execution.sid)
                if current is None:
                    # Not active any more: it ended since the last cycle. Read it one last time.
                    targets[execution.sid] = (
                        Execution(
                            sid=execution.sid,
                            flow_sid=execution.flow_sid,
                            account_sid=execution.account_sid,
                            status="ended",
                            date_created=execution.date_created,
                            date_updated=execution.date_updated,
                            flow_version=execution.flow_version,
                        ),
                        False,
                    )
                else:
                    targets[execution.sid] = (current, False)
        newest = max((execution.date_created for execution in listed), default=None)
        items = list(targets.values())
        for start in range(0, len(items), CHUNK_SIZE):
            chunk = items[start : start + CHUNK_SIZE]
            last = start + CHUNK_SIZE >= len(items)
            await self._export_chunk(flow, chunk, report, cursor=newest if last else None)
            if progress is not None:
                progress()
        if not items and newest is not None:
            with self.store.batch() as batch:
                batch.set_cursor(flow.sid, newest)

    async def _export_chunk(
        self,
        flow: Flow,
        chunk: Sequence[tuple[Execution, bool]],
        report: CycleReport,
        *,
        cursor: datetime | None,
    ) -> None:
        step_lists = await asyncio.gather(
            *(self.api.list_steps(flow.sid, execution.sid) for execution, _ in chunk)
        )
        report.executions_read += len(chunk)
        # What is already exported is read again under the lock: in hybrid mode the push
        # processor may have exported some of these steps while the requests were in flight.
        async with self._export_lock:
            sids = [execution.sid for execution, _ in chunk]
            known = self.store.known_executions(sids)
            done = self.store.done_executions(sids) if known else set()
            updates: list[ExecutionUpdate] = []
            for (execution, _), steps in zip(chunk, step_lists, strict=True):
                if execution.sid not in done:
                    first_seen = execution.sid not in known
                    updates.append(self._plan(execution, steps, flow, first_seen=first_seen))
            await self._apply(flow, updates, report, cursor=cursor)

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
        report: CycleReport,
        *,
        cursor: datetime | None,
    ) -> None:
        labels = FlowLabels(flow.sid, flow.name, self.account_sid)
        label_cache: dict[str, FlowLabels] = {flow.sid: labels}
        updates = list(updates)
        for update in updates:
            for step in update.new_steps:
                if step.flow_sid not in label_cache:
                    label_cache[step.flow_sid] = await self._labels(step.flow_sid)
        snapshot_before = self.metrics.snapshot()
        now = self.clock()
        try:
            with self.store.batch() as batch:
                span_payloads: list[str] = []
                for update in updates:
                    self._record(update, labels, label_cache, span_payloads, now, report)
                    batch.mark_steps_exported(
                        update.execution.sid, [step.sid for step in update.new_steps]
                    )
                    done = update.ended or (
                        update.execution.is_ended and update.path.end_step is not None
                    )
                    batch.upsert_execution(update.execution, done=done)
                    self._track_open(update, done)
                    if done:
                        self._ended_without_end_step.discard(update.execution.sid)
                if span_payloads:
                    dropped = batch.enqueue_spans(span_payloads)
                    if dropped:
                        self.health.spans_dropped(dropped)
                if cursor is not None:
                    batch.set_cursor(flow.sid, cursor)
                batch.save_metric_snapshot(self.metrics.snapshot())
        except BaseException:
            # The transaction rolled back: so must the in-memory metrics, or a retry would
            # count the same steps twice.
            self.metrics.restore(snapshot_before)
            raise
        if span_payloads and self.on_spans_queued is not None:
            self.on_spans_queued()

    def _record(
        self,
        update: ExecutionUpdate,
        labels: FlowLabels,
        label_cache: dict[str, FlowLabels],
        span_payloads: list[str],
        now: datetime,
        report: CycleReport,
    ) -> None:
        execution = update.execution
        trace_hex = trace_id_hex(execution.sid)
        flow = self.flows.get(execution.flow_sid) or _unknown_flow(execution.flow_sid)
        flow_names = {sid: labels.flow_name for sid, labels in label_cache.items()}
        if update.started:
            self.metrics.record_execution_started(labels)
        for step in update.new_steps:
            self.metrics.record_step(label_cache.get(step.flow_sid, labels), step)
            self.health.export_lag(max(0.0, (now - step.date_created).total_seconds()))
        for visit in update.closed_visits:
            self.metrics.record_visit(label_cache.get(visit.flow_sid, labels), visit, trace_hex)
        for visit in update.span_visits:
            span_payloads.append(
                visit_span(
                    update.path, flow, visit, self.span_options, flow_names=flow_names
                ).to_json()
            )
        for _gap in update.new_gaps:
            self.metrics.record_gap(labels)
        if update.ended:
            self.metrics.record_execution_ended(
                labels, update.final_widget, update.duration_seconds, trace_hex
            )
            span_payloads.append(
                execution_span(_as_ended(update.path), flow, self.span_options).to_json()
            )
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

    def _refresh_gauges(self) -> None:
        active: dict[str, int] = {}
        followed: set[str] = set()
        for flow_sid in self.flows:
            sids = [execution.sid for execution in self.store.active_executions(flow_sid)]
            active[flow_sid] = len(sids)
            followed.update(sids)
        in_progress: dict[tuple[str, str], int] = {}
        for sid in list(self._in_progress):
            if sid not in followed:
                del self._in_progress[sid]
                continue
            for key, count in self._in_progress[sid].items():
                in_progress[key] = in_progress.get(key, 0) + count
        self.metrics.set_active(
            {self._flow_labels(flow_sid): count for flow_sid, count in active.items()}
        )
        self.metrics.set_in_progress(
            {
                (self._flow_labels(flow_sid), widget): count
                for (flow_sid, widget), count in in_progress.items()
            }
        )

    def _flow_labels(self, flow_sid: str) -> FlowLabels:
        flow = self.flows.get(flow_sid)
        return FlowLabels(flow_sid, flow.name if flow is not None else flow_sid, self.account_sid)

    def prune(self, now: datetime) -> PruneResult:
        """Forget executions (and their marks) that Studio itself no longer keeps."""
        result = self.store.prune(now, RETENTION)
        self._pruned_at = now
        if result.executions:
            log.info("pruned %d executions past Studio's retention", result.executions)
        return result

    # -- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, poll_interval: timedelta) -> None:
        """Poll until ``stop`` is set; a failing cycle backs off, a good one keeps the pace."""
        while not stop.is_set():
            started = time.monotonic()
            report = await self.cycle()
            log.info(
                "poll cycle: %d flows, %d executions read, %d steps exported%s",
                report.flows,
                report.executions_read,
                report.steps_exported,
                f", failed flows: {', '.join(report.failed_flows)}" if report.failed_flows else "",
            )
            interval = poll_interval.total_seconds()
            if not report.ok:
                interval = min(interval * (2 ** min(self.consecutive_failures, 5)), 300.0)
            remaining = interval - (time.monotonic() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=remaining)

    async def backfill(
        self, since: datetime, progress: Callable[[int, int, int], None] | None = None
    ) -> CycleReport:
        """Export every execution created since ``since``, flow by flow, then return.

        Every flow's executions are listed first, so ``progress(done, total, steps)`` knows the
        total; then they are read and exported chunk by chunk.
        """
        report = CycleReport()
        await self.refresh_flows(force=True)
        report.flows = len(self.flows)
        listings: list[tuple[Flow, list[Execution]]] = []
        for flow in list(self.flows.values()):
            try:
                listed = await self._list_new(flow, since)
            except ApiError as error:
                self.health.poll_error(error.reason)
                report.failed_flows.append(flow.sid)
                log.warning("listing executions of flow %s failed: %s", flow.sid, error)
                continue
            report.executions_listed += len(listed)
            listings.append((flow, listed))

        def tick() -> None:
            if progress is not None:
                progress(report.executions_read, report.executions_listed, report.steps_exported)

        tick()
        for flow, listed in listings:
            try:
                await self._poll_flow(flow, report, listed=listed, progress=tick)
            except ApiError as error:
                self.health.poll_error(error.reason)
                report.failed_flows.append(flow.sid)
                log.warning("backfill of flow %s failed: %s", flow.sid, error)
        self._refresh_gauges()
        self._finish_cycle(report)
        return report

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
        if self.flow_filter and flow_sid not in self.flow_filter:
            return
        try:
            # Pure push mode has no poll cycle to refresh flows: do it here, on its interval.
            await self.refresh_flows()
        except ApiError as error:
            if flow_sid not in self.flows:
                raise
            log.warning("refreshing flows failed: %s", error)
        flow = self.flows.get(flow_sid)
        if flow is None:
            # Created since the last refresh; it will be listed by the next one.
            flow = await self.api.fetch_flow(flow_sid)
            self.flows[flow_sid] = flow
        async with self._export_lock:
            first_seen = not self.store.is_known(execution.sid)
            if not first_seen and self.store.is_done(execution.sid):
                return
            update = self._plan(execution, steps, flow, first_seen=first_seen)
            await self._apply(flow, [update], CycleReport(), cursor=None)
        if refresh_gauges:
            self._refresh_gauges()


def _unknown_flow(flow_sid: str) -> Flow:
    return Flow(sid=flow_sid, account_sid="", name=flow_sid, status="unknown", revision=0)


def _as_ended(path: ExecutionPath) -> ExecutionPath:
    """The path with its execution marked ended (its end step may be newer than its status)."""
    if path.execution.is_ended:
        return path
    return replace(path, execution=replace(path.execution, status="ended"))
