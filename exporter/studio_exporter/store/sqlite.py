"""The exporter's durable state: an embedded SQLite file written one atomic batch at a time.

What lives here, and why it is enough for exactly-once export across restarts:

- the flows seen and a per-flow cursor (the newest execution ``date_created`` fully listed);
- the executions being followed, the step sids already exported for each, and ``done`` once an
  execution ended and its last step was exported (its step marks are then dropped: ``done``
  says every step is exported, and the file stays small);
- the metric snapshot, saved in the same transaction as the step marks it accounts for;
- the span outbox (spans leave it only when the sink acknowledges them) and, for push mode, the
  event inbox (webhook events are acknowledged to Twilio only after they are committed here).

State is keyed by account: one file per followed account (the account given by
``TWILIO_ACCOUNT_SID`` keeps ``state_file(state_dir)``, a subaccount gets
``subaccount_state_file``), and the file records its account, so adding or removing an account
never touches another's file and a file is never read for the wrong account. A file written
before it recorded its account (schema 1, one account per exporter) is migrated in place on
open: it is taken to be the opener's account.

Durability: WAL with ``synchronous=FULL``. NORMAL would survive a killed process but may lose
the last commits on power loss; here a lost commit is not harmless, because Twilio never
re-sends a webhook batch we acknowledged, and spans the sink already sent would be re-sent.
FULL costs one fsync of the WAL per commit, and we commit once per batch, not per row.

Threads: one connection behind one re-entrant lock. The poller, the span sink and the webhook
server threads take turns; every operation is short (a batch of 1,000 executions commits in
tens of milliseconds) and SQLite lets one writer in at a time anyway, while a connection per
thread would leak one per short-lived HTTP server thread. Do no I/O inside a ``batch()``:
it holds the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

from studio_exporter.core.domain import Execution
from studio_exporter.store.protocols import (
    DEFAULT_MAX_PENDING_EVENTS,
    DEFAULT_MAX_PENDING_SPANS,
    DEFAULT_RETENTION,
    InboxEvent,
    InboxFull,
    OutboxSpan,
    PruneResult,
    StateError,
    StoredFlow,
)

#: The file name inside ``--state-dir``.
STATE_FILENAME = "studio-exporter.sqlite3"
#: Written to the SQLite header (``PRAGMA application_id``): "TSEX" marks the file as ours.
APPLICATION_ID = 0x54534558
#: ``PRAGMA user_version``; bump it together with a migration. 2: the ``account`` table.
#: 3: ``unit_metric_snapshots``.
SCHEMA_VERSION = 3
#: Schema versions this exporter migrates from (in ``_connect``), to SCHEMA_VERSION.
_MIGRATES_FROM = frozenset({1, 2})
#: Subaccounts' state files live in this folder of ``--state-dir``, one per Account SID.
ACCOUNTS_DIR = "accounts"

_SQLITE_MAGIC = b"SQLite format 3\x00"
# Rows of the counters table named after a source hold its last success (microseconds): small
# integers kept with the others rather than a schema change.
_LAST_SUCCESS = "last_success:"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_SCHEMA = """
CREATE TABLE flows (
    sid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    revision INTEGER NOT NULL,
    definition TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE cursors (
    flow_sid TEXT PRIMARY KEY,
    newest_created_us INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE executions (
    sid TEXT PRIMARY KEY,
    flow_sid TEXT NOT NULL,
    account_sid TEXT NOT NULL,
    status TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER,
    flow_version INTEGER,
    done INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- The poller asks for the followed executions of a flow every cycle; done ones are the bulk.
CREATE INDEX executions_followed ON executions (flow_sid) WHERE done = 0;
CREATE INDEX executions_created ON executions (created_us);

-- Marks exist only while an execution is followed; the foreign key makes a mark without its
-- execution fail the commit, and pruning an execution removes its marks.
CREATE TABLE exported_steps (
    execution_sid TEXT NOT NULL
        REFERENCES executions (sid) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    step_sid TEXT NOT NULL,
    PRIMARY KEY (execution_sid, step_sid)
) WITHOUT ROWID;

CREATE TABLE metric_snapshot (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    data BLOB NOT NULL
);

-- AUTOINCREMENT: ids are never reused, so acknowledging ids read before a drop can never
-- delete a newer span that took a reused id.
CREATE TABLE span_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    payload BLOB NOT NULL
);

CREATE TABLE event_inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    payload BLOB NOT NULL
);

-- Remembered past processing: Twilio redelivers for hours, and a redelivery must not count twice.
CREATE TABLE seen_events (
    event_id TEXT PRIMARY KEY,
    seen_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX seen_events_seen ON seen_events (seen_us);

-- Row counts kept in the same transactions as the rows: COUNT(*) would scan the whole table.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('pending_spans', 0), ('pending_events', 0);

-- The account this file belongs to (set by the first opener that names one).
CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sid TEXT NOT NULL
);

-- One metric snapshot per flow, where replicas lease flows (see store.leases).
CREATE TABLE unit_metric_snapshots (
    flow_sid TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
"""
_MIGRATIONS = {
    # 1 -> 2: a file from the single-account exporter gets its account recorded on open.
    1: """
CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    sid TEXT NOT NULL
);
""",
    # 2 -> 3: per-flow metric snapshots, for units that move between replicas.
    2: """
CREATE TABLE unit_metric_snapshots (
    flow_sid TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
""",
}
_TABLES = frozenset(
    {
        "flows",
        "cursors",
        "executions",
        "exported_steps",
        "metric_snapshot",
        "span_outbox",
        "event_inbox",
        "seen_events",
        "counters",
        "account",
    }
)


def state_file(state_dir: Path) -> Path:
    """The state database's path inside ``--state-dir`` (the main account's)."""
    return state_dir / STATE_FILENAME


def subaccount_state_file(state_dir: Path, account_sid: str) -> Path:
    """A subaccount's own state database inside ``--state-dir``."""
    return state_dir / ACCOUNTS_DIR / f"{account_sid}.sqlite3"


def _to_us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the state store takes aware UTC times")
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def _json_list(values: Iterable[str | int]) -> str:
    # One bound parameter expanded by json_each: a page of 1,000 sids is one statement, with
    # no dependence on SQLite's limit on the number of variables.
    return json.dumps(list(values))


def _read_counter(db: sqlite3.Connection, name: str) -> int:
    row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return int(row[0])


def _bump_counter(db: sqlite3.Connection, name: str, delta: int) -> int:
    row = db.execute(
        "UPDATE counters SET value = value + ? WHERE name = ? RETURNING value", (delta, name)
    ).fetchone()
    return int(row[0])


def _delete_by_ids(db: sqlite3.Connection, table: str, counter: str, ids: Iterable[int]) -> int:
    # table and counter are fixed names from this module, never caller input.
    deleted: int = db.execute(
        f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))",  # noqa: S608
        (_json_list(ids),),
    ).rowcount
    if deleted:
        _bump_counter(db, counter, -deleted)
    return deleted


