"""Work units leased to replicas sharing one PostgreSQL database.

A work unit is (account, flow). Every replica writes a heartbeat row (``replicas``) and holds
leases on units (``leases``: owner, expiry), both with expiries computed by the database's own
clock (``clock_timestamp()``), so the replicas' clocks never matter. ``LeaseBoard.tick`` is one
transaction, serialised across replicas by a transaction-level advisory lock:

1. renew this replica's heartbeat and the leases it holds (expiry = now + duration);
2. forget replicas whose heartbeat expired, and free the leases that expired with them;
3. record the units this replica saw listed (new flows become units, deleted flows stop being
   units: the listing of an account is complete);
4. balance: with ``n`` units and ``r`` live replicas (ordered by id), the first ``n mod r``
   replicas may hold ``n div r + 1`` units and the others ``n div r``. A replica over its quota
   frees its surplus; one under it claims free units. So each converges to within one unit of
   the mean in at most two ticks of every replica after a join or a departure, and a unit only
   moves when the balance needs it.

Safety does not rest on the ticks: ``PostgresBatch.hold_unit`` checks, inside the transaction
that commits a unit's exports, that this replica still holds the unit's lease and that it has
not expired, and locks the lease row (``FOR SHARE``) until that commit. A claim by another
replica (an ``UPDATE`` of that row) waits for the commit, then sees its effects; a commit after
the lease was lost or expired rolls back. So a unit's steps are committed by one replica at a
time, and the next owner continues from the committed cursor, marks and metric snapshot.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from studio_exporter.store.postgres import (
    DEFAULT_CONNECT_TIMEOUT,
    LEASE_SCHEMA,
    connect_session,
    redact_url,
)
from studio_exporter.store.protocols import StateError

#: Serialises ticks across replicas (a transaction-level advisory lock).
_TICK_LOCK = "twilio-studio-exporter:leases"

_TABLES = (
    "CREATE SCHEMA IF NOT EXISTS studio_exporter_leases",
    """CREATE TABLE IF NOT EXISTS studio_exporter_leases.replicas (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        expires TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS studio_exporter_leases.leases (
        account_sid TEXT NOT NULL,
        flow_sid TEXT NOT NULL,
        owner TEXT,
        expires TIMESTAMPTZ,
        PRIMARY KEY (account_sid, flow_sid)
    )""",
)

Unit = tuple[str, str]
"""A work unit: (account SID, flow SID)."""


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick left: the units this replica holds and what changed."""

    owned: frozenset[Unit]
    replicas: int
    units: int
    acquired: frozenset[Unit]
    released: frozenset[Unit]


def quota(units: int, replicas: Iterable[str], replica: str) -> int:
    """How many of ``units`` units ``replica`` may hold among the live ``replicas``."""
    ordered = sorted(set(replicas) | {replica})
    base, extra = divmod(units, len(ordered))
    return base + (1 if ordered.index(replica) < extra else 0)


class LeaseBoard:
    """One replica's view of the lease tables, over its own connection (see the module doc)."""

    def __init__(
        self,
        where: str,
        connection: psycopg.Connection[Any],
        replica: str,
        name: str,
        reopen: Callable[[], psycopg.Connection[Any]] | None = None,
    ) -> None:
        self.where = where
        self.replica = replica
        self.name = name
        self._db: psycopg.Connection[Any] | None = connection
        self._lock = threading.Lock()
        #: Opens the session again after it was lost (the next tick then renews as usual).
        self._reopen = reopen

    @classmethod
    def open(
        cls,
        url: str,
        *,
        replica: str,
        name: str,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> LeaseBoard:
        where = f"PostgreSQL {redact_url(url)} schema {LEASE_SCHEMA}"

        def connect() -> psycopg.Connection[Any]:
            db = connect_session(url, where, "studio-exporter-leases", connect_timeout)
            try:
                with db.transaction():
                    db.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_TICK_LOCK,)
                    )
                    for statement in _TABLES:
                        db.execute(statement)
            except psycopg.Error as error:
                db.close()
                raise StateError(f"{where}: cannot create the lease tables: {error}") from None
            return db

        return cls(where, connect(), replica, name, reopen=connect)

    def tick(self, duration: timedelta, listed: Mapping[str, Iterable[str]]) -> TickResult:
        """Renew, expire, record ``listed`` (account -> its flows now), balance; one commit.

        An account absent from ``listed`` keeps its units as they are (its listing failed or
        is not due). Raises ``StateError`` when the database fails; nothing is then changed.
        """
        seconds = duration.total_seconds()
        try:
            with self._connection() as db, db.transaction():
                return self._tick(db, seconds, listed)
        except psycopg.Error as error:
            raise StateError(f"{self.where}: lease tick failed: {error}") from None

    def _tick(
        self, db: psycopg.Connection[Any], seconds: float, listed: Mapping[str, Iterable[str]]
    ) -> TickResult:
        me = self.replica
        db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_TICK_LOCK,))
        db.execute(
            "INSERT INTO studio_exporter_leases.replicas (id, name, expires) "
            "VALUES (%s, %s, clock_timestamp() + make_interval(secs => %s)) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name, expires = excluded.expires",
            (me, self.name, seconds),
        )
        db.execute("DELETE FROM studio_exporter_leases.replicas WHERE expires < clock_timestamp()")
        db.execute(
            "UPDATE studio_exporter_leases.leases SET owner = NULL, expires = NULL "
            "WHERE owner IS NOT NULL AND (expires < clock_timestamp() "
            "OR owner NOT IN (SELECT id FROM studio_exporter_leases.replicas))"
        )
        for account_sid, flows in listed.items():
            sids = sorted(set(flows))
            db.execute(
                "DELETE FROM studio_exporter_leases.leases WHERE account_sid = %s "
                "AND NOT flow_sid = ANY(%s::text[])",
                (account_sid, sids),
            )
            db.execute(
                "INSERT INTO studio_exporter_leases.leases (account_sid, flow_sid) "
                "SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (account_sid, sids),
            )
        replicas = [row[0] for row in db.execute("SELECT id FROM studio_exporter_leases.replicas")]
        rows = db.execute(
            "SELECT account_sid, flow_sid, owner FROM studio_exporter_leases.leases "
            "ORDER BY account_sid, flow_sid"
        ).fetchall()
        held_before: set[Unit] = {(a, f) for a, f, owner in rows if owner == me}
        free = [(a, f) for a, f, owner in rows if owner is None]
        allowed = quota(len(rows), replicas, me)
        released: list[Unit] = []
        acquired: list[Unit] = []
        if len(held_before) > allowed:
            # Free the last ones in order: a unit moves only when the balance needs it.
            released = sorted(held_before)[allowed:]
        elif len(held_before) < allowed:
            acquired = _spread(free, allowed - len(held_before))
        if released:
            db.execute(
                "UPDATE studio_exporter_leases.leases SET owner = NULL, expires = NULL "
                "WHERE owner = %s AND (account_sid, flow_sid) IN "
                "(SELECT * FROM unnest(%s::text[], %s::text[]))",
                (me, [a for a, _ in released], [f for _, f in released]),
            )
        if acquired:
            db.execute(
                "UPDATE studio_exporter_leases.leases SET owner = %s WHERE owner IS NULL AND "
                "(account_sid, flow_sid) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                (me, [a for a, _ in acquired], [f for _, f in acquired]),
            )
        db.execute(
            "UPDATE studio_exporter_leases.leases "
            "SET expires = clock_timestamp() + make_interval(secs => %s) WHERE owner = %s",
            (seconds, me),
        )
        owned = frozenset((held_before - set(released)) | set(acquired))
        return TickResult(
            owned=owned,
            replicas=len(set(replicas) | {me}),
            units=len(rows),
            acquired=frozenset(acquired),
            released=frozenset(released),
        )

    def leave(self) -> None:
        """Free every lease of this replica and its heartbeat: others take over at their tick."""
        try:
            with self._connection() as db, db.transaction():
                db.execute(
                    "UPDATE studio_exporter_leases.leases SET owner = NULL, expires = NULL "
                    "WHERE owner = %s",
                    (self.replica,),
                )
                db.execute(
                    "DELETE FROM studio_exporter_leases.replicas WHERE id = %s", (self.replica,)
                )
        except psycopg.Error as error:
            raise StateError(f"{self.where}: leaving failed: {error}") from None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextlib.contextmanager
    def _connection(self) -> Any:
        with self._lock:
            if self._db is None:
                raise StateError(f"{self.where}: the lease board is closed")
            if self._db.closed and self._reopen is not None:
                self._db = self._reopen()
            yield self._db


def _spread(free: list[Unit], wanted: int) -> list[Unit]:
    """``wanted`` of the ``free`` units, taking accounts in turn so one replica does not end
    up with all of a busy account's flows."""
    by_account: dict[str, list[Unit]] = {}
    for unit in free:
        by_account.setdefault(unit[0], []).append(unit)
    chosen: list[Unit] = []
    queues = list(by_account.values())
    while len(chosen) < wanted and queues:
        for queue in list(queues):
            if len(chosen) == wanted:
                break
            chosen.append(queue.pop(0))
            if not queue:
                queues.remove(queue)
    return chosen
