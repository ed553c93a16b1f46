"""Adaptive request concurrency (AIMD) and jittered retry delays for the Studio API."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from studio_exporter.core.backoff import MAX_RETRY_AFTER_SECONDS, Backoff


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a request that failed in a way that may pass."""

    max_attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 10.0

    @property
    def backoff(self) -> Backoff:
        """Full jitter: after failure n, anywhere from 0 to min(max_delay, base_delay * 2**n)."""
        return Backoff(base=self.base_delay, cap=self.max_delay, jitter=1.0)

    def delay(self, attempt: int, rng: random.Random) -> float:
        return self.backoff.delay(attempt, rng)


class AdaptiveLimiter:
    """Bounds requests in flight; halves the bound on throttling, grows it back on success.

    Twilio answers 429 (code 20429) when an account has too many requests in flight. The limit
    starts at the configured maximum, is halved (multiplicative decrease) on every 429, and grows
    by one after ``recover_after`` consecutive successes (additive increase). A ``Retry-After``
    pauses every new request until it has passed, not just the one that got it.
    """

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        recover_after: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum}, {maximum}")
        self.maximum = maximum
        self.minimum = minimum
        self._limit = maximum
        self._in_flight = 0
        self._successes = 0
        self._recover_after = recover_after
        self._resume_at = 0.0
        self._clock = clock
        #: Requests waiting for a place, first come first woken (one event loop: no lock).
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the ``limit`` places for the duration of a request."""
        await self._acquire()
        try:
            yield
        finally:
            self._in_flight -= 1
            self._wake()

    async def _acquire(self) -> None:
        while True:
            pause = self._resume_at - self._clock()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            if self._in_flight < self._limit:
                self._in_flight += 1
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the place goes to the next one
                raise
            finally:
                if not waiter.done() or waiter.cancelled():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)

    def _wake(self) -> None:
        """Wake as many waiters as there are free places (at least one), not hundreds."""
        free = max(1, self._limit - self._in_flight)
        while free and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def on_success(self) -> None:
        self._successes += 1
        if self._successes >= self._recover_after and self._limit < self.maximum:
            self._limit += 1
            self._successes = 0

    def on_throttled(self, retry_after: float | None) -> float:
        """Record a 429; returns how long to wait before retrying (and pauses every request)."""
        self._successes = 0
        self._limit = max(self.minimum, self._limit // 2)
        wait = min(MAX_RETRY_AFTER_SECONDS, retry_after) if retry_after is not None else 1.0
        self._resume_at = max(self._resume_at, self._clock() + wait)
        return wait