def _enqueue_events(
    db: sqlite3.Connection,
    events: Sequence[tuple[str, bytes | str]],
    received_at: datetime | None,
    max_pending_events: int,
) -> int:
    """Insert webhook events not seen before; ``InboxFull`` (nothing written) past the bound."""
    seen_us = _to_us(received_at or datetime.now(UTC))
    already = {
        row[0]
        for row in db.execute(
            "SELECT event_id FROM seen_events WHERE event_id IN (SELECT value FROM json_each(?))",
            (_json_list(event_id for event_id, _ in events),),
        )
    }
    fresh: dict[str, bytes] = {}
    for event_id, payload in events:
        if event_id not in already and event_id not in fresh:
            fresh[event_id] = _as_bytes(payload)
    if not fresh:
        return 0
    pending = _read_counter(db, "pending_events")
    if pending + len(fresh) > max_pending_events:
        raise InboxFull(
            f"event inbox full: {pending} pending + {len(fresh)} new > {max_pending_events}"
        )
    db.executemany(
        "INSERT INTO seen_events (event_id, seen_us) VALUES (?, ?)",
        ((event_id, seen_us) for event_id in fresh),
    )
    db.executemany("INSERT INTO event_inbox (event_id, payload) VALUES (?, ?)", fresh.items())
    _bump_counter(db, "pending_events", len(fresh))
    return len(fresh)


