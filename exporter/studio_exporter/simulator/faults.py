"""Fault injection: which faults are on, and reproducible per-request decisions about them.

Each decision is a hash of (seed, fault kind, request key, attempt number for that key), so
the same sequence of requests meets the same faults whatever the thread timing. Missing steps
are a property of the step (a hash of its identity), so a missing step is missing on every read.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass, fields

#: Fault kinds as counted in the truth's ``faults`` map.
FAULT_KINDS = (
    "latency",
    "fail_429",
    "concurrency_429",
    "fail_500",
    "fail_503",
    "reset",
    "malformed_json",
    "truncated_json",
    "unexpected_values",
    "out_of_order",
)


@dataclass(frozen=True, slots=True)
class Faults:
    """Fault knobs. Probabilities are per request (``missing_steps``: per step).

    - ``latency_ms``: added to every authenticated request (without blocking others).
    - ``fail_429``: 429 with code 20429 and ``Retry-After: retry_after_seconds``.
    - ``max_concurrency``: more than this many requests in flight get 429 / 20429 (0 = no limit).
    - ``fail_5xx``: 500 or 503 with Twilio's error body.
    - ``reset``: the connection is closed (RST) without a response.
    - ``malformed_json`` / ``truncated_json``: a 200 whose body is not valid JSON / is cut short.
    - ``missing_steps``: a step is never served (Studio's step logs are best-effort). A chain's
      end step is not withheld by it, so an ended chain shows its end unless:
    - ``missing_end_steps``: an ended execution's step into ``Ended`` is never served (per
      execution): Studio says "ended", and no step shows where it ended.
    - ``unexpected_values``: one record of a 200 carries a value the spec does not promise (a new
      execution status, a null, an unknown widget type).
    - ``out_of_order``: a steps page comes back in shuffled order.
    """

    latency_ms: float = 0.0
    fail_429: float = 0.0
    retry_after_seconds: int = 1
    max_concurrency: int = 0
    fail_5xx: float = 0.0
    reset: float = 0.0
    malformed_json: float = 0.0
    truncated_json: float = 0.0
    missing_steps: float = 0.0
    missing_end_steps: float = 0.0
    unexpected_values: float = 0.0
    out_of_order: float = 0.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if value < 0:
                raise ValueError(f"{item.name} must not be negative, got {value}")
            if (
                item.name not in {"latency_ms", "retry_after_seconds", "max_concurrency"}
                and value > 1
            ):
                raise ValueError(f"{item.name} is a probability in [0, 1], got {value}")


class FaultDice:
    """Reproducible fault decisions and the counts of what was injected."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._attempts: dict[str, int] = {}
        self.counts: Counter[str] = Counter()

    def attempt(self, key: str) -> int:
        """The number of this request among those with the same key (0 for the first)."""
        with self._lock:
            number = self._attempts.get(key, 0)
            self._attempts[key] = number + 1
            return number

    def roll(self, kind: str, key: str, attempt: int) -> float:
        """A uniform number in [0, 1) for this fault kind, request key and attempt."""
        digest = hashlib.blake2b(
            f"{self._seed}|{kind}|{key}|{attempt}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2.0**64

    def hits(self, kind: str, probability: float, key: str, attempt: int) -> bool:
        return probability > 0 and self.roll(kind, key, attempt) < probability

    def count(self, kind: str) -> None:
        with self._lock:
            self.counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {kind: self.counts.get(kind, 0) for kind in FAULT_KINDS}
