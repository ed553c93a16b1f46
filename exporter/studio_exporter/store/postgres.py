"""The exporter's state in PostgreSQL: the same store as the SQLite file, in one schema.

Same guarantees as ``studio_exporter.store.sqlite`` (read its docstring first), kept with
PostgreSQL's own means rather than SQLite's:

- a batch is one transaction (READ COMMITTED) on one connection behind one re-entrant lock;
  where SQLite takes the whole database with ``BEGIN IMMEDIATE``, the writes that read before
  they write (the outbox and inbox bounds, event deduplication) first lock the row of the
  counter they maintain (``UPDATE ... RETURNING`` or ``SELECT ... FOR UPDATE``), so concurrent
  writers queue on that row and see each other's commits; every other write is a single
  ``INSERT ... ON CONFLICT`` that is atomic by itself;
- lists of sids travel as one array parameter (``= ANY(%s)``, ``unnest``): a page of 1,000
  sids is one statement;
- span and event ids come from identity columns, whose sequences never hand out an id twice;
- a session advisory lock stands for SQLite's ``flock``: a second exporter on the same schema
  is refused while the first is connected, and the lock goes with a dead exporter's session;
- the schema records what it is (``store_schema``: application and version) and its account
  (``account``); a schema that is someone else's, damaged or newer is refused, never altered.

The state of one account lives in one schema (``--state.postgres-url`` names the database; the
schema is per account), like one file per account with SQLite: an account's tables and its
claim are created, dropped and locked together, and no query can mix two accounts' rows.

The URL carries a password: it is never logged, and errors name the server with
``redact_url``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from studio_exporter.core.domain import Execution
from studio_exporter.store.protocols import (
    DEFAULT_MAX_PENDING_EVENTS,
    DEFAULT_MAX_PENDING_SPANS,
    DEFAULT_RETENTION,
    InboxEvent,
    InboxFull,
    LeaseLost,
    OutboxSpan,
    PruneResult,
    StateError,
    StoredFlow,
)

log = logging.getLogger(__name__)

#: Recorded in ``store_schema``: marks a schema as this exporter's.
APPLICATION = "twilio-studio-exporter"
#: The PostgreSQL schema's own version (independent of the SQLite file's); bump it with a
#: migration (``_MIGRATIONS``). 2: ``unit_metric_snapshots``.
SCHEMA_VERSION = 2
#: The schema of the account given by ``TWILIO_ACCOUNT_SID`` when none is named.
DEFAULT_SCHEMA = "studio_exporter"
#: Every account's schema starts so: ``studio_exporter_ac…`` (``account_schema``).
SCHEMA_PREFIX = "studio_exporter_"
#: The schema shared by every replica and account: replicas and the units they lease
#: (``store.leases``).
LEASE_SCHEMA = "studio_exporter_leases"
#: Seconds to wait for the server to answer a connection.
DEFAULT_CONNECT_TIMEOUT = 10

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PASSWORD_PARAMETER = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)
_REDACTED = "***"

# One metric snapshot per flow, where replicas lease flows (see store.leases).
_UNIT_SNAPSHOTS = (
    """CREATE TABLE unit_metric_snapshots (
        flow_sid TEXT PRIMARY KEY,
        data BYTEA NOT NULL
    )""",
)
_TABLES = (
    """CREATE TABLE store_schema (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        application TEXT NOT NULL,
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE account (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        sid TEXT NOT NULL
    )""",
    """CREATE TABLE flows (
        sid TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        definition TEXT NOT NULL
    )""",
    """CREATE TABLE cursors (
        flow_sid TEXT PRIMARY KEY,
        newest_created TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE executions (
        sid TEXT PRIMARY KEY,
        flow_sid TEXT NOT NULL,
        account_sid TEXT NOT NULL,
        status TEXT NOT NULL,
        created TIMESTAMPTZ NOT NULL,
        updated TIMESTAMPTZ,
        flow_version INTEGER,
        done BOOLEAN NOT NULL DEFAULT false
    )""",
    # The poller asks for the followed executions of a flow every cycle; done ones are the bulk.
    "CREATE INDEX executions_followed ON executions (flow_sid) WHERE NOT done",
    "CREATE INDEX executions_created ON executions (created)",
    # Deferred: a mark may be written before its execution in the same batch; a mark without
    # its execution fails the commit.
    """CREATE TABLE exported_steps (
        execution_sid TEXT NOT NULL
            REFERENCES executions (sid) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        step_sid TEXT NOT NULL,
        PRIMARY KEY (execution_sid, step_sid)
    )""",
    """CREATE TABLE metric_snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        data BYTEA NOT NULL
    )""",
    """CREATE TABLE span_outbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        payload BYTEA NOT NULL
    )""",
    """CREATE TABLE event_inbox (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id TEXT NOT NULL,
        payload BYTEA NOT NULL
    )""",
    # Remembered past processing: Twilio redelivers for hours.
    """CREATE TABLE seen_events (
        event_id TEXT PRIMARY KEY,
        seen TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX seen_events_seen ON seen_events (seen)",
    # Row counts kept in the same transactions as the rows (count(*) would scan), and the rows
    # the bounded writers lock.
    """CREATE TABLE counters (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
    "INSERT INTO counters (name, value) VALUES ('pending_spans', 0), ('pending_events', 0)",
    """CREATE TABLE last_success (
        source TEXT PRIMARY KEY,
        at TIMESTAMPTZ NOT NULL
    )""",
    *_UNIT_SNAPSHOTS,
)
#: From each older version, the statements that bring a schema one version up.
_MIGRATIONS: dict[int, tuple[str, ...]] = {1: _UNIT_SNAPSHOTS}
_TABLE_NAMES = frozenset(
    {
        "store_schema",
        "account",
        "flows",
        "cursors",
        "executions",
        "exported_steps",
        "metric_snapshot",
        "span_outbox",
        "event_inbox",
        "seen_events",
        "counters",
        "last_success",
        "unit_metric_snapshots",
    }
)


def account_schema(account_sid: str) -> str:
    """The schema holding an account's state: named after the account, whichever is the main."""
    return SCHEMA_PREFIX + account_sid.lower()


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (URL or ``key=value`` form)."""
    redacted = _PASSWORD_PARAMETER.sub(lambda found: found.group(1) + _REDACTED, url)
    if "://" not in redacted:
        return redacted
    try:
        parts = urlsplit(redacted)
        password = parts.password
    except ValueError:  # unparsable (a bad port): say nothing of what follows the scheme
        return redacted.split("://", 1)[0] + "://" + _REDACTED
    if password is None:
        return redacted
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{name}:{_REDACTED}@{host}"))


def url_secrets(url: str) -> list[str]:
    """The passwords in ``url``, for the log filter that masks secrets."""
    found = [match.group(2).strip("'") for match in _PASSWORD_PARAMETER.finditer(url)]
    with contextlib.suppress(ValueError):
        password = urlsplit(url).password
        if password:
            found.append(password)
    return [secret for secret in found if secret]


def scrub(message: str, url: str) -> str:
    # libpq echoes pieces of a malformed connection string in its errors.
    for secret in url_secrets(url):
        message = message.replace(secret, _REDACTED)
    return message


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the state store takes aware UTC times")
    return moment


def _from_db(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _as_bytes(payload: bytes | str) -> bytes:
    return payload.encode() if isinstance(payload, str) else payload


def _bump_counter(db: psycopg.Connection[Any], name: str, delta: int) -> int:
    row = db.execute(
        "UPDATE counters SET value = value + %s WHERE name = %s RETURNING value", (delta, name)
    ).fetchone()
    assert row is not None  # the counters' rows are created with the schema
    return int(row[0])


def _delete_by_ids(
    db: psycopg.Connection[Any], table: str, counter: str, ids: Iterable[int]
) -> int:
    # Lock the counter first, so concurrent deleters of the same ids count each row once.
    _bump_counter(db, counter, 0)
    deleted = db.execute(
        sql.SQL("DELETE FROM {} WHERE id = ANY(%s::bigint[])").format(sql.Identifier(table)),
        (list(ids),),
    ).rowcount
    if deleted:
        _bump_counter(db, counter, -deleted)
    return deleted


def _enqueue_events(
    db: psycopg.Connection[Any],
    events: Sequence[tuple[str, bytes | str]],
    received_at: datetime | None,
    max_pending_events: int,
) -> int:
    """Insert webhook events not seen before; ``InboxFull`` (nothing written) past the bound."""
    seen = _utc(received_at or datetime.now(UTC))
    fresh: dict[str, bytes] = {}
    for event_id, payload in events:
        fresh.setdefault(event_id, _as_bytes(payload))
    if not fresh:
        return 0
    # Locked first: a concurrent delivery of the same ids waits here, then sees them.
    row = db.execute(
        "SELECT value FROM counters WHERE name = 'pending_events' FOR UPDATE"
    ).fetchone()
    assert row is not None  # created with the schema
    pending = int(row[0])
    already = db.execute(
        "SELECT event_id FROM seen_events WHERE event_id = ANY(%s::text[])", (list(fresh),)
    )
    for (event_id,) in already.fetchall():
        del fresh[event_id]
    if not fresh:
        return 0
    if pending + len(fresh) > max_pending_events:
        raise InboxFull(
            f"event inbox full: {pending} pending + {len(fresh)} new > {max_pending_events}"
        )
    db.execute(
        "INSERT INTO seen_events (event_id, seen) SELECT unnest(%s::text[]), %s",
        (list(fresh), seen),
    )
    db.execute(
        "INSERT INTO event_inbox (event_id, payload) SELECT event_id, payload FROM "
        "unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS t (event_id, payload, n) "
        "ORDER BY n",
        (list(fresh), list(fresh.values())),
    )
    _bump_counter(db, "pending_events", len(fresh))
    return len(fresh)


class PostgresBatch:
    """One transaction of ``PostgresStore.batch()``; the same operations as ``sqlite.Batch``."""

    def __init__(
        self,
        connection: psycopg.Connection[Any],
        max_pending_spans: int,
        *,
        lease_owner: str | None = None,
        account_sid: str = "",
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
    ) -> None:
        self._db = connection
        self._max_pending_spans = max_pending_spans
        self._max_pending_events = max_pending_events
        self._lease_owner = lease_owner
        self._account_sid = account_sid
        self._done: set[str] = set()
        self.spans_dropped = 0

    def upsert_flow(self, sid: str, name: str, revision: int, definition: str) -> None:
        self._db.execute(
            "INSERT INTO flows (sid, name, revision, definition) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (sid) DO UPDATE SET name = excluded.name, "
            "revision = excluded.revision, definition = excluded.definition",
            (sid, name, revision, definition),
        )

    def upsert_execution(self, execution: Execution, *, done: bool = False) -> None:
        self.upsert_executions((execution,), done=done)

    def upsert_executions(self, executions: Iterable[Execution], *, done: bool = False) -> None:
        rows = [
            (
                e.sid,
                e.flow_sid,
                e.account_sid,
                e.status,
                _utc(e.date_created),
                None if e.date_updated is None else _utc(e.date_updated),
                e.flow_version,
                done,
            )
            for e in executions
        ]
        if not rows:
            return
        # executemany, not unnest: a page naming one execution twice must apply both in order,
        # which one INSERT ... ON CONFLICT DO UPDATE refuses to do.
        with self._db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO executions (sid, flow_sid, account_sid, status, created, updated,"
                " flow_version, done) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (sid) DO UPDATE SET "
                "status = CASE WHEN executions.status = 'ended' THEN 'ended'"
                " ELSE excluded.status END,"
                " updated = coalesce(excluded.updated, executions.updated),"
                " flow_version = coalesce(excluded.flow_version, executions.flow_version),"
                " done = executions.done OR excluded.done",
                rows,
            )
        if done:
            self._done.update(row[0] for row in rows)

    def forget_executions(self, execution_sids: Iterable[str]) -> int:
        sids = list(execution_sids)
        self._db.execute(
            "DELETE FROM exported_steps WHERE execution_sid = ANY(%s::text[])", (sids,)
        )
        return self._db.execute(
            "DELETE FROM executions WHERE sid = ANY(%s::text[])", (sids,)
        ).rowcount

    def mark_steps_exported(self, execution_sid: str, step_sids: Iterable[str]) -> None:
        self._db.execute(
            "INSERT INTO exported_steps (execution_sid, step_sid) "
            "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (execution_sid, list(step_sids)),
        )

    def set_cursor(self, flow_sid: str, newest_created: datetime) -> None:
        self._db.execute(
            "INSERT INTO cursors (flow_sid, newest_created) VALUES (%s, %s) "
            "ON CONFLICT (flow_sid) DO UPDATE SET "
            "newest_created = greatest(cursors.newest_created, excluded.newest_created)",
            (flow_sid, _utc(newest_created)),
        )

    def save_metric_snapshot(self, blob: bytes) -> None:
        self._db.execute(
            "INSERT INTO metric_snapshot (id, data) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
            (blob,),
        )

    def enqueue_events(
        self, events: Sequence[tuple[str, bytes | str]], *, received_at: datetime | None = None
    ) -> int:
        """``PostgresStore.enqueue_events`` as part of this batch (one delivery, one commit)."""
        return _enqueue_events(self._db, events, received_at, self._max_pending_events)

    def save_unit_snapshot(self, flow_sid: str, blob: bytes) -> None:
        self._db.execute(
            "INSERT INTO unit_metric_snapshots (flow_sid, data) VALUES (%s, %s) "
            "ON CONFLICT (flow_sid) DO UPDATE SET data = excluded.data",
            (flow_sid, blob),
        )

    def hold_unit(self, flow_sid: str) -> None:
        """Fail this batch unless this replica holds the flow's lease (``store.leases``).

        Without leases (one exporter per schema, under the advisory lock) every unit is held.
        """
        if self._lease_owner is None:
            return
        # FOR SHARE: the lease row stays locked until this commit, so another replica's claim
        # (an UPDATE of the row) waits for it and then sees its effects.
        row = self._db.execute(
            "SELECT owner = %s AND expires > clock_timestamp() FROM studio_exporter_leases.leases "
            "WHERE account_sid = %s AND flow_sid = %s FOR SHARE",
            (self._lease_owner, self._account_sid, flow_sid),
        ).fetchone()
        if row is None or not row[0]:
            raise LeaseLost(
                f"flow {flow_sid} of account {self._account_sid} is no longer leased to this "
                "replica"
            )

    def enqueue_spans(self, payloads: Iterable[bytes | str]) -> int:
        rows = [_as_bytes(p) for p in payloads]
        if not rows:
            return 0
        # The counter row first: concurrent enqueuers then agree on what is pending.
        pending = _bump_counter(self._db, "pending_spans", len(rows))
        self._db.execute(
            "INSERT INTO span_outbox (payload) "
            "SELECT payload FROM unnest(%s::bytea[]) WITH ORDINALITY AS t (payload, n) ORDER BY n",
            (rows,),
        )
        excess = pending - self._max_pending_spans
        dropped = 0
        if excess > 0:
            dropped = self._db.execute(
                "DELETE FROM span_outbox WHERE id IN "
                "(SELECT id FROM span_outbox ORDER BY id LIMIT %s)",
                (excess,),
            ).rowcount
            _bump_counter(self._db, "pending_spans", -dropped)
        self.spans_dropped += dropped
        return dropped

    def ack_events(self, ids: Iterable[int]) -> int:
        return _delete_by_ids(self._db, "event_inbox", "pending_events", ids)

    def _finish(self) -> None:
        # Dropped here rather than in upsert so the order of calls inside a batch is free.
        if self._done:
            self._db.execute(
                "DELETE FROM exported_steps WHERE execution_sid = ANY(%s::text[])",
                (sorted(self._done),),
            )


class PostgresStore:
    """The state of one account in one PostgreSQL schema: ``PostgresStore.open(url)``."""

    def __init__(
        self,
        where: str,
        connection: psycopg.Connection[Any],
        *,
        max_pending_spans: int,
        max_pending_events: int,
    ) -> None:
        self.where = where
        self.max_pending_spans = max_pending_spans
        self.max_pending_events = max_pending_events
        self._db: psycopg.Connection[Any] | None = connection
        self._lock = threading.RLock()
        self._batch_owner: int | None = None
        #: This replica's id where replicas lease units (``open(lease_owner=...)``).
        self.lease_owner: str | None = None
        #: The account of this schema (what ``hold_unit`` looks up leases under).
        self.account = ""
        self.schema = DEFAULT_SCHEMA
        self._ships_outbox = False
        #: Opens the session again (same URL, schema, checks and locks) after it was lost.
        self._reopen: Callable[[], psycopg.Connection[Any]] | None = None

    # ---- opening and closing -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        account_sid: str | None = None,
        max_pending_spans: int = DEFAULT_MAX_PENDING_SPANS,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        lease_owner: str | None = None,
    ) -> PostgresStore:
        """Connect to ``url`` and open (creating it if needed) ``schema``, for ``account_sid``.

        ``lease_owner``: this replica's id when replicas lease units (``store.leases``): the
        schema is then shared with the other replicas, every batch that exports a unit's steps
        holds its lease (``hold_unit``), and one replica at a time sends the outbox's spans.

        Raises ``StateError`` (naming the server without its password) when the server cannot
        be reached, the schema is not ours (another application's tables, a newer version,
        damaged), another exporter has it open, or it belongs to another account; a refused
        schema is left as it is.
        """
        if max_pending_spans < 1 or max_pending_events < 1:
            raise ValueError("max_pending_spans and max_pending_events must be at least 1")
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema {schema!r}: lower-case letters, digits and _, at most 63")
        where = f"PostgreSQL {redact_url(url)} schema {schema}"
        db = _connect(url, where, schema, account_sid, lease_owner, connect_timeout)
        store = cls(
            where, db, max_pending_spans=max_pending_spans, max_pending_events=max_pending_events
        )
        store.lease_owner = lease_owner
        store.account = account_sid or ""
        store.schema = schema
        store._reopen = lambda: _connect(
            url, where, schema, account_sid, lease_owner, connect_timeout
        )
        return store

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            self._db.close()  # ends the session, and with it the advisory lock
            self._db = None

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._db is None:
                raise StateError(f"{self.where}: the state store is closed")
            if self._db.closed and self._reopen is not None:
                # The session was lost (a restarted server, a cut connection): the statement
                # that failed raised, and what it was part of rolled back. Open it again, with
                # its checks and locks; StateError while the server cannot be reached.
                self._db = self._reopen()
                self._ships_outbox = False
                log.warning("%s: connection lost and opened again", self.where)
            yield self._db

    # ---- the unit of work ----------------------------------------------------------------

    @contextlib.contextmanager
    def batch(self) -> Iterator[PostgresBatch]:
        """A transaction: commits when the block exits, rolls back if it raises."""
        with self._connection() as db:
            if self._batch_owner is not None:
                raise StateError("batches do not nest: this thread is already inside one")
            self._batch_owner = threading.get_ident()
            try:
                with db.transaction():
                    batch = PostgresBatch(
                        db,
                        self.max_pending_spans,
                        lease_owner=self.lease_owner,
                        account_sid=self.account,
                        max_pending_events=self.max_pending_events,
                    )
                    yield batch
                    batch._finish()
            finally:
                self._batch_owner = None

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        # A write outside batch(): always its own transaction. Inside a batch, writes go through
        # the batch's own operations, so what commits together is explicit at the call site.
        with self._connection() as db:
            if self._batch_owner is not None:
                raise StateError(
                    "a store write inside a batch: use the batch's operation (it commits with "
                    "the batch) or write after the batch"
                )
            with db.transaction():
                yield db

    # ---- flows and cursors ---------------------------------------------------------------

    def flows(self) -> list[StoredFlow]:
        with self._connection() as db:
            rows = db.execute("SELECT sid, name, revision, definition FROM flows ORDER BY sid")
            return [StoredFlow(*row) for row in rows]

    def flow(self, sid: str) -> StoredFlow | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT sid, name, revision, definition FROM flows WHERE sid = %s", (sid,)
            ).fetchone()
            return None if row is None else StoredFlow(*row)

    def cursor(self, flow_sid: str) -> datetime | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT newest_created FROM cursors WHERE flow_sid = %s", (flow_sid,)
            ).fetchone()
            return None if row is None else _from_db(row[0])

    # ---- executions and steps ------------------------------------------------------------

    def active_executions(self, flow_sid: str) -> list[Execution]:
        """The flow's followed executions (not done), oldest first, without personal data."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT sid, flow_sid, account_sid, status, created, updated, flow_version"
                " FROM executions WHERE flow_sid = %s AND NOT done ORDER BY created, sid",
                (flow_sid,),
            ).fetchall()
        return [
            Execution(
                sid=sid,
                flow_sid=flow,
                account_sid=account,
                status=status,
                date_created=_from_db(created),
                date_updated=None if updated is None else _from_db(updated),
                flow_version=version,
            )
            for sid, flow, account, status, created, updated, version in rows
        ]

    def is_known(self, execution_sid: str) -> bool:
        return bool(self.known_executions((execution_sid,)))

    def known_executions(self, execution_sids: Iterable[str]) -> set[str]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT sid FROM executions WHERE sid = ANY(%s::text[])", (list(execution_sids),)
            )
            return {row[0] for row in rows}

    def is_done(self, execution_sid: str) -> bool:
        return bool(self.done_executions((execution_sid,)))

    def done_executions(self, execution_sids: Iterable[str]) -> set[str]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT sid FROM executions WHERE done AND sid = ANY(%s::text[])",
                (list(execution_sids),),
            )
            return {row[0] for row in rows}

    def exported_steps(self, execution_sid: str, step_sids: Iterable[str]) -> set[str]:
        candidates = set(step_sids)
        with self._connection() as db:
            rows = db.execute(
                "SELECT step_sid FROM exported_steps WHERE execution_sid = %(sid)s "
                "UNION ALL SELECT NULL FROM executions WHERE sid = %(sid)s AND done",
                {"sid": execution_sid},
            ).fetchall()
        exported = {row[0] for row in rows}
        if None in exported:
            return candidates
        return candidates & exported

    def account_sid(self) -> str | None:
        with self._connection() as db:
            row = db.execute("SELECT sid FROM account WHERE id = 1").fetchone()
        return None if row is None else str(row[0])

    # ---- metric snapshot and freshness ---------------------------------------------------

    def metric_snapshot(self) -> bytes | None:
        with self._connection() as db:
            row = db.execute("SELECT data FROM metric_snapshot WHERE id = 1").fetchone()
            return None if row is None else bytes(row[0])

    def unit_metric_snapshot(self, flow_sid: str) -> bytes | None:
        with self._connection() as db:
            row = db.execute(
                "SELECT data FROM unit_metric_snapshots WHERE flow_sid = %s", (flow_sid,)
            ).fetchone()
            return None if row is None else bytes(row[0])

    def set_last_success(self, source: str, at: datetime) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO last_success (source, at) VALUES (%s, %s) "
                "ON CONFLICT (source) DO UPDATE SET at = excluded.at",
                (source, _utc(at)),
            )

    def last_success(self, source: str) -> datetime | None:
        with self._connection() as db:
            row = db.execute("SELECT at FROM last_success WHERE source = %s", (source,)).fetchone()
        return None if row is None else _from_db(row[0])

    # ---- span outbox ---------------------------------------------------------------------

    def pending_spans(self, limit: int) -> list[OutboxSpan]:
        """The oldest ``limit`` spans; with leases, only for the replica that sends them.

        Replicas share the outbox; one at a time sends it (a session advisory lock, which goes
        with a dead replica's connection), so spans are not sent once per replica.
        """
        with self._connection() as db:
            if self.lease_owner is not None and not self._ships_outbox:
                row = db.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 2))",
                    (f"{APPLICATION}:{self.schema}",),
                ).fetchone()
                self._ships_outbox = bool(row and row[0])
                if not self._ships_outbox:
                    return []
            rows = db.execute(
                "SELECT id, payload FROM span_outbox ORDER BY id LIMIT %s", (limit,)
            ).fetchall()
        return [OutboxSpan(row[0], bytes(row[1])) for row in rows]

    def ack_spans(self, ids: Iterable[int]) -> int:
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
        """
        with self._write() as db:
            return _enqueue_events(db, events, received_at, self.max_pending_events)

    def next_events(self, limit: int) -> list[InboxEvent]:
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, event_id, payload FROM event_inbox ORDER BY id LIMIT %s", (limit,)
            ).fetchall()
        return [InboxEvent(row[0], row[1], bytes(row[2])) for row in rows]

    def ack_events(self, ids: Iterable[int]) -> int:
        with self._write() as db:
            return _delete_by_ids(db, "event_inbox", "pending_events", ids)

    def count_pending_events(self) -> int:
        return self._counter("pending_events")

    # ---- retention -----------------------------------------------------------------------

    def prune(self, now: datetime, retention: timedelta = DEFAULT_RETENTION) -> PruneResult:
        """Forget executions created before ``now - retention`` and event ids seen before it."""
        cutoff = _utc(now) - retention
        with self._write() as db:
            marks = db.execute(
                "DELETE FROM exported_steps WHERE execution_sid IN "
                "(SELECT sid FROM executions WHERE created < %s)",
                (cutoff,),
            ).rowcount
            executions = db.execute("DELETE FROM executions WHERE created < %s", (cutoff,)).rowcount
            events = db.execute("DELETE FROM seen_events WHERE seen < %s", (cutoff,)).rowcount
        return PruneResult(executions=executions, step_marks=marks, seen_events=events)

    def _counter(self, name: str) -> int:
        with self._connection() as db:
            row = db.execute("SELECT value FROM counters WHERE name = %s", (name,)).fetchone()
        assert row is not None  # created with the schema
        return int(row[0])


# ---- opening: refuse what is not ours, create what is new -----------------------------------


def connect_session(
    url: str, where: str, application_name: str, connect_timeout: int
) -> psycopg.Connection[Any]:
    """An autocommit session on ``url``; ``StateError`` naming ``where`` (never the password)
    when the server cannot be reached."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            connect_timeout=connect_timeout,
            application_name=application_name,
        )
    except psycopg.Error as error:
        # from None: the original error and its context may hold the connection string.
        raise StateError(f"{where}: cannot connect: {scrub(str(error), url)}") from None