class Batch:
    """One unit of work: every write in it commits together or not at all.

    Obtained from ``Store.batch()``; reads through the store inside the ``with`` block (same
    thread) see these writes. ``spans_dropped`` is the number of oldest pending spans removed
    to stay within the outbox bound; it is real only once the batch has committed.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        max_pending_spans: int,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
    ) -> None:
        self._db = connection
        self._max_pending_spans = max_pending_spans
        self._max_pending_events = max_pending_events
        self._done: set[str] = set()
        self._spans_added = 0
        self.spans_dropped = 0

    def upsert_flow(self, sid: str, name: str, revision: int, definition: str) -> None:
        self._db.execute(
            "INSERT INTO flows (sid, name, revision, definition) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sid) DO UPDATE SET name = excluded.name, "
            "revision = excluded.revision, definition = excluded.definition",
            (sid, name, revision, definition),
        )

    def upsert_execution(self, execution: Execution, *, done: bool = False) -> None:
        """Record an execution as followed, or as ``done`` (ended, last step exported).

        Never goes backwards: ``done`` stays set and an ended status stays ended, so a late or
        reordered event (push mode) cannot revive an execution.
        """
        self.upsert_executions((execution,), done=done)

    def upsert_executions(self, executions: Iterable[Execution], *, done: bool = False) -> None:
        rows = [
            (
                e.sid,
                e.flow_sid,
                e.account_sid,
                e.status,
                _to_us(e.date_created),
                None if e.date_updated is None else _to_us(e.date_updated),
                e.flow_version,
                int(done),
            )
            for e in executions
        ]
        self._db.executemany(
            "INSERT INTO executions (sid, flow_sid, account_sid, status, created_us, updated_us,"
            " flow_version, done) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (sid) DO UPDATE SET "
            "status = CASE WHEN executions.status = 'ended' THEN 'ended' ELSE excluded.status END,"
            " updated_us = coalesce(excluded.updated_us, executions.updated_us),"
            " flow_version = coalesce(excluded.flow_version, executions.flow_version),"
            " done = max(executions.done, excluded.done)",
            rows,
        )
        if done:
            self._done.update(row[0] for row in rows)

    def forget_executions(self, execution_sids: Iterable[str]) -> int:
        """Forget executions and their marks: Studio deleted them. Returns how many were known."""
        sids = _json_list(execution_sids)
        self._db.execute(
            "DELETE FROM exported_steps WHERE execution_sid IN (SELECT value FROM json_each(?))",
            (sids,),
        )
        return self._db.execute(
            "DELETE FROM executions WHERE sid IN (SELECT value FROM json_each(?))", (sids,)
        ).rowcount

    def mark_steps_exported(self, execution_sid: str, step_sids: Iterable[str]) -> None:
        """Record steps as exported. The execution must be upserted in the same batch or before."""
        self._db.executemany(
            "INSERT OR IGNORE INTO exported_steps (execution_sid, step_sid) VALUES (?, ?)",
            ((execution_sid, sid) for sid in step_sids),
        )

    def set_cursor(self, flow_sid: str, newest_created: datetime) -> None:
        """Advance a flow's cursor; an older value than the stored one is ignored."""
        self._db.execute(
            "INSERT INTO cursors (flow_sid, newest_created_us) VALUES (?, ?) "
            "ON CONFLICT (flow_sid) DO UPDATE SET "
            "newest_created_us = max(cursors.newest_created_us, excluded.newest_created_us)",
            (flow_sid, _to_us(newest_created)),
        )

    def save_metric_snapshot(self, blob: bytes) -> None:
        self._db.execute(
            "INSERT INTO metric_snapshot (id, data) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            (blob,),
        )

    def save_unit_snapshot(self, flow_sid: str, blob: bytes) -> None:
        """The metric snapshot of one flow's series (a work unit's, where units are leased)."""
        self._db.execute(
            "INSERT INTO unit_metric_snapshots (flow_sid, data) VALUES (?, ?) "
            "ON CONFLICT (flow_sid) DO UPDATE SET data = excluded.data",
            (flow_sid, blob),
        )

    def hold_unit(self, flow_sid: str) -> None:
        """Every unit is held: one exporter process owns a state file (``flock``)."""

    def enqueue_events(
        self, events: Sequence[tuple[str, bytes | str]], *, received_at: datetime | None = None
    ) -> int:
        """``Store.enqueue_events`` as part of this batch (one delivery, one commit)."""
        return _enqueue_events(self._db, events, received_at, self._max_pending_events)

    def enqueue_spans(self, payloads: Iterable[bytes | str]) -> int:
        """Append serialized spans to the outbox; returns how many oldest spans were dropped.

        ``str`` payloads are stored as UTF-8; ``pending_spans`` returns bytes.
        """
        cursor = self._db.executemany(
            "INSERT INTO span_outbox (payload) VALUES (?)", ((_as_bytes(p),) for p in payloads)
        )
        added = max(cursor.rowcount, 0)
        if not added:
            return 0
        pending = _bump_counter(self._db, "pending_spans", added)
        excess = pending - self._max_pending_spans
        dropped = 0
        if excess > 0:
            dropped = self._db.execute(
                "DELETE FROM span_outbox WHERE id IN "
                "(SELECT id FROM span_outbox ORDER BY id LIMIT ?)",
                (excess,),
            ).rowcount
            _bump_counter(self._db, "pending_spans", -dropped)
        self.spans_dropped += dropped
        return dropped

    def ack_events(self, ids: Iterable[int]) -> int:
        """Remove processed events from the inbox in this batch (atomically with their effects)."""
        return _delete_by_ids(self._db, "event_inbox", "pending_events", ids)

    def _finish(self) -> None:
        # Dropped here rather than in upsert so the order of calls inside a batch is free.
        if self._done:
            self._db.execute(
                "DELETE FROM exported_steps WHERE execution_sid IN "
                "(SELECT value FROM json_each(?))",
                (_json_list(self._done),),
            )


