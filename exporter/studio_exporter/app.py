"""Assembles the running exporter: store, API client, poller, sinks and web endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from studio_exporter import __version__
from studio_exporter.accounts import (
    AccountSupervisor,
    Leasing,
    SharedSender,
    build_account_parts,
)
from studio_exporter.config import Config
from studio_exporter.sinks.metrics import AccountMetrics, StudioMetrics
from studio_exporter.sinks.selfmetrics import ExporterMetrics, LeaseMetrics, PushMetrics
from studio_exporter.sinks.shipper import STOP_TIMEOUT, SpanShipper
from studio_exporter.sinks.span_sink import (
    JsonLinesSender,
    SpanSender,
)
from studio_exporter.sources.poller import PRUNE_EVERY, Poller, utc_now
from studio_exporter.sources.push import PushProcessor, WebhookReceiver
from studio_exporter.sources.replicas import LeaseOwnership, Replica, replica_identity
from studio_exporter.sources.studio_api import StudioApi
from studio_exporter.store.leases import LeaseBoard
from studio_exporter.store.protocols import StateStore
from studio_exporter.web.server import PostHook, Readiness, WebServer
from studio_exporter.web.webconfig import WebConfigWatcher

log = logging.getLogger(__name__)

#: Seconds the poll cycle or push pass in progress gets to commit once a stop is asked for;
#: then it is cancelled (its transaction rolls back and the next start redoes it). With the
#: shipper's STOP_TIMEOUT this bounds a graceful stop well inside a 10 s grace period.
STOP_GRACE = 2.0


@dataclass
class Exporter:
    """The exporter's parts, wired together; ``start()``/``stop()`` around ``poller.run``."""

    config: Config
    registry: CollectorRegistry
    store: StateStore
    metrics: StudioMetrics
    health: ExporterMetrics
    api: StudioApi
    poller: Poller
    shipper: SpanShipper
    web: WebServer | None
    spans_file: Path | None
    post_hooks: dict[str, PostHook] = field(default_factory=dict)
    push: PushProcessor | None = None
    web_config: WebConfigWatcher | None = None
    #: Which accounts are followed; the parts above are the main account's.
    accounts: AccountSupervisor | None = None
    #: With PostgreSQL in poll mode: this replica's lease loop (``replicas``).
    replica: Replica | None = None

    def readiness(self) -> Readiness:
        """Ready while the exporter does its job: fresh metrics, and webhooks in push modes.

        Only polling that fails in poll mode makes it unready: its metrics go stale. What does
        not stop that job is listed but leaves it ready: a tracing backend that is down (spans
        wait in the outbox; the span metrics and alerts show it), and in push and hybrid mode
        REST reads that fail (the receiver still takes every delivery, and an unready pod
        would be taken out of its Service, losing the deliveries it could still take).
        With many accounts, polling is judged over all of them (the supervisor's record).
        """
        blocking: dict[str, str] = {}
        notes: dict[str, str] = {}
        poller: Poller | AccountSupervisor = self.poller
        if self.accounts is not None and self.accounts.multi:
            poller = self.accounts
        polling = notes if self.config.mode == "hybrid" else blocking
        if self.push is not None and self.push.consecutive_failures:
            notes["push"] = f"{self.push.consecutive_failures} failed passes over the inbox"
        if self.config.mode == "push":
            pass  # no polling to judge
        elif poller.last_success is None:
            polling["poll"] = "no successful poll yet"
        else:
            age = (self.poller.clock() - poller.last_success).total_seconds()
            limit = 3 * self.config.poll_interval.total_seconds() + 30
            if age > limit:
                polling["poll"] = f"last successful poll {age:.0f}s ago"
        if poller.consecutive_failures:
            polling["poll_failures"] = f"{poller.consecutive_failures} failed cycles in a row"
        if self.shipper.failing_since is not None:
            stuck = time.monotonic() - self.shipper.failing_since
            notes["spans"] = f"span export failing for {stuck:.0f}s; spans kept in the outbox"
        return Readiness(ready=not blocking, reasons={**notes, **blocking})

    def start(self) -> None:
        self.shipper.start()
        if self.web is not None:
            self.web.start()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, receive pushes, or both, by ``--mode``, until ``stop`` is set."""
        tasks = []
        multi = self.accounts is not None and self.accounts.multi
        if self.config.mode in ("poll", "hybrid"):
            if multi:
                assert self.accounts is not None
                tasks.append(self.accounts.run(stop))
            else:
                tasks.append(self.poller.run(stop, self.config.poll_interval))
        if self.accounts is not None and not (multi and self.config.mode != "push"):
            tasks.append(self.accounts.refresh_loop(stop))
        if self.push is not None:
            tasks.append(self.push.run(stop))
        if self.config.mode == "push":
            tasks.append(self._housekeeping(stop))
        if self.replica is not None:
            tasks.append(self.replica.run(stop))
        await asyncio.gather(*tasks)

    async def serve(self, stop: asyncio.Event, grace: float = STOP_GRACE) -> None:
        """``run`` until ``stop`` is set; the work in progress then has ``grace`` s to finish."""
        running = asyncio.ensure_future(self.run(stop))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                await asyncio.wait({running}, timeout=grace)
            if not running.done():
                log.warning("work in progress cancelled after %.1fs; redone next start", grace)
                running.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await running
                return
            running.result()
        finally:
            stopping.cancel()
            running.cancel()

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Push mode has no poll cycle: prune state past retention on the same schedule."""
        while not stop.is_set():
            self.poller.prune(self.poller.clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=PRUNE_EVERY.total_seconds())

    async def aclose_apis(self) -> None:
        """Close every account's API clients (before ``close``)."""
        if self.accounts is not None:
            await self.accounts.aclose()
        else:
            await self.api.aclose()

    def close(self) -> None:
        """Flush spans (for at most the shipper's STOP_TIMEOUT), stop serving, close the state.

        Safe to call once everything has stopped.
        """
        # One deadline for every account's shipper: the stop stays within STOP_TIMEOUT however
        # many accounts are followed and whatever the tracing backend does.
        deadline = time.monotonic() + STOP_TIMEOUT
        if self.replica is not None:
            # Polling has stopped and committed: the other replicas may take the units now.
            self.replica.leave()
        if self.accounts is not None:
            self.accounts.request_stop()
        self.shipper.stop(flush=True, deadline=deadline)
        if self.accounts is not None:
            self.accounts.close(deadline)
        if self.accounts is not None and self.accounts.shared_sender is not None:
            self.accounts.shared_sender.shutdown()  # every shipper that used it has stopped
        if self.web is not None:
            self.web.stop()
        self.store.close()


