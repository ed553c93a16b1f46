"""Many accounts in one exporter: which accounts to follow, and one set of parts per account.

Twilio's Studio API answers an account's own credentials only, so each followed account has its
own ``StudioApi`` (with its own adaptive limiter: Twilio's limits are per account), its own
state file, its own ``StudioMetrics`` (merged at scrape time by ``AccountMetrics``), its own
``Poller`` and its own span shipper, whose OTLP resource carries that account's
``twilio.account.sid``. The main account's credentials list the accounts
(``--include-subaccounts``) every ``--account-refresh-interval``: a new active subaccount is
started, one that became suspended or closed (or disappeared) is stopped cleanly (its spans
flushed, its state closed, its series dropped; its info series keeps its status), and one whose
credentials fail is counted in ``twilio_studio_exporter_account_errors_total`` and retried with
backoff and a fresh token, without holding up the others. Auth tokens are held in memory only,
as ``Secret`` objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from studio_exporter.config import Config, Credentials
from studio_exporter.core.backoff import poll_backoff
from studio_exporter.sinks.metrics import AccountMetrics, StudioMetrics, UnitMetrics
from studio_exporter.sinks.selfmetrics import ExporterMetrics, PushMetrics
from studio_exporter.sinks.shipper import STOP_TIMEOUT, SpanShipper
from studio_exporter.sinks.span_sink import SpanSender, make_span_sender, resource_from_env
from studio_exporter.sinks.spans import SpanOptions
from studio_exporter.sources.accounts_api import Account, AccountsApi
from studio_exporter.sources.poller import CycleReport, Poller
from studio_exporter.sources.push import PushProcessor, WebhookReceiver
from studio_exporter.sources.replicas import LeaseOwnership
from studio_exporter.sources.studio_api import ApiError, StudioApi
from studio_exporter.sources.throttle import AdaptiveLimiter
from studio_exporter.store.protocols import StateStore
from studio_exporter.store.sqlite import ACCOUNTS_DIR, Store, state_file, subaccount_state_file
from studio_exporter.web.server import PostHook

log = logging.getLogger(__name__)

#: Accounts polled at the same time. Each has its own limiter; this bounds the whole.
ACCOUNTS_IN_PARALLEL = 16
SPANS_FILE = "spans.otlp.jsonl"


@dataclass
class AccountParts:
    """One followed account's parts. ``credentials`` hold its token (a ``Secret``)."""

    account_sid: str
    credentials: Credentials
    api: StudioApi
    store: StateStore
    metrics: StudioMetrics
    poller: Poller
    shipper: SpanShipper
    sender: SpanSender
    failures: int = 0
    retry_at: float = 0.0
    started: bool = False
    #: Push and hybrid modes: the account's webhook receiver, processor and its task.
    receiver: WebhookReceiver | None = None
    push: PushProcessor | None = None
    push_stop: asyncio.Event | None = None
    push_task: asyncio.Task[None] | None = None
    #: What ``/metrics`` serves of the account: ``metrics``, or with leases its units'.
    exposed: StudioMetrics | UnitMetrics | None = None

    @property
    def served(self) -> StudioMetrics | UnitMetrics:
        return self.metrics if self.exposed is None else self.exposed


class SharedSender:
    """A sender several accounts' shippers use: one shipper stopping does not shut it down."""

    def __init__(self, sender: SpanSender) -> None:
        self.inner = sender

    def send(self, payload: bytes, count: int, timeout: float | None = None) -> bool:
        return self.inner.send(payload, count, timeout)

    def shutdown(self) -> None:
        """Left to the owner (``app.Exporter.close``, once every shipper has stopped)."""


def spans_file(state_dir: Path, account_sid: str, main_sid: str) -> Path:
    """The JSON-lines span file of an account, used when no OTLP endpoint is configured."""
    if account_sid == main_sid:
        return state_dir / SPANS_FILE
    return state_dir / ACCOUNTS_DIR / f"{account_sid}.{SPANS_FILE}"


@dataclass(frozen=True)
class Leasing:
    """This replica's part in sharing the work through PostgreSQL leases (``replicas``)."""

    replica: str
    ownership: LeaseOwnership


