"""Retry policy in one place: jittered exponential backoff and the ``Retry-After`` header."""

from __future__ import annotations

import email.utils
import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

#: Retry-After values above this are capped: a misbehaving proxy must not park us for hours.
MAX_RETRY_AFTER_SECONDS: Final = 60.0
#: The longest a failing unit of work (an account's poll, an execution's push apply) waits
#: before it is tried again.
MAX_BACKOFF_SECONDS: Final = 300.0
#: A failing poll waits at most this many doublings of the poll interval (32 intervals).
MAX_POLL_DOUBLINGS: Final = 5

_DELTA_SECONDS = re.compile(r"[+-]?\d+(?:\.\d+)?")
# Jitter drawn when the caller injects no generator; tests inject a seeded one.
_RANDOM = random.Random()


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff: the wait after failure ``n`` is ``min(cap, base * factor**n)``,
    less a random share of up to ``jitter`` of it (0: exactly that; 1: "full jitter", anywhere
    from 0 to that). Jitter only ever shortens a wait, so ``cap`` bounds every one of them.
    """

    base: float
    factor: float = 2.0
    cap: float = math.inf
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base < 0 or self.factor < 1 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ValueError(
                "need base >= 0, factor >= 1, cap >= 0 and 0 <= jitter <= 1, got "
                f"{self.base}, {self.factor}, {self.cap}, {self.jitter}"
            )

    def ceiling(self, attempt: int) -> float:
        """The wait after failure ``attempt`` before jitter: never above ``cap``."""
        if self.base == 0:
            return 0.0
        try:
            grown = self.base * self.factor**attempt
        except OverflowError:  # a loop failing for days: past any cap long ago
            grown = math.inf
        return min(self.cap, grown)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failure ``attempt`` (0 for the first wait if the caller counts
        from 0), drawn with ``rng`` when jittered."""
        ceiling = self.ceiling(attempt)
        if self.jitter == 0:
            return ceiling
        return (rng or _RANDOM).uniform(ceiling * (1.0 - self.jitter), ceiling)


#: The share of a wait drawn at random for loops many accounts or replicas run at once (a
#: failing poll, account, push apply, span batch): after a shared outage they do not all retry
#: in the same second.
SPREAD = 0.5


def poll_backoff(poll_interval: float) -> Backoff:
    """A failing poll's next try: up to 2, 4, ... 32 poll intervals later (at most 5 minutes),
    and at least half of that (``SPREAD``)."""
    return Backoff(
        base=poll_interval,
        cap=min(MAX_BACKOFF_SECONDS, poll_interval * 2**MAX_POLL_DOUBLINGS),
        jitter=SPREAD,
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, at most ``MAX_RETRY_AFTER_SECONDS``.

    RFC 9110 allows delta-seconds (``120``) or an HTTP-date (``Wed, 21 Oct 2015 07:28:00 GMT``,
    or the obsolete RFC 850 and asctime forms, which recipients must accept). A date is
    measured from ``now`` (the current time by default); one in the past, or a negative
    number, means "now" (0). A fraction (``1.5``) is taken as meant. None when the header is
    absent or is neither form (the caller then uses its own backoff).
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)
    else:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if moment.tzinfo is None:  # asctime and "-0000" carry no zone: HTTP dates are UTC
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(MAX_RETRY_AFTER_SECONDS, max(0.0, seconds))