def _connect(
    url: str,
    where: str,
    schema: str,
    account_sid: str | None,
    lease_owner: str | None,
    connect_timeout: int,
) -> psycopg.Connection[Any]:
    """A session on ``schema``, checked, created or migrated, claimed and locked."""
    db = connect_session(url, where, "studio-exporter", connect_timeout)
    try:
        _prepare(db, where, schema, account_sid, shared=lease_owner is not None)
    except psycopg.Error as error:
        db.close()
        raise StateError(f"{where}: cannot open: {scrub(str(error), url)}") from None
    except BaseException:
        db.close()
        raise
    return db


def _prepare(
    db: psycopg.Connection[Any],
    where: str,
    schema: str,
    account_sid: str | None,
    *,
    shared: bool = False,
) -> None:
    """Lock the schema for this session, then create it, or check it is ours and current.

    ``shared``: replicas that lease units (``store.leases``) share the schema, and exclude an
    exporter that does not lease; otherwise this session has the schema to itself.
    """
    lock = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
    locked = db.execute(
        f"SELECT {lock}(hashtextextended(%s, 0))", (f"{APPLICATION}:{schema}",)
    ).fetchone()
    if locked is None or not locked[0]:
        if shared:
            raise StateError(
                f"{where}: in use by an exporter process that does not share it "
                "(push or hybrid mode, a backfill, or a release without leases)"
            )
        raise StateError(f"{where}: in use by another exporter process")
    db.execute("SET TIME ZONE 'UTC'")
    db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    with db.transaction():
        # Replicas starting together: one creates, migrates or claims, the others then find it
        # done.
        db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"{APPLICATION}:{schema}",)
        )
        _create_or_check(db, where, schema)
        if account_sid is not None:
            _claim(db, where, account_sid)