def open_account_store(
    config: Config, account_sid: str, leasing: Leasing | None = None
) -> StateStore:
    """The account's state: its schema in ``--state.postgres-url``, else its SQLite file."""
    if config.state_postgres_url is not None:
        from studio_exporter.store.postgres import PostgresStore, account_schema

        return PostgresStore.open(
            config.state_postgres_url.reveal(),
            schema=account_schema(account_sid),
            account_sid=account_sid,
            lease_owner=None if leasing is None else leasing.replica,
        )
    path = (
        state_file(config.state_dir)
        if account_sid == config.credentials.account_sid
        else subaccount_state_file(config.state_dir, account_sid)
    )
    return Store.open(path, account_sid=account_sid)


def build_account_parts(
    config: Config,
    credentials: Credentials,
    *,
    health: ExporterMetrics,
    env: Mapping[str, str],
    transport: httpx.AsyncBaseTransport | None,
    sender: SpanSender | None,
    clock: Callable[[], datetime],
    leasing: Leasing | None = None,
) -> AccountParts:
    """Open the account's state, restore its counters and build its API, poller and shipper.

    With ``leasing`` the counters are the leased units' (``UnitMetrics``), restored unit by
    unit as the replica takes them.
    """
    account_sid = credentials.account_sid
    main_sid = config.credentials.account_sid
    store = open_account_store(config, account_sid, leasing)
    try:
        metrics = StudioMetrics(max_series_per_metric=config.max_series_per_metric)
        units: UnitMetrics | None = None
        if leasing is not None:
            units = UnitMetrics(metrics)
        elif (snapshot := store.metric_snapshot()) is not None:
            metrics.restore(snapshot, account_sid=account_sid)
        api = StudioApi(
            config.twilio_base_url,
            credentials,
            timeout=config.request_timeout.total_seconds(),
            limiter=AdaptiveLimiter(config.concurrency),
            health=health,
            transport=transport,
            keep_context=bool(config.context_allowlist),
        )
        if sender is None:
            sender = make_span_sender(
                env, default_file=spans_file(config.state_dir, account_sid, main_sid)
            )
        shipper = SpanShipper(store, sender, resource_from_env(env, account_sid), health)
        poller = Poller(
            api,
            store,
            metrics,
            health,
            flow_filter=config.flows,
            lookback=config.lookback,
            flow_refresh_interval=config.flow_refresh_interval,
            span_options=SpanOptions(
                failure_events=config.failure_events,
                context_allowlist=config.context_allowlist,
                hash_phone_numbers=config.hash_phone_numbers,
                phone_hash_salt=config.phone_hash_salt.reveal(),
            ),
            clock=clock,
            account_sid=account_sid,
            shard=config.shard if leasing is None else leasing.ownership,
            on_spans_queued=shipper.wake,
            units=units,
            account_units=leasing is not None and config.account_units,
        )
    except BaseException:
        store.close()
        raise
    return AccountParts(
        account_sid,
        credentials,
        api,
        store,
        metrics,
        poller,
        shipper,
        sender,
        started=False,
        exposed=metrics if units is None else units,
    )


