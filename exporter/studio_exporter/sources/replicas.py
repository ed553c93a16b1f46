"""Replicas sharing the work through PostgreSQL leases: one replica's lease loop.

Every third of ``--lease-duration`` the loop ticks the lease board (``store.leases``): it
reports the flows each followed account listed, renews this replica's leases, and learns which
(account, flow) units it holds now. Each account's poller then adopts that: it stops polling and
serving the units it gave up (before another replica can claim them: the claim comes at that
replica's own tick, after this one committed) and starts on the units it took, from the
committed cursor and metric snapshot.

When ticks fail (the database is unreachable), the replica keeps its units until its leases
would have expired by its own clock, measured from the start of the last tick that renewed
them; then it drops them all, since other replicas may have taken them over. Whatever happens
to the ticks, no commit of a unit's exports succeeds without a current lease (the fence in
``PostgresBatch.hold_unit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Protocol

from studio_exporter.sinks.selfmetrics import LeaseMetrics
from studio_exporter.store.leases import LeaseBoard, TickResult, Unit
from studio_exporter.store.protocols import StateError

log = logging.getLogger(__name__)


def replica_identity() -> tuple[str, str]:
    """A new replica id (unique per process start) and a name for people: host and pid."""
    return uuid.uuid4().hex, f"{socket.gethostname()}/{os.getpid()}"


class LeaseOwnership:
    """The units this replica holds now: what ``Poller.follows`` asks (``owns``)."""

    def __init__(self) -> None:
        self.owned: frozenset[Unit] = frozenset()

    @property
    def splits(self) -> bool:
        return True

    def owns(self, account_sid: str, flow_sid: str) -> bool:
        return (account_sid, flow_sid) in self.owned


class LeasedPoller(Protocol):
    """What the lease loop needs of each account's poller."""

    @property
    def account_sid(self) -> str: ...

    def listed_flow_sids(self) -> set[str] | None:
        """The account's flows (within ``--flow``) at the last listing; None before one."""
        ...

    def adopt(self) -> None:
        """Follow exactly the units the ownership holds now (release and acquire)."""
        ...


class Replica:
    """One replica's lease loop (see the module docstring)."""

    def __init__(
        self,
        board: LeaseBoard,
        ownership: LeaseOwnership,
        duration: timedelta,
        metrics: LeaseMetrics,
        pollers: Callable[[], Iterable[LeasedPoller]],
        *,
        tick_at_most: timedelta | None = None,
    ) -> None:
        self.board = board
        self.tick_at_most = tick_at_most
        self.ownership = ownership
        self.duration = duration
        self.metrics = metrics
        self.pollers = pollers
        self.last_tick: TickResult | None = None
        self._renewed_at: float | None = None

    @property
    def interval(self) -> float:
        """Seconds between ticks: a third of the lease, so two ticks may fail before it ends,
        and at most half of ``tick_at_most`` (the poll interval): a dead replica's units are
        then taken within the lease duration plus one poll interval of its death, with half
        an interval to spare for a busy machine."""
        third = self.duration.total_seconds() / 3
        if self.tick_at_most is None:
            return third
        return min(third, self.tick_at_most.total_seconds() / 2)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.interval)

    async def tick(self) -> None:
        pollers = list(self.pollers())
        listed: Mapping[str, set[str]] = {
            poller.account_sid: flows
            for poller in pollers
            if (flows := poller.listed_flow_sids()) is not None
        }
        started = time.monotonic()
        try:
            result = await asyncio.wait_for(
                asyncio.to_thread(self.board.tick, self.duration, listed),
                timeout=self.interval,
            )
        except (StateError, TimeoutError) as error:
            self.metrics.failed()
            log.warning("lease tick failed: %s", error or "no answer within the tick interval")
            if (
                self._renewed_at is not None
                and time.monotonic() - self._renewed_at >= self.duration.total_seconds()
                and self.ownership.owned
            ):
                log.warning(
                    "leases not renewed for %s: dropping %d units other replicas may take",
                    self.duration,
                    len(self.ownership.owned),
                )
                self.metrics.moved("expired", len(self.ownership.owned))
                self.metrics.leased(0)
                self._adopt(frozenset(), pollers)
            return
        self._renewed_at = started
        self.last_tick = result
        lost = self.ownership.owned - result.owned - result.released
        self.metrics.moved("acquired", len(result.acquired))
        self.metrics.moved("released", len(result.released))
        self.metrics.moved("expired", len(lost))
        self.metrics.ticked(leased=len(result.owned), units=result.units, replicas=result.replicas)
        if result.acquired or result.released or lost:
            log.info(
                "leases: %d units held of %d over %d replicas (+%d, -%d)",
                len(result.owned),
                result.units,
                result.replicas,
                len(result.acquired),
                len(result.released) + len(lost),
            )
        self._adopt(result.owned, pollers)

    def _adopt(self, owned: frozenset[Unit], pollers: Iterable[LeasedPoller]) -> None:
        self.ownership.owned = owned
        for poller in pollers:
            poller.adopt()

    def leave(self) -> None:
        """Give every unit back at once (a clean stop), so others need not wait for expiry."""
        try:
            self.board.leave()
        except StateError as error:
            log.warning("could not give the leases back (they expire by themselves): %s", error)
        self.board.close()