def build_exporter(
    config: Config,
    *,
    env: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    span_sender: SpanSender | None = None,
    serve_web: bool = True,
    clock: Callable[[], datetime] = utc_now,
    leases: bool | None = None,
) -> Exporter:
    """Open the state, build every part and wire them; nothing runs until ``start()``.

    ``leases`` (default: ``config.leases``) makes this replica share the work with the others
    on the same PostgreSQL database; ``backfill`` runs without, alone on its accounts' state.
    """
    env = os.environ if env is None else env
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    account_sid = config.credentials.account_sid
    registry = CollectorRegistry()
    leasing: Leasing | None = None
    board: LeaseBoard | None = None
    if config.leases if leases is None else leases:
        assert config.state_postgres_url is not None  # config.leases says so
        replica_id, replica_name = replica_identity()
        board = LeaseBoard.open(
            config.state_postgres_url.reveal(), replica=replica_id, name=replica_name
        )
        leasing = Leasing(replica_id, LeaseOwnership())
    accounts_metrics = AccountMetrics(registry)
    sources = {"poll": ("poll",), "push": ("push",), "hybrid": ("poll", "push")}[config.mode]
    health = ExporterMetrics(registry, version=__version__, sources=sources, shard=config.shard)
    main = build_account_parts(
        config,
        config.credentials,
        health=health,
        env=env,
        transport=transport,
        sender=None if span_sender is None else SharedSender(span_sender),
        clock=clock,
        leasing=leasing,
    )
    accounts_metrics.add(account_sid, main.served)
    for source in sources:
        health.restore_last_success(source, main.store.last_success(source))
    store, metrics, api, poller, shipper, sender = (
        main.store,
        main.metrics,
        main.api,
        main.poller,
        main.shipper,
        main.sender,
    )
    supervisor = AccountSupervisor(
        config,
        main,
        accounts_metrics,
        health,
        env=env,
        transport=transport,
        shared_sender=span_sender,
        clock=clock,
    )
    built = Exporter(
        config=config,
        registry=registry,
        store=store,
        metrics=metrics,
        health=health,
        api=api,
        poller=poller,
        shipper=shipper,
        web=None,
        spans_file=sender.path if isinstance(sender, JsonLinesSender) else None,
        accounts=supervisor,
    )
    if leasing is not None and board is not None:
        supervisor.leasing = leasing
        built.replica = Replica(
            board,
            leasing.ownership,
            config.lease_duration,
            LeaseMetrics(registry),
            lambda: [parts.poller for parts in supervisor.followed.values()],
            tick_at_most=config.poll_interval,
        )
    if config.mode != "poll":
        assert config.webhook_auth_token is not None  # validated by config_from_mapping
        push_metrics = PushMetrics(registry)
        processor = PushProcessor(
            store,
            api,
            poller.recorder,
            metrics=push_metrics,
            health=health,
            clock=clock,
            # Pushed steps carry no context: allow-listed context comes from the REST read.
            hold_until_end=bool(config.context_allowlist),
            holds=poller.holds_account,
        )
        poller.on_units_released = processor.forget
        basic = config.webhook_basic_auth
        built.push = processor
        built.post_hooks[config.webhook_path] = WebhookReceiver(
            store,
            config.webhook_auth_token.reveal(),
            public_url=config.webhook_public_url,
            basic_auth=None if basic is None else (basic[0], basic[1].reveal()),
            metrics=push_metrics,
            on_accepted=processor.wake,
        )
    if config.mode != "poll" and config.include_subaccounts:
        # Each account signs with its own token: the main account gets its own path too.
        receiver = built.post_hooks[config.webhook_path]
        assert isinstance(receiver, WebhookReceiver)
        supervisor.push_metrics = receiver.metrics
        built.post_hooks[supervisor.webhook_path(account_sid)] = receiver
        main.receiver, main.push = receiver, built.push
    if serve_web:
        if config.web_config_file is not None:
            built.web_config = WebConfigWatcher(config.web_config_file)
        built.web = WebServer(
            config.listen_host,
            config.listen_port,
            registry,
            built.readiness,
            post_hooks=built.post_hooks,
            security=None if built.web_config is None else built.web_config.current,
            telemetry_path=config.telemetry_path,
            max_connections=config.max_connections,
            max_body_bytes=config.webhook_max_body_size,
            on_refused=health.http_refused,
        )
    supervisor.hooks = built.web.post_hooks if built.web is not None else built.post_hooks
    return built
