"""What the exporter may ask of its state store, one protocol per concern.

Every store keeps the same guarantee: the writes of one ``batch()`` (exported-step marks,
cursors, the metric snapshot, spans queued for the sink, events acknowledged) commit together
or not at all, so a crash can never leave a step counted but not marked, or marked but not
counted. Writes outside a batch (``ack_spans``, ``enqueue_events``, ``set_last_success``,
``prune``) are their own transaction; called by a thread inside a batch they raise
``StateError``: what commits with a batch goes through the batch's own operations.

The value types (``StoredFlow``, ``OutboxSpan``, ``InboxEvent``, ``PruneResult``), the errors
(``StateError``, ``InboxFull``, ``LeaseLost``) and the bounds every store keeps are defined here,
with the protocols, and shared by every implementation, so that callers catch one set of
exceptions whatever the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from studio_exporter.core.domain import Execution

#: Studio keeps executions for 30 days after they started; nothing older can be re-read.
DEFAULT_RETENTION = timedelta(days=30)
#: Bounds of the outbox and the inbox (rows). Beyond them spans are dropped (and counted) and
#: webhook deliveries refused (Twilio retries them), so a dead sink cannot fill the disk.
DEFAULT_MAX_PENDING_SPANS = 200_000
DEFAULT_MAX_PENDING_EVENTS = 100_000


class StateError(Exception):
    """The state file cannot be used (foreign, corrupt, newer, locked) or the store is closed."""


class LeaseLost(StateError):  # noqa: N818 - reads as what happened, like InboxFull
    """A commit for a work unit this replica no longer holds: it moved, or its lease expired.

    The transaction rolled back; the unit's new owner continues from what was committed.
    """


class InboxFull(StateError):  # noqa: N818 - reads as what happened; callers answer 429
    """Enqueueing would exceed the inbox bound: nothing was written, the sender should retry."""


@dataclass(frozen=True, slots=True)
class StoredFlow:
    """A flow as last seen: its name, revision and raw definition JSON."""

    sid: str
    name: str
    revision: int
    definition: str


class OutboxSpan(NamedTuple):
    """A serialized span waiting for the sink; ``id`` is what ``ack_spans`` takes."""

    id: int
    payload: bytes


class InboxEvent(NamedTuple):
    """A webhook event committed but not yet processed; ``id`` is what ``ack_events`` takes."""

    id: int
    event_id: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class PruneResult:
    """How many rows ``prune`` removed."""

    executions: int
    step_marks: int
    seen_events: int


class LedgerBatch(Protocol):
    """The writes of one transaction (what ``StateStore.batch()`` yields)."""

    @property
    def spans_dropped(self) -> int:
        """Oldest pending spans removed to stay within the outbox bound (real once committed)."""
        ...

    def upsert_flow(self, sid: str, name: str, revision: int, definition: str) -> None: ...

    def upsert_execution(self, execution: Execution, *, done: bool = False) -> None:
        """Follow an execution, or record it ``done``; done and ended never go backwards."""
        ...

    def upsert_executions(self, executions: Iterable[Execution], *, done: bool = False) -> None: ...

    def forget_executions(self, execution_sids: Iterable[str]) -> int:
        """Forget executions Studio deleted, and their marks; returns how many were known."""
        ...

    def mark_steps_exported(self, execution_sid: str, step_sids: Iterable[str]) -> None:
        """The execution must be upserted in the same batch or before, or the batch fails."""
        ...

    def set_cursor(self, flow_sid: str, newest_created: datetime) -> None:
        """Advance a flow's cursor; an older value than the stored one is ignored."""
        ...

    def save_metric_snapshot(self, blob: bytes) -> None: ...

    def save_unit_snapshot(self, flow_sid: str, blob: bytes) -> None:
        """The metric snapshot of one work unit (a flow), where replicas lease units."""
        ...

    def hold_unit(self, flow_sid: str) -> None:
        """Fail the batch (``LeaseLost``) unless this exporter holds the flow's lease.

        Where nothing is leased (SQLite; PostgreSQL without ``lease_owner``) every unit is held.
        """
        ...

    def enqueue_spans(self, payloads: Iterable[bytes | str]) -> int:
        """Append spans to the outbox; returns how many oldest spans were dropped for room."""
        ...

    def ack_events(self, ids: Iterable[int]) -> int:
        """Remove processed events from the inbox atomically with their effects."""
        ...

    def enqueue_events(
        self, events: Sequence[tuple[str, bytes | str]], *, received_at: datetime | None = None
    ) -> int:
        """``EventInbox.enqueue_events`` committed with this batch (``InboxFull``: no room)."""
        ...


