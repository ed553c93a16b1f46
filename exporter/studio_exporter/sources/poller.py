"""The controller: follows flows → executions → steps and hands what is read to the recorder."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice

from studio_exporter.config import RETENTION
from studio_exporter.core.backoff import poll_backoff
from studio_exporter.core.domain import Execution, Flow, Step
from studio_exporter.core.sharding import NO_SHARDING, UnitOwner
from studio_exporter.sinks.metrics import FlowLabels, StudioMetrics, UnitMetrics
from studio_exporter.sinks.selfmetrics import ExporterMetrics
from studio_exporter.sinks.spans import SpanOptions
from studio_exporter.sources.recording import Recorder
from studio_exporter.sources.studio_api import ApiError, StudioApi
from studio_exporter.store.protocols import LeaseLost, PruneResult, StateError, StateStore

log = logging.getLogger(__name__)

#: The unit of a whole account (``Poller.account_units``): what the lease table records as its
#: flow.
ACCOUNT_UNIT = "*"

#: Executions created in the same second as the cursor may be listed late: re-list a margin.
CURSOR_OVERLAP = timedelta(seconds=5)
#: How often state older than Studio's retention is deleted.
PRUNE_EVERY = timedelta(hours=1)
#: Executions read ahead of the apply, and most handled in one transaction: bounds memory
#: during a backfill of thousands.
CHUNK_SIZE = 500
#: Reads answered before the first apply: one transaction per few executions would spend the
#: CPU on commits and metric snapshots.
APPLY_BATCH = 32
#: Most executions applied in one transaction. The transaction runs in a worker thread, but
#: recording an apply's metrics and spans holds the event loop (a few executions at a
#: time): 128 took less CPU and no less wall time than 64.
APPLY_MAX = 64


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
    executions_vanished: int = 0
    failed_flows: list[str] = field(default_factory=list)
    #: Executions whose steps could not be read this cycle (retried next cycle); the others of
    #: their flow were exported all the same.
    failed_executions: list[str] = field(default_factory=list)
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
    The poller schedules: it lists flows and executions, reads steps and decides what to read
    again. What it read goes to its ``recorder`` (``recording.Recorder``, shared with push),
    which commits each flow's exports in one transaction with the metric snapshot and the
    spans queued for sending, so a crash at any point neither loses nor double-counts a step.
    The poller is the recorder's ``FlowCatalog``: the flows it follows and their names.
    """

    def __init__(
        self,
        api: StudioApi,
        store: StateStore,
        metrics: StudioMetrics,
        health: ExporterMetrics,
        *,
        flow_filter: Sequence[str] = (),
        lookback: timedelta = timedelta(hours=1),
        flow_refresh_interval: timedelta = timedelta(minutes=5),
        span_options: SpanOptions | None = None,
        clock: Callable[[], datetime] = utc_now,
        account_sid: str = "",
        shard: UnitOwner = NO_SHARDING,
        on_spans_queued: Callable[[], None] | None = None,
        units: UnitMetrics | None = None,
        account_units: bool = False,
    ) -> None:
        self.api = api
        #: With leases, whether a unit is the whole account (push and hybrid modes) rather
        #: than one flow: then ``units`` holds one unit, ``ACCOUNT_UNIT``, for every flow.
        self.account_units = account_units
        #: The account whose flows these are: the first label of every series this poller adds.
        self.account_sid = account_sid
        self.store = store
        self.metrics = metrics
        self.health = health
        self.flow_filter = tuple(flow_filter)
        #: With replicas splitting the work, the flows of this account that this one follows:
        #: a fixed shard, or the units this replica leases (then ``units`` holds their series).
        self.shard = shard
        self.units = units
        #: The account's flows (within ``--flow``) at the last listing, whoever follows them.
        self._listed: set[str] | None = None
        self.lookback = lookback
        self.flow_refresh_interval = flow_refresh_interval
        self.span_options = span_options or SpanOptions()
        self.clock = clock
        self.flows: dict[str, Flow] = {}
        self._definitions: dict[str, Flow] = {}  # flows read only for their definition
        self._revision_asked: dict[str, int] = {}
        self._flows_refreshed_at: float | None = None
        self._active: dict[str, int] = {}
        self.last_report = CycleReport()
        self.last_success: datetime | None = None
        self.consecutive_failures = 0
        self._pruned_at: datetime | None = None
        #: The export path this poller shares with push; ``on_spans_queued`` is called after a
        #: commit that queued spans (the shipper's wake-up), so they leave now.
        self.recorder = Recorder(
            store,
            metrics,
            health,
            catalog=self,
            span_options=self.span_options,
            clock=clock,
            account_sid=account_sid,
            on_spans_queued=on_spans_queued,
            units=units,
            unit_of=self.unit_of,
        )
        #: Called when this replica gives up a unit (the push processor forgets its part).
        self.on_units_released: Callable[[], None] | None = None

    # -- flows --------------------------------------------------------------------------------

    def unit_of(self, flow_sid: str) -> str:
        """The work unit the flow belongs to: itself, or the account (``account_units``)."""
        return ACCOUNT_UNIT if self.account_units else flow_sid

    def follows(self, flow_sid: str) -> bool:
        """True when this poller polls ``flow_sid``: within ``--flow`` and its shard's."""
        if self.flow_filter and flow_sid not in self.flow_filter:
            return False
        return self.shard.owns(self.account_sid, self.unit_of(flow_sid))

    def holds_account(self) -> bool:
        """True when this replica holds the account's unit (always, without account units)."""
        return not self.account_units or self.shard.owns(self.account_sid, ACCOUNT_UNIT)

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
        wanted = {sid: flow for sid, flow in wanted.items() if self.follows(sid)}
        for sid, flow in wanted.items():
            known = self.flows.get(sid)
            if flow.widgets or (known is not None and known.revision == flow.revision):
                self.flows[sid] = flow if flow.widgets else known  # type: ignore[assignment]
            else:
                self.flows[sid] = await self.api.fetch_flow(sid)
        in_account = {flow.sid for flow in listed}
        self._listed = {
            sid for sid in in_account if not self.flow_filter or sid in self.flow_filter
        }
        for sid in list(self.flows):
            # Not wanted, or (leases) given up while flows were being read.
            if sid not in wanted or not self.follows(sid):
                del self.flows[sid]
                if sid not in in_account:
                    self._forget_flow(sid)
        self._flows_changed()
        self._flows_refreshed_at = now

    def _flows_changed(self) -> None:
        for flow in self.flows.values():
            # Gaps start at 0 per flow, so the series exists before the first gap.
            metrics = (
                self.metrics if self.units is None else self.units.unit(self.unit_of(flow.sid))
            )
            if metrics is not None:
                metrics.record_gap(FlowLabels(flow.sid, flow.name, self.account_sid), 0)
        self.metrics.set_flows(
            ((flow.sid, flow.name, flow.revision) for flow in self.flows.values()),
            self.account_sid,
        )

    def listed_flow_sids(self) -> set[str] | None:
        """The account's units: its flows (within ``--flow``) at the last listing, None before
        one; or the account itself (``account_units``), listed or not."""
        if self.account_units:
            return {ACCOUNT_UNIT}
        return None if self._listed is None else set(self._listed)

    def adopt(self) -> None:
        """Follow exactly the leased units the replica holds now (``replicas.Replica``).

        A unit given up stops being polled and served at once; a unit taken is served from its
        committed snapshot at once, and polled from the next cycle (which lists the flows
        again to read its definition), from its committed cursor.
        """
        if self.units is None:
            return
        if self.account_units:
            held = {ACCOUNT_UNIT} if self.holds_account() else set()
        elif self._listed is None:
            return
        else:
            held = {sid for sid in self._listed if self.follows(sid)}
        released = self.units.flows() - held
        for sid in released:
            self.units.release(sid)
            if sid == ACCOUNT_UNIT:
                self.flows.clear()
            self.flows.pop(sid, None)
        if released and self.on_units_released is not None:
            self.on_units_released()
        taken = held - self.units.flows()
        for sid in sorted(taken):
            self.units.acquire(sid, self.store.unit_metric_snapshot(sid), self.account_sid)
        if taken:
            self._flows_refreshed_at = None
        self._flows_changed()

    def _forget_flow(self, flow_sid: str) -> None:
        """The flow was deleted (its executions with it): stop following its executions.

        Its active gauges go with it at the next gauge refresh, which only counts known flows.
        """
        followed = [execution.sid for execution in self.store.active_executions(flow_sid)]
        log.info(
            "flow %s is gone from the account: %d followed executions forgotten",
            flow_sid,
            len(followed),
        )
        self._forget_executions(followed)

    def _forget_executions(self, sids: Sequence[str]) -> None:
        if not sids:
            return
        with self.store.batch() as batch:
            batch.forget_executions(sids)
        self.recorder.drop_tracking(sids)
        self.health.executions_vanished(len(sids))

    async def fetch_labels(self, flow_sid: str) -> FlowLabels:
        """The flow's labels, reading the flow when it is not known yet (a subflow, say)."""
        flow = self.flows.get(flow_sid) or self._definitions.get(flow_sid)
        if flow is None:
            # A subflow's steps carry the subflow's sid; it may be outside --flow or the shard.
            try:
                flow = await self.api.fetch_flow(flow_sid)
            except ApiError:
                return FlowLabels(flow_sid, flow_sid, self.account_sid)
            if self.follows(flow_sid):
                self.flows.setdefault(flow_sid, flow)
            else:
                # Named, not polled: another replica (or nobody, outside --flow) polls it.
                self._definitions.setdefault(flow_sid, flow)
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
                if isinstance(result, LeaseLost):
                    # Moved to another replica mid-cycle: its commit rolled back, and the new
                    # owner continues from what was committed. Not a failure of this poll.
                    log.info("flow %s moved to another replica: %s", flow_sid, result)
                    continue
                reason = result.reason if isinstance(result, ApiError) else type(result).__name__
                self.health.poll_error(reason)
                report.error_reasons.append(reason)
                report.failed_flows.append(flow_sid)
                if reason == "not_found":
                    # The flow itself may be gone: the next cycle lists flows again to see.
                    self._flows_refreshed_at = None
                log.warning("polling flow %s failed: %s", flow_sid, result, exc_info=result)
        self.recorder.refresh_gauges()
        self._finish_cycle(report)
        return report

    def _finish_cycle(self, report: CycleReport) -> None:
        self.health.poll_cycle(ok=report.ok)
        self.last_report = report
        if report.ok:
            self.last_success = self.clock()
            self.consecutive_failures = 0
            self.health.poll_succeeded(self.last_success)
            try:
                self.store.set_last_success("poll", self.last_success)
            except StateError as error:
                log.warning("could not record the successful poll in the state: %s", error)
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
        await self._export_items(flow, items, report, cursor=newest, progress=progress)
        if not items and newest is not None:
            with self.store.batch() as batch:
                batch.set_cursor(flow.sid, newest)
                batch.hold_unit(self.unit_of(flow.sid))

    async def _export_items(
        self,
        flow: Flow,
        items: Sequence[tuple[Execution, bool]],
        report: CycleReport,
        *,
        cursor: datetime | None,
        progress: Callable[[], None] | None = None,
    ) -> None:
        """Read every execution's steps and export them, the reads running ahead of the applies.

        Up to ``CHUNK_SIZE`` reads are outstanding (the limiter bounds those in flight). As soon
        as the first ``APPLY_BATCH`` of them have answered, the reads finished at the head of
        the queue (at most ``APPLY_MAX``) are applied in one transaction, while the next reads
        are already on the wire: the CPU of an apply overlaps the network wait of the reads
        after it instead of alternating with it. ``cursor`` is committed with the last apply.

        Each execution's read stands alone: one that Studio answers 404 for (deleted) is
        forgotten and counted, one that fails otherwise is retried next cycle, and neither
        keeps the others from being exported. A new execution left unread must be listed
        again next cycle, so the cursor is held at or before the oldest of them.
        """
        pending: deque[tuple[Execution, bool, asyncio.Future[list[Step]]]] = deque()
        queued = iter(items)
        unread: datetime | None = None

        def read_ahead() -> None:
            while len(pending) < CHUNK_SIZE:
                item = next(queued, None)
                if item is None:
                    return
                execution, is_new = item
                read = asyncio.ensure_future(self.api.list_steps(flow.sid, execution.sid))
                pending.append((execution, is_new, read))

        read_ahead()
        try:
            while pending:
                await asyncio.wait([read for _, _, read in islice(pending, APPLY_BATCH)])
                batch: list[tuple[Execution, list[Step]]] = []
                vanished: list[str] = []
                taken = 0
                while pending and pending[0][2].done() and taken < APPLY_MAX:
                    execution, is_new, read = pending.popleft()
                    taken += 1
                    error = read.exception()  # raises CancelledError: not this execution's
                    if error is None:
                        batch.append((execution, read.result()))
                    elif not isinstance(error, Exception):
                        raise error  # interpreter exit: not this execution's failure
                    elif isinstance(error, ApiError) and error.reason == "not_found":
                        vanished.append(execution.sid)
                        log.info(
                            "execution %s of flow %s is gone (404): forgotten",
                            execution.sid,
                            flow.sid,
                        )
                    else:
                        self._read_failed(flow, execution, error, report)
                        if is_new and (unread is None or execution.date_created < unread):
                            unread = execution.date_created
                read_ahead()
                last = cursor if not pending else None
                if last is not None and unread is not None:
                    last = min(last, unread)
                await self._export_read(flow, batch, vanished, report, cursor=last)
                if progress is not None:
                    progress()
        finally:
            # A failed apply (or a cancellation) ends the flow's export: reads ahead are dropped.
            for _, _, read in pending:
                read.cancel()
            await asyncio.gather(*(read for _, _, read in pending), return_exceptions=True)

    def _read_failed(
        self, flow: Flow, execution: Execution, error: Exception, report: CycleReport
    ) -> None:
        reason = error.reason if isinstance(error, ApiError) else type(error).__name__
        self.health.poll_error(reason)
        report.failed_executions.append(execution.sid)
        log.warning(
            "reading execution %s of flow %s failed: %s",
            execution.sid,
            flow.sid,
            error,
            exc_info=error if not isinstance(error, ApiError) else None,
        )

    async def _export_read(
        self,
        flow: Flow,
        read: Sequence[tuple[Execution, list[Step]]],
        vanished: Sequence[str],
        report: CycleReport,
        *,
        cursor: datetime | None,
    ) -> None:
        """Plan and apply executions whose steps have been read, in one transaction.

        ``vanished`` executions (404) are forgotten in the same transaction.
        """
        report.executions_read += len(read)
        report.executions_vanished += len(vanished)
        await self.recorder.export_read(flow, read, report, cursor=cursor, forget=vanished)
        if vanished:
            self.recorder.drop_tracking(vanished)
            self.health.executions_vanished(len(vanished))

    def labels(self, flow_sid: str) -> FlowLabels:
        """The flow's labels from what is known, without reading (its sid as name if unknown)."""
        flow = self.flows.get(flow_sid) or self._definitions.get(flow_sid)
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
                interval = poll_backoff(interval).delay(self.consecutive_failures)
            remaining = interval - (time.monotonic() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=remaining)

    async def backfill(
        self, since: datetime, progress: Callable[[int, int, int], None] | None = None
    ) -> CycleReport:
        """Export every execution created since ``since``, then return.

        Every flow's executions are listed first, so ``progress(done, total, steps)`` knows the
        total, all flows at once (a flow's pages must follow one another, but flows need not);
        then they are read and exported flow by flow.
        """
        report = CycleReport()
        await self.refresh_flows(force=True)
        report.flows = len(self.flows)
        flows = list(self.flows.values())
        listings: list[tuple[Flow, list[Execution]]] = []
        found = await asyncio.gather(
            *(self._list_new(flow, since) for flow in flows), return_exceptions=True
        )
        for flow, listed in zip(flows, found, strict=True):
            if isinstance(listed, ApiError):
                self.health.poll_error(listed.reason)
                report.failed_flows.append(flow.sid)
                log.warning("listing executions of flow %s failed: %s", flow.sid, listed)
                continue
            if isinstance(listed, BaseException):
                raise listed
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
        self.recorder.refresh_gauges()
        self._finish_cycle(report)
        return report

    # -- push (Event Streams) -----------------------------------------------------------------

    async def pushed_flow(self, flow_sid: str) -> Flow | None:
        """The followed flow that pushed events name, or None when it is not followed here.

        Pure push mode has no poll cycle to refresh flows: they are refreshed here, on their
        interval. Raises ``ApiError`` when the flow cannot be read.
        """
        if not self.follows(flow_sid):
            return None
        try:
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
            self.metrics.set_flows(
                ((f.sid, f.name, f.revision) for f in self.flows.values()), self.account_sid
            )
        return flow

    async def flow_definition(self, flow_sid: str, revision: int | None = None) -> Flow:
        """The flow with its definition, read once per revision (``FetchFlow``) and cached.

        A cached flow older than ``revision`` (the flow was published since) is read again.
        Studio's v2 API serves a flow's current definition: an execution still running on an
        older revision gets the current one (its ``type`` disagreements are counted in push).
        """
        flow = self.flows.get(flow_sid) or self._definitions.get(flow_sid)
        known = -1 if flow is None else max(flow.revision, self._revision_asked.get(flow_sid, -1))
        if flow is None or (revision is not None and revision > known):
            flow = await self.api.fetch_flow(flow_sid)
            # Asked for once: if Studio still serves an older revision, it is not read again.
            self._revision_asked[flow_sid] = max(revision or 0, flow.revision)
            if flow_sid in self.flows or self.follows(flow_sid):
                self.flows[flow_sid] = flow
            else:
                # Outside --flow or the shard (a subflow, say): typed, but not polled.
                self._definitions[flow_sid] = flow
        return flow
