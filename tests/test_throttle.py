"""Tests for throttle: AIMD concurrency, Retry-After pauses and jittered backoff."""

from __future__ import annotations

import asyncio
import random

from studio_exporter.core.backoff import MAX_RETRY_AFTER_SECONDS
from studio_exporter.sources.throttle import AdaptiveLimiter, RetryPolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttling_halves_and_success_recovers() -> None:
    limiter = AdaptiveLimiter(8, recover_after=3, clock=FakeClock())
    limiter.on_throttled(0)
    assert limiter.limit == 4
    limiter.on_throttled(0)
    limiter.on_throttled(0)
    limiter.on_throttled(0)
    assert limiter.limit == 1, "never below the minimum"
    for _ in range(3):
        limiter.on_success()
    assert limiter.limit == 2
    for _ in range(100):
        limiter.on_success()
    assert limiter.limit == 8, "never above the maximum"


def test_retry_after_is_capped_and_defaulted() -> None:
    limiter = AdaptiveLimiter(4, clock=FakeClock())
    assert limiter.on_throttled(None) == 1.0
    assert limiter.on_throttled(10_000) == MAX_RETRY_AFTER_SECONDS


def test_slots_bound_requests_in_flight() -> None:
    async def scenario() -> int:
        limiter = AdaptiveLimiter(3)
        peak = 0

        async def request() -> None:
            nonlocal peak
            async with limiter.slot():
                peak = max(peak, limiter.in_flight)
                await asyncio.sleep(0.01)

        await asyncio.gather(*(request() for _ in range(20)))
        assert limiter.in_flight == 0
        return peak

    assert asyncio.run(scenario()) == 3


def test_retry_after_pauses_new_requests() -> None:
    async def scenario() -> float:
        limiter = AdaptiveLimiter(4)
        limiter.on_throttled(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with limiter.slot():
            return loop.time() - started

    assert asyncio.run(scenario()) >= 0.15


def test_backoff_is_jittered_and_bounded() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(1)
    delays = [policy.delay(attempt, rng) for attempt in range(1, 10) for _ in range(20)]
    assert all(0.0 <= delay <= 4.0 for delay in delays)
    assert len(set(delays)) > 100


def test_a_woken_waiter_cancelled_passes_its_place_on() -> None:
    """A waiter woken for a freed place, then cancelled before it ran: the next one gets it."""

    async def scenario() -> int:
        limiter = AdaptiveLimiter(1)
        order: list[str] = []

        async def request(name: str) -> None:
            async with limiter.slot():
                order.append(name)

        held = limiter.slot()
        await held.__aenter__()
        second = asyncio.create_task(request("second"))
        third = asyncio.create_task(request("third"))
        await asyncio.sleep(0)  # both wait now
        await held.__aexit__(None, None, None)  # the place is handed to "second"...
        second.cancel()  # ...cancelled before it could run
        await asyncio.wait_for(third, timeout=5)
        assert second.cancelled()
        assert order == ["third"]
        return limiter.in_flight

    assert asyncio.run(scenario()) == 0


def test_cancelled_waiters_leave_the_queue() -> None:
    async def scenario() -> int:
        limiter = AdaptiveLimiter(1)
        async with limiter.slot():
            waiting = [asyncio.create_task(_one_slot(limiter)) for _ in range(5)]
            await asyncio.sleep(0)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        await asyncio.wait_for(_one_slot(limiter), timeout=5)  # nothing stale in the way
        return limiter.in_flight

    assert asyncio.run(scenario()) == 0


async def _one_slot(limiter: AdaptiveLimiter) -> None:
    async with limiter.slot():
        await asyncio.sleep(0)