class ExportLedger(Protocol):
    """Flows, cursors, followed and done executions, and the steps already exported."""

    def flows(self) -> list[StoredFlow]: ...

    def flow(self, sid: str) -> StoredFlow | None: ...

    def cursor(self, flow_sid: str) -> datetime | None:
        """The newest execution ``date_created`` fully listed for the flow, if any."""
        ...

    def active_executions(self, flow_sid: str) -> list[Execution]:
        """The flow's followed executions (not done), oldest first, without personal data."""
        ...

    def is_known(self, execution_sid: str) -> bool: ...

    def known_executions(self, execution_sids: Iterable[str]) -> set[str]: ...

    def is_done(self, execution_sid: str) -> bool: ...

    def done_executions(self, execution_sids: Iterable[str]) -> set[str]: ...

    def exported_steps(self, execution_sid: str, step_sids: Iterable[str]) -> set[str]:
        """Which of ``step_sids`` are exported: all of them once the execution is done."""
        ...

    def account_sid(self) -> str | None:
        """The account this state belongs to, if one has claimed it."""
        ...

    def prune(self, now: datetime, retention: timedelta = ...) -> PruneResult:
        """Forget executions created and event ids seen before ``now - retention``."""
        ...


class MetricSnapshots(Protocol):
    """The metric snapshot (saved in batches) and each source's last success."""

    def metric_snapshot(self) -> bytes | None: ...

    def unit_metric_snapshot(self, flow_sid: str) -> bytes | None: ...

    def set_last_success(self, source: str, at: datetime) -> None: ...

    def last_success(self, source: str) -> datetime | None: ...


class SpanOutbox(Protocol):
    """Spans wait here (queued in batches) until the sink acknowledges them."""

    @property
    def max_pending_spans(self) -> int: ...

    def pending_spans(self, limit: int) -> list[OutboxSpan]:
        """The oldest ``limit`` spans not yet acknowledged, oldest first."""
        ...

    def ack_spans(self, ids: Iterable[int]) -> int:
        """Delete acknowledged spans; returns how many were still pending. Ids are never reused."""
        ...

    def count_pending_spans(self) -> int: ...


class EventInbox(Protocol):
    """Webhook events, committed before Twilio is told they arrived, deduplicated on their id."""

    @property
    def max_pending_events(self) -> int: ...

    def enqueue_events(
        self, events: Sequence[tuple[str, bytes | str]], *, received_at: datetime | None = None
    ) -> int:
        """Commit new events (ids never seen before); returns how many; ``InboxFull`` if no room."""
        ...

    def next_events(self, limit: int) -> list[InboxEvent]: ...

    def ack_events(self, ids: Iterable[int]) -> int:
        """Delete processed events; their ids stay remembered until pruned."""
        ...

    def count_pending_events(self) -> int: ...


class StateStore(ExportLedger, MetricSnapshots, SpanOutbox, EventInbox, Protocol):
    """A whole store: the four concerns and the transaction that spans them."""

    def batch(self) -> AbstractContextManager[LedgerBatch]:
        """One transaction: commits when the block exits, rolls back if it raises; no nesting."""
        ...

    def close(self) -> None:
        """Release the database; closing twice is harmless, using a closed store raises."""
        ...

    def __enter__(self) -> StateStore: ...

    def __exit__(self, *exc: object) -> None:
        """``close()``."""
        ...