def _create_or_check(db: psycopg.Connection[Any], where: str, schema: str) -> None:
    tables = {
        row[0]
        for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        )
    }
    if not tables:
        db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for statement in _TABLES:
            db.execute(statement)
        db.execute(
            "INSERT INTO store_schema (id, application, version) VALUES (1, %s, %s)",
            (APPLICATION, SCHEMA_VERSION),
        )
        return
    if "store_schema" not in tables:
        raise StateError(
            f"{where}: a schema of another application (tables: {', '.join(sorted(tables))}); "
            "refusing to use or change it: choose another schema"
        )
    row = db.execute("SELECT application, version FROM store_schema WHERE id = 1").fetchone()
    if row is None or row[0] != APPLICATION:
        found = "nothing" if row is None else repr(row[0])
        raise StateError(
            f"{where}: a schema of another application (store_schema says {found}); "
            "refusing to use or change it: choose another schema"
        )
    version = int(row[1])
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{where}: state schema version {version} is newer than this exporter's "
            f"({SCHEMA_VERSION}); refusing to use it: run a newer exporter"
        )
    if version != SCHEMA_VERSION and version not in _MIGRATIONS:
        raise StateError(
            f"{where}: state schema version {version}, expected {SCHEMA_VERSION}, "
            "and no migration exists from it; refusing to use it"
        )
    missing = _TABLE_NAMES - tables - _added_since(version)
    if missing:
        raise StateError(
            f"{where}: damaged state schema (missing tables: {', '.join(sorted(missing))}); "
            "refusing to use it"
        )
    while version < SCHEMA_VERSION:
        for statement in _MIGRATIONS[version]:
            db.execute(statement)
        version += 1
        db.execute("UPDATE store_schema SET version = %s WHERE id = 1", (version,))


def _added_since(version: int) -> set[str]:
    """The tables that migrations from ``version`` create (absent from an older schema)."""
    added: set[str] = set()
    for step in range(version, SCHEMA_VERSION):
        for statement in _MIGRATIONS[step]:
            match = re.match(r"CREATE TABLE (\w+)", statement)
            if match:
                added.add(match.group(1))
    return added


def _claim(db: psycopg.Connection[Any], where: str, account_sid: str) -> None:
    """Record the schema's account, or refuse a schema that belongs to another one."""
    row = db.execute("SELECT sid FROM account WHERE id = 1").fetchone()
    if row is None:
        db.execute("INSERT INTO account (id, sid) VALUES (1, %s)", (account_sid,))
        return
    if row[0] != account_sid:
        raise StateError(
            f"{where}: the state of account {row[0]}, not of {account_sid}; refusing to use it: "
            "choose another schema"
        )
