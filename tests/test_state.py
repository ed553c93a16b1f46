"""What only the SQLite store has: its file (refused when foreign, private, migrated, locked).

What every store does (batches, outbox, inbox, retention, threads) is in
tests/test_store_contract.py, run on this store and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from studio_exporter.core.domain import Execution
from studio_exporter.store.protocols import StateError
from studio_exporter.store.sqlite import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    STATE_FILENAME,
    Store,
    state_file,
    subaccount_state_file,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "AC" + "a" * 32
FLOW = "FW" + "f" * 32
_serial = count(1)


def sid(prefix: str) -> str:
    return f"{prefix}{next(_serial):032x}"


def execution(
    *,
    flow_sid: str = FLOW,
    status: str = "active",
    created: datetime = T0,
    execution_sid: str | None = None,
) -> Execution:
    return Execution(
        sid=execution_sid or sid("FN"),
        flow_sid=flow_sid,
        account_sid=ACCOUNT,
        status=status,
        date_created=created,
        date_updated=created + timedelta(seconds=5),
        contact_channel_address="+15550001111",
        flow_version=3,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return state_file(tmp_path)


# ---- opening: new, ours, foreign ----------------------------------------------------------


def test_state_file_is_named_inside_the_state_dir(tmp_path: Path) -> None:
    assert state_file(tmp_path) == tmp_path / STATE_FILENAME


@pytest.mark.parametrize(
    "preexisting", [pytest.param(False, id="missing"), pytest.param(True, id="empty-file")]
)
def test_open_creates_the_schema_and_marks_the_file_as_ours(path: Path, preexisting: bool) -> None:
    if preexisting:
        path.write_bytes(b"")
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    "umask", [pytest.param(0o022, id="umask-022"), pytest.param(0o000, id="umask-000")]
)
def test_every_file_of_the_state_is_private_from_creation(path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        with Store.open(path) as opened, opened.batch() as b:
            b.upsert_execution(execution())
            names = sorted(p.name for p in path.parent.iterdir())
            modes = {p.name: p.stat().st_mode & 0o777 for p in path.parent.iterdir()}
    finally:
        os.umask(previous)
    assert names == sorted(f"{path.name}{suffix}" for suffix in ("", "-shm", "-wal", ".lock"))
    assert set(modes.values()) == {0o600}, modes


def test_files_left_readable_by_an_older_version_are_made_private(path: Path) -> None:
    Store.open(path).close()
    lock = path.with_name(path.name + ".lock")
    for file in (path, lock):
        file.chmod(0o644)
    with Store.open(path):
        assert {file.stat().st_mode & 0o777 for file in path.parent.iterdir()} == {0o600}


def _single_account_file(path: Path) -> str:
    """A state file as the single-account exporter wrote it (schema 1: no account table)."""
    followed = execution()
    with Store.open(path) as store, store.batch() as b:
        b.upsert_execution(followed)
        b.save_metric_snapshot(b"{}")
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE account")
        db.execute("DROP TABLE unit_metric_snapshots")
        db.execute("PRAGMA user_version = 1")
    db.close()
    return followed.sid


def test_a_single_account_file_is_migrated_and_claimed(path: Path) -> None:
    followed = _single_account_file(path)
    with Store.open(path, account_sid=ACCOUNT) as store:
        assert store.account_sid() == ACCOUNT
        assert store.is_known(followed)  # nothing lost
        assert store.metric_snapshot() == b"{}"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
    with Store.open(path) as unnamed:  # an opener that names no account takes the file as is
        assert unnamed.account_sid() == ACCOUNT


def test_a_schema_2_file_gains_unit_snapshots(path: Path) -> None:
    with Store.open(path, account_sid=ACCOUNT) as store, store.batch() as b:
        b.save_metric_snapshot(b"{}")
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE unit_metric_snapshots")
        db.execute("PRAGMA user_version = 2")
    db.close()
    with Store.open(path, account_sid=ACCOUNT) as store:
        assert store.metric_snapshot() == b"{}"
        assert store.unit_metric_snapshot("FW" + "1" * 32) is None
        with store.batch() as b:
            b.save_unit_snapshot("FW" + "1" * 32, b"unit")
        assert store.unit_metric_snapshot("FW" + "1" * 32) == b"unit"


def test_subaccounts_get_their_own_files(tmp_path: Path) -> None:
    sub = "AC" + "e" * 32
    assert subaccount_state_file(tmp_path, sub) == tmp_path / "accounts" / f"{sub}.sqlite3"
    with Store.open(subaccount_state_file(tmp_path, sub), account_sid=sub) as store:
        assert store.account_sid() == sub


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        db.execute("INSERT INTO invoices (total) VALUES (12.5)")
        db.execute("PRAGMA application_id = 1234")
    db.close()


def _foreign_sqlite_without_application_id(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()


def _newer_schema(path: Path) -> None:
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


def _missing_table(path: Path) -> None:
    Store.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE span_outbox")
    db.close()


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _truncated_sqlite(path: Path) -> None:
    Store.open(path).close()
    path.write_bytes(path.read_bytes()[:150])


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(_random_bytes, "not a SQLite database", id="random-bytes"),
        pytest.param(
            _foreign_sqlite, "another application (application_id 0x4d2", id="foreign-app"
        ),
        pytest.param(
            _foreign_sqlite_without_application_id, "tables: notes", id="foreign-no-app-id"
        ),
        pytest.param(
            _newer_schema, f"schema version {SCHEMA_VERSION + 1} is newer", id="newer-schema"
        ),
        pytest.param(_missing_table, "missing tables: span_outbox", id="damaged"),
        pytest.param(_truncated_sqlite, "unreadable SQLite database", id="truncated"),
    ],
)
def test_a_file_that_is_not_ours_is_refused_and_left_unchanged(
    path: Path, make: object, expected: str
) -> None:
    assert callable(make)
    make(path)
    before = path.read_bytes()
    lock = path.with_name(path.name + ".lock")
    lock_existed = lock.exists()
    with pytest.raises(StateError) as raised:
        Store.open(path)
    message = str(raised.value)
    assert str(path) in message
    assert expected in message
    assert path.read_bytes() == before
    assert lock.exists() is lock_existed  # nothing, not even a lock file, left next to it


# ---- processes ----------------------------------------------------------------------------


_CHILD = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from studio_exporter.core.domain import Execution
from studio_exporter.store.sqlite import Store

store = Store.open(Path(sys.argv[1]))
commit = sys.argv[2] == "commit"
followed = Execution(sid="FN" + "c" * 32, flow_sid="FW" + "f" * 32, account_sid="AC" + "a" * 32,
                     status="active", date_created=datetime(2024, 5, 1, tzinfo=UTC))
store.enqueue_events([("EV-acked", b"payload")])
with store.batch() as b:
    b.upsert_execution(followed)
    b.mark_steps_exported(followed.sid, ["FT1", "FT2"])
    b.enqueue_spans([b"span"])
    b.save_metric_snapshot(b"snapshot")
    if not commit:
        print("inside", flush=True)
        time.sleep(60)
print("committed", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(
    ("when", "expect_batch"),
    [
        pytest.param("commit", True, id="killed-after-commit"),
        pytest.param("inside", False, id="killed-inside-batch"),
    ],
)
def test_sigkill_keeps_exactly_what_was_committed(
    path: Path, when: str, expect_batch: bool
) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root / "exporter"), str(root / "generated")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), when],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == ("committed" if expect_batch else "inside")
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()

    with Store.open(path) as store:  # the dead child's lock is gone with it
        assert [e.event_id for e in store.next_events(10)] == ["EV-acked"]
        execution_sid = "FN" + "c" * 32
        assert store.is_known(execution_sid) is expect_batch
        exported = store.exported_steps(execution_sid, ["FT1", "FT2"])
        assert exported == ({"FT1", "FT2"} if expect_batch else set())
        assert store.count_pending_spans() == (1 if expect_batch else 0)
        assert store.metric_snapshot() == (b"snapshot" if expect_batch else None)