class Store:
    """The state database: ``Store.open(path)``, then a context manager or ``close()``."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        lock_file: IO[bytes],
        *,
        max_pending_spans: int,
        max_pending_events: int,
    ) -> None:
        self.path = path
        self.max_pending_spans = max_pending_spans
        self.max_pending_events = max_pending_events
        self._db: sqlite3.Connection | None = connection
        self._lock_file = lock_file
        self._lock = threading.RLock()
        self._batch_owner: int | None = None

    # ---- opening and closing -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        max_pending_spans: int = DEFAULT_MAX_PENDING_SPANS,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        account_sid: str | None = None,
    ) -> Store:
        """Open (or create) the state file at ``path``, for ``account_sid`` when given.

        Raises ``StateError`` for a file that is not ours (not SQLite, another application's
        database, a newer schema), that another process has open, or that belongs to another
        account; such a file is left as it is. A file that records no account yet (new, or
        migrated from the single-account schema) is given ``account_sid``.
        """
        if max_pending_spans < 1 or max_pending_events < 1:
            raise ValueError("max_pending_spans and max_pending_events must be at least 1")
        _inspect(path)  # refuse a foreign file before leaving anything (a lock file) next to it
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_file = _lock(path)
        try:
            connection = _connect(path)
            if account_sid is not None:
                _claim(connection, path, account_sid)
        except BaseException:
            lock_file.close()
            raise
        return cls(
            path,
            connection,
            lock_file,
            max_pending_spans=max_pending_spans,
            max_pending_events=max_pending_events,
        )

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA optimize")
            self._db.close()
            self._db = None
            self._lock_file.close()  # releases the flock

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                raise StateError(f"{self.path}: the state store is closed")
            yield self._db

    # ---- the unit of work ----------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """A transaction: commits when the block exits, rolls back if it raises."""
        with self._connection() as db:
            if self._batch_owner is not None:
                raise StateError("batches do not nest: this thread is already inside one")
            db.execute("BEGIN IMMEDIATE")
            self._batch_owner = threading.get_ident()
            try:
                batch = Batch(db, self.max_pending_spans, self.max_pending_events)
                yield batch
                batch._finish()
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # a failed COMMIT may already have ended it
                    db.execute("ROLLBACK")
                raise
            finally:
                self._batch_owner = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # A write outside batch(): always its own transaction. Inside a batch, writes go through
        # the batch's own operations, so what commits together is explicit at the call site.
        with self._connection() as db:
            if self._batch_owner is not None:
                raise StateError(
                    "a store write inside a batch: use the batch's operation (it commits with "
                    "the batch) or write after the batch"
                )
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    # ---- flows and cursors ---------------------------------------------------------------

    def flows(self) -> list[StoredFlow]:
        with self._connection() as db:
            rows = db.execute("SELECT sid, name, revision, definition FROM flows ORDER BY sid")
            return [StoredFlow(*row) for row in rows]

    def flow(self, sid: str) -> StoredFlow | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT sid, name, revision, definition FROM flows WHERE sid = ?", (sid,)
            ).fetchone()
            return None if row is None else StoredFlow(*row)

    def cursor(self, flow_sid: str) -> datetime | None:
        """The newest execution ``date_created`` fully listed for the flow, if any."""
        with self._connection() as db:
            row = db.execute(
                "SELECT newest_created_us FROM cursors WHERE flow_sid = ?", (flow_sid,)
            ).fetchone()
            return None if row is None else _from_us(row[0])

    # ---- executions and steps ------------------------------------------------------------

    def active_executions(self, flow_sid: str) -> list[Execution]:
        """The flow's followed executions (not done), oldest first, as last recorded.

        ``contact_channel_address`` is personal data and is never stored: it is None here.
        """
        with self._connection() as db:
            rows = db.execute(
                "SELECT sid, flow_sid, account_sid, status, created_us, updated_us, flow_version"
                " FROM executions WHERE flow_sid = ? AND done = 0 ORDER BY created_us, sid",
                (flow_sid,),
            ).fetchall()
        return [
            Execution(
                sid=sid,
                flow_sid=flow,
                account_sid=account,
                status=status,
                date_created=_from_us(created),
                date_updated=None if updated is None else _from_us(updated),
                flow_version=version,
            )
            for sid, flow, account, status, created, updated, version in rows
        ]

    def is_known(self, execution_sid: str) -> bool:
        """Whether the execution is followed or done."""
        return bool(self.known_executions((execution_sid,)))

    def known_executions(self, execution_sids: Iterable[str]) -> set[str]:
        """Which of these executions are followed or done (one query for a whole page)."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT sid FROM executions WHERE sid IN (SELECT value FROM json_each(?))",
                (_json_list(execution_sids),),
            )
            return {row[0] for row in rows}

    def is_done(self, execution_sid: str) -> bool:
        return bool(self.done_executions((execution_sid,)))

    def done_executions(self, execution_sids: Iterable[str]) -> set[str]:
        """Which of these executions are done (ended and fully exported)."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT sid FROM executions WHERE done = 1 AND "
                "sid IN (SELECT value FROM json_each(?))",
                (_json_list(execution_sids),),
            )
            return {row[0] for row in rows}

    def exported_steps(self, execution_sid: str, step_sids: Iterable[str]) -> set[str]:
        """Which of ``step_sids`` are already exported for the execution.

        All of them when the execution is done (its marks were dropped when it became done).
        """
        candidates = set(step_sids)
        with self._connection() as db:
            rows = db.execute(
                "SELECT step_sid FROM exported_steps WHERE execution_sid = ?1 "
                "UNION ALL SELECT NULL FROM executions WHERE sid = ?1 AND done = 1",
                (execution_sid,),
            ).fetchall()
        exported = {row[0] for row in rows}
        if None in exported:
            return candidates
        return candidates & exported

    # ---- metric snapshot -----------------------------------------------------------------

    def account_sid(self) -> str | None:
        """The account this file belongs to, if one has claimed it."""
        with self._connection() as db:
            row = db.execute("SELECT sid FROM account WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    def metric_snapshot(self) -> bytes | None:
        with self._connection() as db:
            row = db.execute("SELECT data FROM metric_snapshot WHERE id = 1").fetchone()
            return None if row is None else bytes(row[0])

    def unit_metric_snapshot(self, flow_sid: str) -> bytes | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT data FROM unit_metric_snapshots WHERE flow_sid = ?", (flow_sid,)
            ).fetchone()
            return None if row is None else bytes(row[0])

    # ---- span outbox ---------------------------------------------------------------------

    def pending_spans(self, limit: int) -> list[OutboxSpan]:
        """The oldest ``limit`` spans not yet acknowledged by the sink, oldest first."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, payload FROM span_outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [OutboxSpan(row[0], bytes(row[1])) for row in rows]

    def ack_spans(self, ids: Iterable[int]) -> int:
        """Delete spans the sink accepted; returns how many were still pending."""
        with self._write() as db:
            return _delete_by_ids(db, "span_outbox", "pending_spans", ids)

    def count_pending_spans(self) -> int:
        return self._counter("pending_spans")

    # ---- event inbox (push mode) ---------------------------------------------------------

    def enqueue_events(
        self, events: Sequence[tuple[str, bytes | str]], *, received_at: datetime | None = None
    ) -> int:
        """Commit webhook events durably, skipping ids seen before; returns how many were new.

        Raises ``InboxFull`` (writing nothing) when the new events would exceed the bound.
        Return only after this commits before acknowledging the delivery to Twilio.
        """
        with self._write() as db:
            return _enqueue_events(db, events, received_at, self.max_pending_events)

    def next_events(self, limit: int) -> list[InboxEvent]:
        """The oldest ``limit`` committed events not yet acknowledged, in arrival order."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, event_id, payload FROM event_inbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [InboxEvent(row[0], row[1], bytes(row[2])) for row in rows]

    def ack_events(self, ids: Iterable[int]) -> int:
        """Delete processed events (their ids stay remembered for deduplication)."""
        with self._write() as db:
            return _delete_by_ids(db, "event_inbox", "pending_events", ids)

    def count_pending_events(self) -> int:
        return self._counter("pending_events")

    # ---- freshness -------------------------------------------------------------------------

    def set_last_success(self, source: str, at: datetime) -> None:
        """Remember when ``source`` (poll, push) last succeeded, for the gauge after a restart."""
        with self._write() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (f"{_LAST_SUCCESS}{source}", _to_us(at)),
            )

    def last_success(self, source: str) -> datetime | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT value FROM counters WHERE name = ?", (f"{_LAST_SUCCESS}{source}",)
            ).fetchone()
        return None if row is None else _from_us(int(row[0]))

    # ---- retention -----------------------------------------------------------------------

    def prune(self, now: datetime, retention: timedelta = DEFAULT_RETENTION) -> PruneResult:
        """Forget executions created before ``now - retention`` and event ids seen before it.

        Studio no longer serves such executions, so nothing can ask about them again.
        """
        cutoff = _to_us(now - retention)
        with self._write() as db:
            marks = db.execute(
                "DELETE FROM exported_steps WHERE execution_sid IN "
                "(SELECT sid FROM executions WHERE created_us < ?)",
                (cutoff,),
            ).rowcount
            executions = db.execute(
                "DELETE FROM executions WHERE created_us < ?", (cutoff,)
            ).rowcount
            events = db.execute("DELETE FROM seen_events WHERE seen_us < ?", (cutoff,)).rowcount
        return PruneResult(executions=executions, step_marks=marks, seen_events=events)

    # ---- helpers -------------------------------------------------------------------------

    def _counter(self, name: str) -> int:
        with self._connection() as db:
            return _read_counter(db, name)


# ---- opening: refuse what is not ours, create what is new -----------------------------------


def _inspect(path: Path) -> bool:
    """True if ``path`` is a usable state file, False if there is nothing yet; else refuse."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    if size == 0:
        return False
    with path.open("rb") as handle:
        header = handle.read(100)
    if not header.startswith(_SQLITE_MAGIC):
        raise StateError(
            f"{path}: not a SQLite database (starts with {header[:16]!r}, {size} bytes); "
            "refusing to use or overwrite it: move it away or choose another --state-dir"
        )
    # Read through SQLite, not the raw header: in WAL mode the newest header may sit in the WAL.
    # Read-only, so that inspecting someone else's file cannot change it.
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            application_id = probe.execute("PRAGMA application_id").fetchone()[0]
            version = probe.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                row[0]
                for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            probe.close()
    except sqlite3.DatabaseError as error:
        raise StateError(
            f"{path}: unreadable SQLite database ({error}); refusing to use it"
        ) from error
    tables.discard("sqlite_sequence")
    if application_id == 0 and version == 0 and not tables:
        return False  # an empty SQLite file: ours to initialise
    if application_id != APPLICATION_ID:
        found = ", ".join(sorted(tables)) or "none"
        raise StateError(
            f"{path}: a SQLite database of another application (application_id "
            f"{application_id:#x}, expected {APPLICATION_ID:#x}; tables: {found}); "
            "refusing to use or overwrite it: choose another --state-dir"
        )
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path}: state schema version {version} is newer than this exporter's "
            f"({SCHEMA_VERSION}); refusing to use it: run a newer exporter"
        )
    if version != SCHEMA_VERSION and version not in _MIGRATES_FROM:
        raise StateError(
            f"{path}: state schema version {version}, expected {SCHEMA_VERSION}, "
            "and no migration exists from it; refusing to use it"
        )
    # Tables a migration adds are not missing from a file the migration has not run on yet.
    added = {"account"} if version in _MIGRATES_FROM else set()
    missing = _TABLES - added - tables
    if missing:
        raise StateError(
            f"{path}: damaged state database (missing tables: {', '.join(sorted(missing))}); "
            "refusing to use it"
        )
    return True


