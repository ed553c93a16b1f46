"""Time for the simulator: an injectable clock and Twilio's whole-second timestamp format."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

#: A clock returns the current time as an aware UTC datetime.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


class FakeClock:
    """A clock that stands still until a test moves it; safe to move from another thread."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by ``seconds`` and return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)


def epoch_seconds(when: datetime) -> float:
    """Seconds since the Unix epoch of an aware datetime (naive ones are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(epoch: int) -> str:
    """Twilio's REST timestamp: ISO 8601, UTC, whole seconds, ``Z`` suffix."""
    # time.gmtime rather than a datetime: the same text, in a third of the time (a steps page
    # has one per step, and the simulator shares the benchmark's two cores with the exporter).
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def parse_iso(text: str) -> float:
    """Parse an ISO 8601 date-time (a bare date means its midnight UTC) to epoch seconds."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