class AccountSupervisor:
    """Follows the main account and, with ``--include-subaccounts``, its active subaccounts.

    ``main`` are the main account's parts (built by ``app.build_exporter``). Without
    ``--include-subaccounts`` only ``main`` is followed, and the refresh only keeps
    ``twilio_studio_account_info`` for it current.
    """

    def __init__(
        self,
        config: Config,
        main: AccountParts,
        accounts_metrics: AccountMetrics,
        health: ExporterMetrics,
        *,
        env: Mapping[str, str],
        transport: httpx.AsyncBaseTransport | None = None,
        shared_sender: SpanSender | None = None,
        clock: Callable[[], datetime],
    ) -> None:
        self.config = config
        self.main = main
        self.accounts_metrics = accounts_metrics
        self.health = health
        self.env = env
        self.transport = transport
        self.shared_sender = shared_sender
        self.clock = clock
        self.followed: dict[str, AccountParts] = {main.account_sid: main}
        self.accounts_api = AccountsApi(
            config.api_base_url,
            config.credentials,
            timeout=config.request_timeout.total_seconds(),
            health=health,
            transport=transport,
        )
        self._refreshed_at: float | None = None
        self._names: dict[str, str] = {}
        #: Wall time of the last cycle over every account, for logs and the benchmark.
        self.last_cycle_seconds = 0.0
        self.last_reports: dict[str, CycleReport] = {}
        #: When a cycle last had an account that polled well, and cycles in a row where none
        #: did: what /health/ready judges with many accounts (one failing account is counted
        #: in account_errors_total, not made a reason to take the exporter out of service).
        self.last_success: datetime | None = None
        self.consecutive_failures = 0
        #: The web server's POST routes (set by ``app``): per-account webhook paths go here.
        self.hooks: dict[str, PostHook] | None = None
        #: The push families the main account counts into (set by ``app``): the others too.
        self.push_metrics: PushMetrics | None = None
        #: With leases (set by ``app``): every account's parts take part in them.
        self.leasing: Leasing | None = None

    def webhook_path(self, account_sid: str) -> str:
        """Where an account's Event Streams deliveries arrive: its own path, so the token that
        checks the signature is chosen by the URL before the body is read."""
        return f"{self.config.webhook_path.rstrip('/')}/{account_sid}"

    def webhook_public_url(self, account_sid: str) -> str | None:
        public = self.config.webhook_public_url
        return None if public is None else f"{public.rstrip('/')}/{account_sid}"

    @property
    def multi(self) -> bool:
        return self.config.include_subaccounts

    def _wanted(self, account_sid: str) -> bool:
        return not self.config.accounts or account_sid in self.config.accounts

    # -- accounts -----------------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> None:
        """Re-read the accounts (when due): start, stop and re-credential what changed."""
        now = time.monotonic()
        interval = self.config.account_refresh_interval.total_seconds()
        if not force and self._refreshed_at is not None and now - self._refreshed_at < interval:
            return
        self._refreshed_at = now
        main_sid = self.main.account_sid
        if not self.multi:
            try:
                account = await self.accounts_api.fetch_account(main_sid)
            except ApiError as error:
                self.health.account_error(main_sid, error.reason)
                log.warning("reading account %s failed: %s", main_sid, error)
                if main_sid not in self._names:
                    self._set_info(main_sid, main_sid, "unknown")
                return
            self._set_info(main_sid, account.friendly_name, account.status)
            return
        try:
            listed = await self.accounts_api.list_accounts()
        except ApiError as error:
            self.health.account_error(main_sid, error.reason)
            log.warning("listing accounts failed (following the same ones): %s", error)
            return
        seen = {account.sid: account for account in listed if self._wanted(account.sid)}
        for account in seen.values():
            self._set_info(account.sid, account.friendly_name, account.status)
        for gone in set(self._names) - set(seen):
            self.accounts_metrics.drop_info(gone)
            del self._names[gone]
        for sid in list(self.followed):
            entry = seen.get(sid)
            if entry is None or not entry.is_active:
                if entry is not None:
                    why = entry.status
                elif self._wanted(sid):
                    why = "no longer listed"
                else:
                    why = "not named by --account"
                await self._stop(sid, why)
        for account in seen.values():
            if account.is_active:
                await self._follow(account)

    def _set_info(self, account_sid: str, name: str, status: str) -> None:
        self._names[account_sid] = name
        self.accounts_metrics.set_info(account_sid, name, status)

    async def _follow(self, account: Account) -> None:
        """Start following an active account, or give a followed one its current token."""
        current = self.followed.get(account.sid)
        if account.sid == self.main.account_sid:
            if current is None:
                self.followed[account.sid] = self.main
                self.accounts_metrics.add(account.sid, self.main.served)
            return  # the main account keeps the configured credentials
        if account.auth_token is None:
            self.health.account_error(account.sid, "no_auth_token")
            log.warning("account %s is listed without an auth token; not followed", account.sid)
            return
        credentials = Credentials(account.sid, account.sid, account.auth_token)
        if current is not None:
            if current.credentials.password != credentials.password:
                await self._recredential(current, credentials)
            return
        parts = await asyncio.to_thread(
            build_account_parts,
            self.config,
            credentials,
            health=self.health,
            env=self.env,
            transport=self.transport,
            sender=None if self.shared_sender is None else SharedSender(self.shared_sender),
            clock=self.clock,
            leasing=self.leasing,
        )
        parts.shipper.start()
        parts.started = True
        self.followed[account.sid] = parts
        self.accounts_metrics.add(account.sid, parts.served)
        if self.config.mode != "poll":
            self._start_push(parts)
        log.info("following account %s (%s)", account.sid, account.friendly_name)

    def _start_push(self, parts: AccountParts) -> None:
        """The account's own webhook path, receiver (its token) and inbox processor."""
        basic = self.config.webhook_basic_auth
        metrics = self.push_metrics or PushMetrics(None)
        processor = PushProcessor(
            parts.store,
            parts.api,
            parts.poller.recorder,
            health=self.health,
            clock=self.clock,
            metrics=metrics,
            # Pushed steps carry no context: allow-listed context comes from the REST read.
            hold_until_end=bool(self.config.context_allowlist),
            holds=parts.poller.holds_account,
        )
        parts.poller.on_units_released = processor.forget
        parts.receiver = WebhookReceiver(
            parts.store,
            parts.credentials.password.reveal(),
            public_url=self.webhook_public_url(parts.account_sid),
            basic_auth=None if basic is None else (basic[0], basic[1].reveal()),
            metrics=metrics,
            on_accepted=processor.wake,
        )
        parts.push = processor
        parts.push_stop = asyncio.Event()
        parts.push_task = asyncio.create_task(processor.run(parts.push_stop))
        if self.hooks is not None:
            self.hooks[self.webhook_path(parts.account_sid)] = parts.receiver

    async def _stop_push(self, parts: AccountParts) -> None:
        if self.hooks is not None:
            self.hooks.pop(self.webhook_path(parts.account_sid), None)
        if parts.push_stop is not None and parts.push_task is not None:
            parts.push_stop.set()
            if parts.push is not None:
                parts.push.wake()
            await parts.push_task
        parts.push_task = parts.push_stop = None

    async def _recredential(self, parts: AccountParts, credentials: Credentials) -> None:
        """The account's token changed (rotated): read it with the new one from now on."""
        old = parts.api
        parts.credentials = credentials
        parts.api = StudioApi(
            self.config.twilio_base_url,
            credentials,
            timeout=self.config.request_timeout.total_seconds(),
            limiter=old.limiter,
            health=self.health,
            transport=self.transport,
            keep_context=bool(self.config.context_allowlist),
        )
        parts.poller.api = parts.api
        if parts.push is not None:
            parts.push.api = parts.api
        if parts.receiver is not None:
            parts.receiver.auth_token = credentials.password.reveal()
        parts.failures, parts.retry_at = 0, 0.0
        await old.aclose()
        log.info("account %s: new credentials", parts.account_sid)

    async def _stop(self, account_sid: str, why: str) -> None:
        parts = self.followed.pop(account_sid)
        self.accounts_metrics.remove(account_sid)
        log.info("account %s is %s: stopped following it", account_sid, why)
        if parts is self.main:
            return  # its state, API and shipper live as long as the exporter
        await self._stop_push(parts)
        await asyncio.to_thread(self._close_parts, parts)
        await parts.api.aclose()

    @staticmethod
    def _close_parts(parts: AccountParts, deadline: float | None = None) -> None:
        if parts.started:
            parts.shipper.stop(flush=True, deadline=deadline)
        parts.store.close()

    async def _after_failure(self, parts: AccountParts, report: CycleReport) -> None:
        parts.failures += 1
        interval = self.config.poll_interval.total_seconds()
        parts.retry_at = time.monotonic() + poll_backoff(interval).delay(parts.failures)
        if "unauthorized" not in report.error_reasons:
            return
        self.health.account_error(parts.account_sid, "unauthorized")
        if parts is self.main or not self.multi:
            return
        # A rotated token is the likely cause: fetch the account again with the main account's
        # credentials (one request) rather than wait for the next refresh.
        try:
            account = await self.accounts_api.fetch_account(parts.account_sid)
        except ApiError as error:
            self.health.account_error(parts.account_sid, error.reason)
            return
        if account.is_active and account.auth_token is not None:
            fresh = Credentials(account.sid, account.sid, account.auth_token)
            if fresh.password != parts.credentials.password:
                await self._recredential(parts, fresh)
        elif not account.is_active:
            self._set_info(account.sid, account.friendly_name, account.status)
            await self._stop(account.sid, account.status)

    # -- polling ------------------------------------------------------------------------------

    async def cycle(self) -> dict[str, CycleReport]:
        """One poll of every followed account that is not backing off, a bounded few at once."""
        started = time.monotonic()
        gate = asyncio.Semaphore(ACCOUNTS_IN_PARALLEL)
        due = [parts for parts in self.followed.values() if parts.retry_at <= started]

        async def one(parts: AccountParts) -> tuple[AccountParts, CycleReport]:
            async with gate:
                return parts, await parts.poller.cycle()

        reports: dict[str, CycleReport] = {}
        for parts, report in await asyncio.gather(*(one(parts) for parts in due)):
            reports[parts.account_sid] = report
            if report.ok:
                parts.failures, parts.retry_at = 0, 0.0
            else:
                await self._after_failure(parts, report)
        self.last_cycle_seconds = time.monotonic() - started
        self.last_reports = reports
        if any(report.ok for report in reports.values()):
            self.last_success = self.clock()
            self.consecutive_failures = 0
        elif reports:
            self.consecutive_failures += 1
        return reports

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh the accounts when due and poll them all, every ``--poll-interval``."""
        interval = self.config.poll_interval.total_seconds()
        while not stop.is_set():
            started = time.monotonic()
            await self.refresh()
            reports = await self.cycle()
            failed = sorted(sid for sid, report in reports.items() if not report.ok)
            log.info(
                "poll cycle: %d accounts in %.1fs, %d executions read, %d steps exported%s",
                len(reports),
                self.last_cycle_seconds,
                sum(report.executions_read for report in reports.values()),
                sum(report.steps_exported for report in reports.values()),
                f", failing accounts: {', '.join(failed)}" if failed else "",
            )
            remaining = interval - (time.monotonic() - started)
            if remaining > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=remaining)

    async def refresh_loop(self, stop: asyncio.Event) -> None:
        """Single-account mode: keep the account's info series current."""
        while not stop.is_set():
            await self.refresh()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), timeout=self.config.account_refresh_interval.total_seconds()
                )

    async def backfill(
        self, since: datetime, progress: Callable[[int, int, int], None] | None = None
    ) -> CycleReport:
        """Backfill every followed account in turn; ``progress`` counts across accounts."""
        await self.refresh(force=True)
        total = CycleReport()
        for parts in list(self.followed.values()):
            base = (total.executions_read, total.executions_listed, total.steps_exported)

            def tick(done: int, listed: int, steps: int, base: tuple[int, int, int] = base) -> None:
                if progress is not None:
                    progress(base[0] + done, base[1] + listed, base[2] + steps)

            report = await parts.poller.backfill(since, progress=tick)
            total.flows += report.flows
            total.executions_listed += report.executions_listed
            total.executions_read += report.executions_read
            total.steps_exported += report.steps_exported
            total.executions_ended += report.executions_ended
            total.failed_flows += report.failed_flows
            total.error_reasons += report.error_reasons
            if "unauthorized" in report.error_reasons:
                self.health.account_error(parts.account_sid, "unauthorized")
        return total

    # -- shutting down --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop the subaccounts' push processors; close every API client (the main's too)."""
        for parts in list(self.followed.values()):
            if parts is not self.main:
                await self._stop_push(parts)
        await self.accounts_api.aclose()
        for parts in {id(p): p for p in [*self.followed.values(), self.main]}.values():
            await parts.api.aclose()

    def close(self, deadline: float | None = None) -> None:
        """Stop the subaccounts' shippers (flushing) and close their state; the main account's
        parts, and a shared sender, are closed by the exporter itself.

        Every shipper is told to stop first, then each flushes until one shared ``deadline``
        (``time.monotonic()``; default: the shippers' STOP_TIMEOUT from now), so a stop with
        the tracing backend down takes that long however many accounts are followed.
        """
        if deadline is None:
            deadline = time.monotonic() + STOP_TIMEOUT
        self.request_stop()
        for parts in self._others():
            self._close_parts(parts, deadline)

    def request_stop(self) -> None:
        """Tell every subaccount's shipper to stop, without waiting (``close`` waits)."""
        for parts in self._others():
            if parts.started:
                parts.shipper.request_stop()

    def _others(self) -> list[AccountParts]:
        return [parts for parts in self.followed.values() if parts is not self.main]