def _lock(path: Path) -> IO[bytes]:
    # Two exporters on one state file would both export everything; the kernel drops a flock
    # when its holder dies, so a killed exporter never leaves a stale lock behind.
    lock_file = os.fdopen(_private_file(path.with_name(path.name + ".lock")), "a+b")
    try:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise StateError(f"{path}: in use by another exporter process") from None
    except BaseException:
        lock_file.close()
        raise
    return lock_file


def _private_file(path: Path) -> int:
    """Open (creating it if needed) ``path`` readable by its owner only, from the first byte."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(descriptor, 0o600)  # a file left by an older version may be 0644
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _connect(path: Path) -> sqlite3.Connection:
    # Checked again under the lock: another process may have created the file meanwhile.
    exists = _inspect(path)
    # The state names the account and its flows: not for other users. SQLite creates the -wal
    # and -shm files with the database file's mode, so creating that one 0600 (an empty file is
    # a new database to SQLite) keeps all three private from the start, with no umask race.
    os.close(_private_file(path))
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(path.name + suffix), 0o600)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StateError(f"{path}: cannot switch to WAL journal mode (got {mode})")
        db.execute("PRAGMA synchronous = FULL")
        # Without a limit the WAL keeps the size of the largest batch ever written.
        db.execute("PRAGMA journal_size_limit = 67108864")
        db.execute("PRAGMA foreign_keys = ON")
        if not exists:
            db.execute("BEGIN IMMEDIATE")
            for statement in _statements(_SCHEMA):
                db.execute(statement)
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        else:
            _migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _claim(db: sqlite3.Connection, path: Path, account_sid: str) -> None:
    """Record the file's account, or refuse a file that belongs to another one."""
    row = db.execute("SELECT sid FROM account WHERE id = 1").fetchone()
    if row is None:
        db.execute("INSERT INTO account (id, sid) VALUES (1, ?)", (account_sid,))
        return
    if row[0] != account_sid:
        db.close()
        raise StateError(
            f"{path}: the state of account {row[0]}, not of {account_sid}; refusing to use it: "
            "choose another --state-dir"
        )


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older file to SCHEMA_VERSION, one version a transaction, in place."""
    while True:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(_MIGRATIONS[version]):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT first; run the schema statement by statement in our
    # transaction so a crash leaves either no schema or all of it, with the version pragmas.
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in body.split(";") if statement.strip()]
