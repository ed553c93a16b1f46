"""Tests of the state store: refusing foreign files, atomic batches, durability, threads."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest

from studio_exporter.domain import Execution
from studio_exporter.state import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    STATE_FILENAME,
    Batch,
    InboxFull,
    OutboxSpan,
    PruneResult,
    StateError,
    Store,
    StoredFlow,
    state_file,
    subaccount_state_file,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "AC" + "a" * 32
FLOW = "FW" + "f" * 32
OTHER_FLOW = "FW" + "e" * 32
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


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    with Store.open(path) as opened:
        yield opened


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


def test_a_file_of_another_account_is_refused(path: Path) -> None:
    Store.open(path, account_sid=ACCOUNT).close()
    other = "AC" + "f" * 32
    with pytest.raises(StateError, match=f"the state of account {ACCOUNT}, not of {other}"):
        Store.open(path, account_sid=other)
    with Store.open(path, account_sid=ACCOUNT) as again:  # the refusal left it usable
        assert again.account_sid() == ACCOUNT


def test_subaccounts_get_their_own_files(tmp_path: Path) -> None:
    sub = "AC" + "e" * 32
    assert subaccount_state_file(tmp_path, sub) == tmp_path / "accounts" / f"{sub}.sqlite3"
    with Store.open(subaccount_state_file(tmp_path, sub), account_sid=sub) as store:
        assert store.account_sid() == sub


def test_data_survives_close_and_reopen(path: Path) -> None:
    followed = execution()
    with Store.open(path) as first, first.batch() as b:
        b.upsert_execution(followed)
        b.mark_steps_exported(followed.sid, ["FT1"])
        b.set_cursor(FLOW, T0)
    with Store.open(path) as second:
        assert second.is_known(followed.sid)
        assert second.exported_steps(followed.sid, ["FT1", "FT2"]) == {"FT1"}
        assert second.cursor(FLOW) == T0


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


def test_a_second_store_on_the_same_file_is_refused_until_the_first_closes(path: Path) -> None:
    first = Store.open(path)
    with pytest.raises(StateError, match="in use by another exporter process"):
        Store.open(path)
    first.close()
    Store.open(path).close()


def test_a_closed_store_refuses_to_work(store: Store) -> None:
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StateError, match="closed"):
        store.is_known("FN1")


# ---- flows and cursors --------------------------------------------------------------------


def test_flows_are_upserted(store: Store) -> None:
    with store.batch() as b:
        b.upsert_flow(FLOW, "Support", 1, '{"states": []}')
        b.upsert_flow(OTHER_FLOW, "Sales", 4, "{}")
    with store.batch() as b:
        b.upsert_flow(FLOW, "Support v2", 2, '{"states": [1]}')
    assert store.flow(FLOW) == StoredFlow(FLOW, "Support v2", 2, '{"states": [1]}')
    assert [flow.sid for flow in store.flows()] == sorted([FLOW, OTHER_FLOW])
    assert store.flow("FW" + "0" * 32) is None


def test_the_cursor_only_moves_forward(store: Store) -> None:
    assert store.cursor(FLOW) is None
    with store.batch() as b:
        b.set_cursor(FLOW, T0 + timedelta(seconds=10, milliseconds=250))
    with store.batch() as b:
        b.set_cursor(FLOW, T0)
    assert store.cursor(FLOW) == T0 + timedelta(seconds=10, milliseconds=250)
    assert store.cursor(OTHER_FLOW) is None


def test_naive_datetimes_are_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"), store.batch() as b:
        b.set_cursor(FLOW, datetime(2024, 1, 1))


# ---- executions and exported steps --------------------------------------------------------


def test_followed_executions_come_back_per_flow_without_personal_data(store: Store) -> None:
    late = execution(created=T0 + timedelta(minutes=1))
    early = execution(created=T0)
    elsewhere = execution(flow_sid=OTHER_FLOW)
    finished = execution(status="ended")
    with store.batch() as b:
        b.upsert_executions([late, early, elsewhere])
        b.upsert_execution(finished, done=True)
    followed = store.active_executions(FLOW)
    assert [e.sid for e in followed] == [early.sid, late.sid]
    assert followed[0].contact_channel_address is None
    assert followed[0].date_created == early.date_created
    assert followed[0].date_updated == early.date_updated
    assert (followed[0].account_sid, followed[0].flow_version) == (ACCOUNT, 3)
    assert [e.sid for e in store.active_executions(OTHER_FLOW)] == [elsewhere.sid]


def test_known_executions_answers_a_page_at_once(store: Store) -> None:
    followed, finished = execution(), execution(status="ended")
    with store.batch() as b:
        b.upsert_execution(followed)
        b.upsert_execution(finished, done=True)
    page = [followed.sid, finished.sid, *(sid("FN") for _ in range(998))]
    assert store.known_executions(page) == {followed.sid, finished.sid}
    assert store.done_executions(page) == {finished.sid}
    assert store.is_known(finished.sid)
    assert not store.is_known(page[-1])
    assert store.is_done(finished.sid)
    assert not store.is_done(followed.sid)
    assert store.known_executions([]) == set()


def test_exported_steps_are_the_subset_already_marked(store: Store) -> None:
    followed = execution()
    with store.batch() as b:
        b.upsert_execution(followed)
        b.mark_steps_exported(followed.sid, ["FT1", "FT2"])
    with store.batch() as b:
        b.mark_steps_exported(followed.sid, ["FT2", "FT3"])  # marking again is harmless
    assert store.exported_steps(followed.sid, ["FT1", "FT3", "FT4"]) == {"FT1", "FT3"}
    assert store.exported_steps("FN" + "0" * 32, ["FT1"]) == set()


def test_a_done_execution_counts_every_step_as_exported_and_drops_its_marks(
    store: Store, path: Path
) -> None:
    finished = execution(status="ended")
    with store.batch() as b:
        b.upsert_execution(finished, done=True)  # the order inside a batch does not matter
        b.mark_steps_exported(finished.sid, ["FT1", "FT2"])
    assert store.exported_steps(finished.sid, ["FT1", "FT9"]) == {"FT1", "FT9"}
    assert store.active_executions(FLOW) == []
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM exported_steps").fetchone()[0] == 0
    db.close()


def test_done_and_ended_never_go_backwards(store: Store) -> None:
    ended = execution(status="ended")
    with store.batch() as b:
        b.upsert_execution(ended, done=True)
    revived = execution(status="active", execution_sid=ended.sid)
    with store.batch() as b:
        b.upsert_execution(revived, done=False)
    assert store.is_done(ended.sid)
    stale = execution(status="ended")
    with store.batch() as b:
        b.upsert_execution(stale)
        b.upsert_execution(execution(status="active", execution_sid=stale.sid))
    assert store.active_executions(FLOW)[0].status == "ended"


def test_marks_for_an_unrecorded_execution_fail_the_whole_batch(store: Store) -> None:
    def orphan_marks(b: Batch) -> None:
        b.set_cursor(FLOW, T0)
        b.mark_steps_exported("FN" + "1" * 32, ["FT1"])

    with pytest.raises(sqlite3.IntegrityError):
        run_batch(store, orphan_marks)
    assert store.cursor(FLOW) is None


# ---- the batch: all or nothing ------------------------------------------------------------


class BoomError(Exception):
    pass


def run_batch(store: Store, work: Callable[[Batch], None], *, fail: bool = False) -> None:
    with store.batch() as b:
        work(b)
        if fail:
            raise BoomError


def test_an_exception_mid_batch_leaves_nothing(store: Store) -> None:
    with store.batch() as b:
        b.save_metric_snapshot(b"before")
    followed = execution()

    def everything(b: Batch) -> None:
        b.upsert_flow(FLOW, "Support", 1, "{}")
        b.upsert_execution(followed)
        b.mark_steps_exported(followed.sid, ["FT1"])
        b.set_cursor(FLOW, T0)
        b.enqueue_spans([b"span"])
        b.save_metric_snapshot(b"after")
        assert store.is_known(followed.sid)  # the batch's own thread reads its writes
        assert store.count_pending_spans() == 1

    with pytest.raises(BoomError):
        run_batch(store, everything, fail=True)
    assert store.flows() == []
    assert not store.is_known(followed.sid)
    assert store.cursor(FLOW) is None
    assert store.count_pending_spans() == 0
    assert store.pending_spans(10) == []
    assert store.metric_snapshot() == b"before"


def test_batches_do_not_nest(store: Store) -> None:
    with pytest.raises(StateError, match="do not nest"), store.batch(), store.batch():
        pass
    with store.batch() as b:  # the store is usable afterwards
        b.save_metric_snapshot(b"x")
    assert store.metric_snapshot() == b"x"


def test_the_metric_snapshot_is_replaced(store: Store) -> None:
    assert store.metric_snapshot() is None
    for blob in (b"one", b"two"):
        with store.batch() as b:
            b.save_metric_snapshot(blob)
    assert store.metric_snapshot() == b"two"


# ---- span outbox --------------------------------------------------------------------------


def test_spans_wait_in_the_outbox_until_acknowledged(store: Store) -> None:
    with store.batch() as b:
        assert b.enqueue_spans([b"a", "b", b"c"]) == 0
    pending = store.pending_spans(2)
    assert [span.payload for span in pending] == [b"a", b"b"]
    assert isinstance(pending[0], OutboxSpan)
    assert store.ack_spans([span.id for span in pending]) == 2
    assert store.ack_spans([span.id for span in pending]) == 0  # acknowledging twice is harmless
    assert store.count_pending_spans() == 1
    assert [span.payload for span in store.pending_spans(10)] == [b"c"]


def test_a_full_outbox_drops_the_oldest_and_says_how_many(path: Path) -> None:
    with Store.open(path, max_pending_spans=5) as store:
        with store.batch() as b:
            assert b.enqueue_spans([b"1", b"2", b"3", b"4"]) == 0
        read_before_drop = store.pending_spans(10)
        with store.batch() as b:
            assert b.enqueue_spans([b"5", b"6", b"7"]) == 2
            assert b.enqueue_spans([b"8"]) == 1
            assert b.spans_dropped == 3
        assert store.count_pending_spans() == 5
        assert [span.payload for span in store.pending_spans(10)] == [b"4", b"5", b"6", b"7", b"8"]
        # The ids read before the drop can never name a newer span.
        assert store.ack_spans([span.id for span in read_before_drop]) == 1
        assert [span.payload for span in store.pending_spans(10)] == [b"5", b"6", b"7", b"8"]


def test_span_ids_are_not_reused_after_the_outbox_empties(store: Store) -> None:
    with store.batch() as b:
        b.enqueue_spans([b"old"])
    old = store.pending_spans(1)
    store.ack_spans([span.id for span in old])
    with store.batch() as b:
        b.enqueue_spans([b"new"])
    assert store.ack_spans([span.id for span in old]) == 0
    assert store.count_pending_spans() == 1


# ---- event inbox (push mode) --------------------------------------------------------------


def test_events_are_deduplicated_on_their_id(store: Store) -> None:
    assert store.enqueue_events([("EV1", b"one"), ("EV2", "two"), ("EV1", b"again")]) == 2
    assert store.enqueue_events([("EV2", b"redelivered"), ("EV3", b"three")]) == 1
    events = store.next_events(10)
    assert [(e.event_id, e.payload) for e in events] == [
        ("EV1", b"one"),
        ("EV2", b"two"),
        ("EV3", b"three"),
    ]
    assert store.ack_events([e.id for e in events[:2]]) == 2
    assert store.count_pending_events() == 1
    assert store.enqueue_events([("EV1", b"after processing")]) == 0  # still remembered
    assert store.enqueue_events([]) == 0


def test_a_full_inbox_refuses_the_whole_delivery(path: Path) -> None:
    with Store.open(path, max_pending_events=3) as store:
        store.enqueue_events([("EV1", b"1"), ("EV2", b"2")])
        with pytest.raises(InboxFull, match="2 pending \\+ 2 new > 3"):
            store.enqueue_events([("EV3", b"3"), ("EV4", b"4")])
        assert store.count_pending_events() == 2
        assert store.enqueue_events([("EV3", b"3")]) == 1  # not remembered when refused


def test_acknowledging_events_in_a_batch_is_undone_with_it(store: Store) -> None:
    store.enqueue_events([("EV1", b"1")])
    [event] = store.next_events(1)

    def ack(b: Batch) -> None:
        assert b.ack_events([event.id]) == 1

    with pytest.raises(BoomError):
        run_batch(store, ack, fail=True)
    assert store.count_pending_events() == 1
    with store.batch() as b:
        assert b.ack_events([event.id]) == 1
    assert store.next_events(1) == []


# ---- retention ----------------------------------------------------------------------------


def test_prune_forgets_what_studio_no_longer_keeps(store: Store, path: Path) -> None:
    now = T0 + timedelta(days=40)
    old_followed = execution(created=T0)
    old_done = execution(created=T0, status="ended")
    recent = execution(created=now - timedelta(days=1))
    with store.batch() as b:
        b.upsert_executions([old_followed, recent])
        b.upsert_execution(old_done, done=True)
        b.mark_steps_exported(old_followed.sid, ["FT1", "FT2"])
        b.mark_steps_exported(recent.sid, ["FT3"])
    store.enqueue_events([("EV-old", b"")], received_at=T0)
    store.enqueue_events([("EV-new", b"")], received_at=now)

    assert store.prune(now) == PruneResult(executions=2, step_marks=2, seen_events=1)

    assert store.known_executions([old_followed.sid, old_done.sid, recent.sid]) == {recent.sid}
    assert store.exported_steps(recent.sid, ["FT3"]) == {"FT3"}
    assert store.enqueue_events([("EV-old", b""), ("EV-new", b"")], received_at=now) == 1
    assert store.prune(now, retention=timedelta(days=90)) == PruneResult(0, 0, 0)


def test_forget_executions_drops_them_and_their_marks(store: Store) -> None:
    deleted = execution(created=T0)
    kept = execution(created=T0)
    with store.batch() as b:
        b.upsert_executions([deleted, kept])
        b.mark_steps_exported(deleted.sid, ["FT1", "FT2"])
        b.mark_steps_exported(kept.sid, ["FT3"])
    with store.batch() as b:
        assert b.forget_executions([deleted.sid, "FN" + "0" * 32]) == 1

    assert store.known_executions([deleted.sid, kept.sid]) == {kept.sid}
    assert store.exported_steps(deleted.sid, ["FT1", "FT2"]) == set()
    assert store.exported_steps(kept.sid, ["FT3"]) == {"FT3"}
    assert [e.sid for e in store.active_executions(kept.flow_sid)] == [kept.sid]


# ---- threads and processes ----------------------------------------------------------------


def test_poller_sink_and_webhook_threads_share_the_store(store: Store) -> None:
    rounds, webhook_threads = 40, 4
    errors: list[BaseException] = []
    acked: list[int] = []

    def guarded(work: object) -> threading.Thread:
        assert callable(work)

        def run() -> None:
            try:
                work()
            except BaseException as error:  # collected and asserted below
                errors.append(error)

        return threading.Thread(target=run)

    def poller() -> None:
        for n in range(rounds):
            batch_executions = [execution() for _ in range(20)]
            with store.batch() as b:
                b.upsert_executions(batch_executions)
                for e in batch_executions:
                    b.mark_steps_exported(e.sid, [f"FT{n}-{i}" for i in range(5)])
                b.enqueue_spans([f"span {n}-{i}" for i in range(5)])
                b.save_metric_snapshot(str(n).encode())

    def sink() -> None:
        for _ in range(rounds * 3):
            pending = store.pending_spans(7)
            acked.append(store.ack_spans([span.id for span in pending]))

    def webhook(worker: int) -> None:
        for n in range(rounds):
            # Every worker delivers the same ids: Twilio redelivers concurrently too.
            store.enqueue_events([(f"EV{n}-{i}", f"{worker}".encode()) for i in range(3)])

    threads = [guarded(poller), guarded(sink)]
    threads += [guarded(lambda w=w: webhook(w)) for w in range(webhook_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert store.metric_snapshot() == str(rounds - 1).encode()
    assert sum(acked) + store.count_pending_spans() == rounds * 5
    assert len(store.pending_spans(10_000)) == store.count_pending_spans()
    events = store.next_events(10_000)
    assert len(events) == store.count_pending_events() == rounds * 3
    assert len({e.event_id for e in events}) == rounds * 3
    assert len(store.active_executions(FLOW)) == rounds * 20


_CHILD = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from studio_exporter.domain import Execution
from studio_exporter.state import Store

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


def test_last_success_per_source_survives_reopen(path: Path) -> None:
    with Store.open(path) as first:
        assert first.last_success("poll") is None
        first.set_last_success("poll", T0)
        first.set_last_success("poll", T0 + timedelta(seconds=30))
        first.set_last_success("push", T0)
    with Store.open(path) as second:
        assert second.last_success("poll") == T0 + timedelta(seconds=30)
        assert second.last_success("push") == T0
        assert second.count_pending_events() == 0  # the counters table's own rows untouched
