"""What only the PostgreSQL store has: schemas it refuses, URLs whose password never shows.

Everything a store does is in tests/test_store_contract.py, run on this store too.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql

from studio_exporter.core.domain import Execution
from studio_exporter.store.postgres import (
    APPLICATION,
    DEFAULT_SCHEMA,
    SCHEMA_VERSION,
    PostgresStore,
    redact_url,
)
from studio_exporter.store.protocols import StateError
from tests.postgres import PostgresServer

ACCOUNT = "AC" + "a" * 32
SUBACCOUNT = "AC" + "b" * 32
PASSWORD = "s3cret-Pass"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param(
            f"postgresql://exporter:{PASSWORD}@db.example:5432/state",
            "postgresql://exporter:***@db.example:5432/state",
            id="url",
        ),
        pytest.param(
            f"postgres://exporter:{PASSWORD}@[::1]/state?sslmode=require",
            "postgres://exporter:***@[::1]/state?sslmode=require",
            id="ipv6-and-query",
        ),
        pytest.param(
            f"postgresql://exporter@db.example/state?password={PASSWORD}&sslmode=verify-full",
            "postgresql://exporter@db.example/state?password=***&sslmode=verify-full",
            id="password-in-query",
        ),
        pytest.param(
            f"host=db.example user=exporter password='{PASSWORD} x' dbname=state",
            "host=db.example user=exporter password=*** dbname=state",
            id="keyword-quoted",
        ),
        pytest.param(
            f"host=db.example password = {PASSWORD} dbname=state",
            "host=db.example password = *** dbname=state",
            id="keyword-spaced",
        ),
        pytest.param(
            f"postgresql://exporter:{PASSWORD}@db.example:notaport/state",
            "postgresql://exporter:***@db.example:notaport/state",
            id="bad-port",
        ),
        pytest.param(
            f"postgresql://exporter:{PASSWORD}@[::1/state",
            "postgresql://***",
            id="unparsable",
        ),
        pytest.param(
            "postgresql://exporter@db.example/state",
            "postgresql://exporter@db.example/state",
            id="no-password",
        ),
    ],
)
def test_the_password_is_redacted_from_urls(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert PASSWORD not in redact_url(url)


def _refused_to_connect(url: str, caplog: pytest.LogCaptureFixture) -> StateError:
    with caplog.at_level(logging.DEBUG), pytest.raises(StateError) as raised:
        PostgresStore.open(url, connect_timeout=5)
    error = raised.value
    # from None: nothing of the driver's error, which names the connection string, rides along.
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert "cannot connect" in str(error)
    return error


def test_a_wrong_password_is_refused_without_showing_it(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Wrong-" + postgres_server.password
    url = postgres_server.url().replace(postgres_server.password, wrong)
    error = _refused_to_connect(url, caplog)
    assert "password authentication failed" in str(error)
    assert f"127.0.0.1:{postgres_server.port}" in str(error)
    assert wrong not in str(error)
    assert wrong not in caplog.text


def test_an_unreachable_server_is_refused_without_showing_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens on it
    url = f"postgresql://exporter:{PASSWORD}@127.0.0.1:{port}/state"
    error = _refused_to_connect(url, caplog)
    assert PASSWORD not in str(error)
    assert PASSWORD not in caplog.text


def test_a_malformed_url_is_refused_without_echoing_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    error = _refused_to_connect(f"host=127.0.0.1 password={PASSWORD} nonsense", caplog)
    assert PASSWORD not in str(error)


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param("Upper", id="upper-case"),
        pytest.param("a;drop", id="punctuation"),
        pytest.param("x" * 64, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
def test_schema_names_are_plain_identifiers(postgres_url: str, schema: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        PostgresStore.open(postgres_url, schema=schema)


def test_the_schema_records_what_it_is(postgres_url: str) -> None:
    PostgresStore.open(postgres_url).close()
    with psycopg.connect(postgres_url) as db:
        row = db.execute(
            sql.SQL("SELECT application, version FROM {}.store_schema").format(
                sql.Identifier(DEFAULT_SCHEMA)
            )
        ).fetchone()
    assert row == (APPLICATION, SCHEMA_VERSION)


def test_each_account_has_its_own_schema_in_one_database(postgres_url: str) -> None:
    main = PostgresStore.open(postgres_url, account_sid=ACCOUNT)
    sub = PostgresStore.open(postgres_url, schema="studio_exporter_sub", account_sid=SUBACCOUNT)
    try:
        followed = Execution(
            sid="FN" + "1" * 32,
            flow_sid="FW" + "1" * 32,
            account_sid=SUBACCOUNT,
            status="active",
            date_created=datetime(2024, 5, 1, tzinfo=UTC),
        )
        with sub.batch() as b:
            b.upsert_execution(followed)
        assert sub.is_known(followed.sid)
        assert not main.is_known(followed.sid)
        assert (main.account_sid(), sub.account_sid()) == (ACCOUNT, SUBACCOUNT)
    finally:
        main.close()
        sub.close()


def _another_applications_tables(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(f"CREATE SCHEMA {DEFAULT_SCHEMA}")
    db.execute(f"CREATE TABLE {DEFAULT_SCHEMA}.invoices (id INTEGER PRIMARY KEY, total REAL)")
    db.execute(f"INSERT INTO {DEFAULT_SCHEMA}.invoices VALUES (1, 12.5)")


def _another_applications_marker(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(f"CREATE SCHEMA {DEFAULT_SCHEMA}")
    db.execute(
        f"CREATE TABLE {DEFAULT_SCHEMA}.store_schema (id INTEGER, application TEXT, version INT)"
    )
    db.execute(f"INSERT INTO {DEFAULT_SCHEMA}.store_schema VALUES (1, 'billing', 1)")


def _newer(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(f"UPDATE {DEFAULT_SCHEMA}.store_schema SET version = version + 1")


def _older(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(f"UPDATE {DEFAULT_SCHEMA}.store_schema SET version = 0")


def _damaged(db: psycopg.Connection[tuple[object, ...]]) -> None:
    db.execute(f"DROP TABLE {DEFAULT_SCHEMA}.span_outbox")


@pytest.mark.parametrize(
    ("make", "ours_first", "expected"),
    [
        pytest.param(
            _another_applications_tables,
            False,
            "another application (tables: invoices)",
            id="foreign",
        ),
        pytest.param(
            _another_applications_marker,
            False,
            "another application (store_schema says 'billing')",
            id="foreign-marker",
        ),
        pytest.param(_newer, True, f"version {SCHEMA_VERSION + 1} is newer", id="newer"),
        pytest.param(_older, True, "no migration exists", id="older"),
        pytest.param(_damaged, True, "missing tables: span_outbox", id="damaged"),
    ],
)
def test_a_schema_that_is_not_ours_is_refused_and_left_unchanged(
    postgres_url: str,
    make: Callable[[psycopg.Connection[tuple[object, ...]]], None],
    ours_first: bool,
    expected: str,
) -> None:
    if ours_first:
        PostgresStore.open(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        make(db)
        before = _dump(db)
        with pytest.raises(StateError) as raised:
            PostgresStore.open(postgres_url)
        assert expected in str(raised.value)
        assert f"schema {DEFAULT_SCHEMA}" in str(raised.value)
        assert _dump(db) == before


def _dump(db: psycopg.Connection[tuple[object, ...]]) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s ORDER BY table_name, column_name",
        (DEFAULT_SCHEMA,),
    ).fetchall()


def test_a_dead_exporters_lock_goes_with_its_session(postgres_url: str) -> None:
    first = PostgresStore.open(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        # What the server does when the exporter's host dies: the session is terminated.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'studio-exporter'"
        )
    PostgresStore.open(postgres_url).close()
    first.close()


def test_a_version_1_schema_gains_unit_snapshots(postgres_url: str) -> None:
    with PostgresStore.open(postgres_url, account_sid=ACCOUNT) as store, store.batch() as b:
        b.save_metric_snapshot(b"{}")
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"DROP TABLE {DEFAULT_SCHEMA}.unit_metric_snapshots")
        db.execute(f"UPDATE {DEFAULT_SCHEMA}.store_schema SET version = 1")
    with PostgresStore.open(postgres_url, account_sid=ACCOUNT) as store:
        assert store.metric_snapshot() == b"{}"
        with store.batch() as b:
            b.save_unit_snapshot("FW" + "1" * 32, b"unit")
        assert store.unit_metric_snapshot("FW" + "1" * 32) == b"unit"
    with psycopg.connect(postgres_url) as db:
        row = db.execute(f"SELECT version FROM {DEFAULT_SCHEMA}.store_schema").fetchone()
    assert row == (SCHEMA_VERSION,)


def test_leasing_replicas_share_a_schema_and_exclude_one_that_does_not_lease(
    postgres_url: str,
) -> None:
    first = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-a")
    second = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-b")
    try:
        with pytest.raises(StateError, match="in use by another exporter process"):
            PostgresStore.open(postgres_url, account_sid=ACCOUNT)
    finally:
        first.close()
        second.close()
    alone = PostgresStore.open(postgres_url, account_sid=ACCOUNT)
    try:
        with pytest.raises(StateError, match="does not share it"):
            PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-c")
    finally:
        alone.close()


def test_replicas_opening_a_new_schema_together_create_it_once(postgres_url: str) -> None:
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one(name: str) -> None:
        try:
            opened.append(PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner=name))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_one, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in opened:
        store.close()
    assert errors == []
    assert len(opened) == 4


def test_one_leasing_replica_at_a_time_sends_the_outbox(postgres_url: str) -> None:
    first = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-a")
    second = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-b")
    try:
        with first.batch() as b:
            b.enqueue_spans([b"span"])
        assert [span.payload for span in first.pending_spans(10)] == [b"span"]
        assert second.pending_spans(10) == []
        first.close()  # its session ends: the other replica sends from now on
        deadline = time.monotonic() + 10
        # The server ends the closed session a moment later; the shipper asks every second.
        while not second.pending_spans(10) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [span.payload for span in second.pending_spans(10)] == [b"span"]
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    "lease_owner",
    [pytest.param(None, id="alone"), pytest.param("replica-a", id="leasing")],
)
def test_a_lost_connection_is_opened_again_and_nothing_committed_is_lost(
    postgres_url: str, lease_owner: str | None
) -> None:
    store = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner=lease_owner)
    try:
        with store.batch() as b:
            b.save_metric_snapshot(b"committed")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'studio-exporter' AND pid <> pg_backend_pid()"
            )
        with pytest.raises(psycopg.OperationalError):
            store.metric_snapshot()  # the statement in flight when the session died
        assert store.metric_snapshot() == b"committed"  # opened again, checks and locks
        with store.batch() as b:
            b.save_metric_snapshot(b"after")
        assert store.metric_snapshot() == b"after"
        if lease_owner is None:  # the schema's lock came back with the session
            with pytest.raises(StateError, match="in use"):
                PostgresStore.open(postgres_url, account_sid=ACCOUNT)
    finally:
        store.close()
