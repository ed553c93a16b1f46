"""Tests for backoff: the one Retry-After parser and the one jittered exponential backoff."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest

from studio_exporter.core.backoff import (
    MAX_BACKOFF_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    Backoff,
    parse_retry_after,
    poll_backoff,
)

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("3", 3.0, id="seconds"),
        pytest.param(" 1.5 ", 1.5, id="fraction"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("Wed, 21 Oct 2015 07:28:20 GMT", 20.0, id="date"),
        pytest.param("Wednesday, 21-Oct-15 07:28:20 GMT", 20.0, id="date-rfc850"),
        pytest.param("Wed Oct 21 07:28:20 2015", 20.0, id="date-asctime"),
        pytest.param("Wed, 21 Oct 2015 07:27:00 GMT", 0.0, id="past-date"),
        pytest.param("-4", 0.0, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("", None, id="empty"),
        pytest.param("1e3", None, id="exponent"),
        pytest.param("nan", None, id="nan"),
        pytest.param("Wed, 32 Oct 2015 07:28:20 GMT", None, id="impossible-date"),
        pytest.param("86400", MAX_RETRY_AFTER_SECONDS, id="huge"),
        pytest.param("9" * 400, MAX_RETRY_AFTER_SECONDS, id="huge-beyond-float"),
        pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_SECONDS, id="huge-date"),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def test_a_date_is_measured_from_the_current_time_by_default() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # long past
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("policy", "waits"),
    [
        pytest.param(Backoff(base=1.0), [1, 2, 4, 8, 16], id="doubling"),
        pytest.param(Backoff(base=0.5, factor=3.0), [0.5, 1.5, 4.5, 13.5, 40.5], id="factor"),
        pytest.param(Backoff(base=1.0, cap=5.0), [1, 2, 4, 5, 5], id="capped"),
        pytest.param(Backoff(base=10.0, cap=5.0), [5, 5, 5, 5, 5], id="base-above-cap"),
        pytest.param(Backoff(base=0.0), [0, 0, 0, 0, 0], id="zero"),
    ],
)
def test_unjittered_waits_grow_exponentially_up_to_the_cap(
    policy: Backoff, waits: list[float]
) -> None:
    assert [policy.delay(attempt) for attempt in range(5)] == waits


def test_a_loop_failing_for_days_waits_the_cap_rather_than_overflowing() -> None:
    assert Backoff(base=1.0, cap=30.0).delay(5_000) == 30.0
    assert Backoff(base=1.0).delay(5_000) == math.inf  # uncapped: the caller's deadline bounds it


@pytest.mark.parametrize(
    ("jitter", "low"),
    [
        pytest.param(1.0, 0.0, id="full"),
        pytest.param(0.5, 0.5, id="half"),
        pytest.param(0.2, 0.8, id="fifth"),
    ],
)
def test_jitter_only_shortens_a_wait_and_spreads_it(jitter: float, low: float) -> None:
    policy = Backoff(base=1.0, cap=8.0, jitter=jitter)
    rng = random.Random(7)
    for attempt in range(8):
        ceiling = min(8.0, 2.0**attempt)
        waits = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(low * ceiling <= wait <= ceiling for wait in waits)
        # The whole range is used, not one point of it.
        assert max(waits) - min(waits) > 0.8 * (ceiling - low * ceiling)


def test_jittered_waits_are_deterministic_with_an_injected_generator() -> None:
    policy = Backoff(base=0.2, cap=10.0, jitter=1.0)
    first = [policy.delay(attempt, random.Random(42)) for attempt in range(10)]
    again = [policy.delay(attempt, random.Random(42)) for attempt in range(10)]
    other = [policy.delay(attempt, random.Random(43)) for attempt in range(10)]
    assert first == again
    assert first != other


def test_full_jitter_draws_as_uniform_from_zero_to_the_ceiling() -> None:
    """The Studio API's retries drew ``rng.uniform(0, ceiling)``: the same numbers still."""
    policy = Backoff(base=0.2, cap=10.0, jitter=1.0)
    ours, theirs = random.Random(3), random.Random(3)
    for attempt in range(1, 8):
        assert policy.delay(attempt, ours) == theirs.uniform(0.0, min(10.0, 0.2 * 2**attempt))


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"base": -1.0}, id="negative-base"),
        pytest.param({"base": 1.0, "factor": 0.5}, id="shrinking"),
        pytest.param({"base": 1.0, "cap": -1.0}, id="negative-cap"),
        pytest.param({"base": 1.0, "jitter": 1.5}, id="jitter-above-one"),
    ],
)
def test_an_impossible_policy_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="need base"):
        Backoff(**fields)


@pytest.mark.parametrize(
    ("interval", "waits"),
    [
        pytest.param(1.0, [1, 2, 4, 8, 16, 32, 32, 32], id="short-interval-32-intervals"),
        pytest.param(30.0, [30, 60, 120, 240, 300, 300, 300, 300], id="default-interval-5-min"),
    ],
)
def test_a_failing_poll_waits_up_to_32_intervals_or_5_minutes(
    interval: float, waits: list[float]
) -> None:
    policy = poll_backoff(interval)
    assert [policy.ceiling(failures) for failures in range(8)] == waits
    assert policy.cap <= MAX_BACKOFF_SECONDS
    rng = random.Random(7)
    for failures, ceiling in enumerate(waits):
        drawn = [policy.delay(failures, rng) for _ in range(200)]
        # Spread over the upper half, so replicas and accounts failing together retry apart.
        assert ceiling / 2 <= min(drawn) < max(drawn) <= ceiling
