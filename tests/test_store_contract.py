"""One contract, every store: the same cases run against SQLite and a real PostgreSQL.

What only one database has (SQLite's file modes and migrations, PostgreSQL's schemas and
URLs) is tested beside its implementation: tests/test_state.py, tests/test_store_postgres.py.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest

from studio_exporter.core.domain import Execution
from studio_exporter.store.postgres import PostgresStore
from studio_exporter.store.protocols import (
    InboxEvent,
    InboxFull,
    LedgerBatch,
    OutboxSpan,
    PruneResult,
    StateError,
    StateStore,
    StoredFlow,
)
from studio_exporter.store.sqlite import Store, state_file

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "AC" + "a" * 32
OTHER_ACCOUNT = "AC" + "f" * 32
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


@dataclass(frozen=True, slots=True)
class Backend:
    """How to open one store implementation on one place (a file, a database)."""

    opener: Callable[..., StateStore]
    #: What a commit that breaks the schema's constraints raises.
    integrity_error: type[Exception]

    def open(self, **options: Any) -> StateStore:
        return self.opener(**options)


def _sqlite(path: Path) -> Backend:
    def opener(**options: Any) -> StateStore:
        return Store.open(path, **options)

    return Backend(opener, sqlite3.IntegrityError)


def _postgres(url: str) -> Backend:
    def opener(**options: Any) -> StateStore:
        return PostgresStore.open(url, **options)

    return Backend(opener, psycopg.IntegrityError)


@pytest.fixture(
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")]
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite(state_file(tmp_path))
    return _postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(backend: Backend) -> Iterator[StateStore]:
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()


def test_both_stores_satisfy_the_protocol(store: StateStore) -> None:
    # mypy checks the structure (Backend's openers return StateStore); this checks the objects.
    assert isinstance(store, (Store, PostgresStore))
    with store.batch() as b:
        assert b.spans_dropped == 0


# ---- opening, closing, claiming -----------------------------------------------------------


def test_data_survives_close_and_reopen(backend: Backend) -> None:
    followed = execution()
    with backend.open() as first, first.batch() as b:
        b.upsert_execution(followed)
        b.mark_steps_exported(followed.sid, ["FT1"])
        b.set_cursor(FLOW, T0)
        b.save_metric_snapshot(b"snapshot")
    second = backend.open()
    try:
        assert second.is_known(followed.sid)
        assert second.exported_steps(followed.sid, ["FT1", "FT2"]) == {"FT1"}
        assert second.cursor(FLOW) == T0
        assert second.metric_snapshot() == b"snapshot"
    finally:
        second.close()


def test_a_second_store_on_the_same_state_is_refused_until_the_first_closes(
    backend: Backend,
) -> None:
    first = backend.open()
    with pytest.raises(StateError, match="in use by another exporter process"):
        backend.open()
    first.close()
    backend.open().close()


def test_a_closed_store_refuses_to_work(store: StateStore) -> None:
    store.close()
    store.close()  # closing twice is harmless
    with pytest.raises(StateError, match="closed"):
        store.is_known("FN1")


def test_the_state_of_another_account_is_refused(backend: Backend) -> None:
    claimed = backend.open(account_sid=ACCOUNT)
    assert claimed.account_sid() == ACCOUNT
    claimed.close()
    with pytest.raises(StateError, match=f"the state of account {ACCOUNT}, not of {OTHER_ACCOUNT}"):
        backend.open(account_sid=OTHER_ACCOUNT)
    unnamed = backend.open()  # an opener that names no account takes the state as it is
    try:
        assert unnamed.account_sid() == ACCOUNT
    finally:
        unnamed.close()


def test_a_state_nobody_claimed_has_no_account(store: StateStore) -> None:
    assert store.account_sid() is None


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"max_pending_spans": 0}, id="spans"),
        pytest.param({"max_pending_events": 0}, id="events"),
    ],
)
def test_bounds_below_one_are_refused(backend: Backend, options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        backend.open(**options)


# ---- flows and cursors --------------------------------------------------------------------


def test_flows_are_upserted(store: StateStore) -> None:
    with store.batch() as b:
        b.upsert_flow(FLOW, "Support", 1, '{"states": []}')
        b.upsert_flow(OTHER_FLOW, "Sales", 4, "{}")
    with store.batch() as b:
        b.upsert_flow(FLOW, "Support v2", 2, '{"states": [1]}')
    assert store.flow(FLOW) == StoredFlow(FLOW, "Support v2", 2, '{"states": [1]}')
    assert [flow.sid for flow in store.flows()] == sorted([FLOW, OTHER_FLOW])
    assert store.flow("FW" + "0" * 32) is None


def test_the_cursor_only_moves_forward(store: StateStore) -> None:
    assert store.cursor(FLOW) is None
    with store.batch() as b:
        b.set_cursor(FLOW, T0 + timedelta(seconds=10, microseconds=250))
    with store.batch() as b:
        b.set_cursor(FLOW, T0)
    assert store.cursor(FLOW) == T0 + timedelta(seconds=10, microseconds=250)
    assert store.cursor(OTHER_FLOW) is None


def test_times_come_back_in_utc(store: StateStore) -> None:
    elsewhere = timezone(timedelta(hours=2))
    with store.batch() as b:
        b.set_cursor(FLOW, T0.astimezone(elsewhere))
    back = store.cursor(FLOW)
    assert back == T0
    assert back is not None
    assert back.utcoffset() == timedelta(0)


def test_naive_datetimes_are_rejected(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive"), store.batch() as b:
        b.set_cursor(FLOW, datetime(2024, 1, 1))  # naive: the point of the test


# ---- executions and exported steps --------------------------------------------------------


def test_followed_executions_come_back_per_flow_without_personal_data(store: StateStore) -> None:
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


def test_the_same_execution_twice_in_one_page_is_applied_in_order(store: StateStore) -> None:
    first = execution(status="active")
    again = execution(status="ended", execution_sid=first.sid)
    with store.batch() as b:
        b.upsert_executions([first, again])
    assert [e.status for e in store.active_executions(FLOW)] == ["ended"]


def test_known_executions_answers_a_page_at_once(store: StateStore) -> None:
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
    assert store.done_executions(iter(page)) == {finished.sid}  # any iterable, read once


def test_exported_steps_are_the_subset_already_marked(store: StateStore) -> None:
    followed = execution()
    with store.batch() as b:
        b.upsert_execution(followed)
        b.mark_steps_exported(followed.sid, ["FT1", "FT2"])
    with store.batch() as b:
        b.mark_steps_exported(followed.sid, ["FT2", "FT3", "FT3"])  # marking again is harmless
    assert store.exported_steps(followed.sid, ["FT1", "FT3", "FT4"]) == {"FT1", "FT3"}
    assert store.exported_steps("FN" + "0" * 32, ["FT1"]) == set()


def test_a_done_execution_counts_every_step_as_exported_and_drops_its_marks(
    store: StateStore,
) -> None:
    finished = execution(status="ended")
    with store.batch() as b:
        b.upsert_execution(finished, done=True)  # the order inside a batch does not matter
        b.mark_steps_exported(finished.sid, ["FT1", "FT2"])
    assert store.exported_steps(finished.sid, ["FT1", "FT9"]) == {"FT1", "FT9"}
    assert store.active_executions(FLOW) == []
    # Pruning it reports the marks it removed: none were left.
    assert store.prune(T0 + timedelta(days=40)) == PruneResult(1, 0, 0)


def test_done_and_ended_never_go_backwards(store: StateStore) -> None:
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


def test_marks_for_an_unrecorded_execution_fail_the_whole_batch(
    store: StateStore, backend: Backend
) -> None:
    def orphan_marks(b: LedgerBatch) -> None:
        b.set_cursor(FLOW, T0)
        b.mark_steps_exported("FN" + "1" * 32, ["FT1"])

    with pytest.raises(backend.integrity_error):
        run_batch(store, orphan_marks)
    assert store.cursor(FLOW) is None
    with store.batch() as b:  # the store is usable afterwards
        b.set_cursor(FLOW, T0)
    assert store.cursor(FLOW) == T0


def test_forget_executions_drops_them_and_their_marks(store: StateStore) -> None:
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


# ---- the batch: all or nothing ------------------------------------------------------------


class BoomError(Exception):
    pass


def run_batch(
    store: StateStore, work: Callable[[LedgerBatch], None], *, fail: bool = False
) -> None:
    with store.batch() as b:
        work(b)
        if fail:
            raise BoomError


def test_an_exception_mid_batch_leaves_nothing(store: StateStore) -> None:
    known = execution()
    with store.batch() as b:
        b.upsert_execution(known)
        b.mark_steps_exported(known.sid, ["FT0"])
        b.set_cursor(FLOW, T0)
        b.save_metric_snapshot(b"before")
    store.enqueue_events([("EV1", b"1")])
    [event] = store.next_events(1)
    followed = execution()

    def everything(b: LedgerBatch) -> None:
        b.upsert_flow(FLOW, "Support", 1, "{}")
        b.upsert_execution(followed)
        b.upsert_execution(known, done=True)
        b.mark_steps_exported(followed.sid, ["FT1"])
        b.mark_steps_exported(known.sid, ["FT1"])
        b.set_cursor(FLOW, T0 + timedelta(minutes=1))
        b.enqueue_spans([b"span"])
        b.save_metric_snapshot(b"after")
        assert b.ack_events([event.id]) == 1
        assert store.is_known(followed.sid)  # the batch's own thread reads its writes
        assert store.count_pending_spans() == 1
        assert store.count_pending_events() == 0

    with pytest.raises(BoomError):
        run_batch(store, everything, fail=True)
    assert store.flows() == []
    assert not store.is_known(followed.sid)
    assert not store.is_done(known.sid)
    assert store.exported_steps(known.sid, ["FT0", "FT1"]) == {"FT0"}
    assert store.cursor(FLOW) == T0
    assert store.count_pending_spans() == 0
    assert store.pending_spans(10) == []
    assert store.metric_snapshot() == b"before"
    assert store.next_events(10) == [event]
    assert store.count_pending_events() == 1


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda store: store.ack_spans([1]), id="ack_spans"),
        pytest.param(lambda store: store.enqueue_events([("EV1", b"1")]), id="enqueue_events"),
        pytest.param(lambda store: store.set_last_success("poll", T0), id="set_last_success"),
        pytest.param(lambda store: store.prune(T0), id="prune"),
    ],
)
def test_store_writes_inside_a_batch_are_refused_not_joined(
    store: StateStore, write: Callable[[StateStore], object]
) -> None:
    with store.batch() as b:
        b.enqueue_spans([b"kept"])
    [kept] = store.pending_spans(1)

    def inside(_: LedgerBatch) -> None:
        write(store)

    with pytest.raises(StateError, match="inside a batch"):
        run_batch(store, inside)
    assert store.pending_spans(10) == [kept]
    assert store.next_events(10) == []
    assert store.last_success("poll") is None
    write(store)  # outside a batch: its own transaction


def test_batches_do_not_nest(store: StateStore) -> None:
    with pytest.raises(StateError, match="do not nest"), store.batch(), store.batch():
        pass
    with store.batch() as b:  # the store is usable afterwards
        b.save_metric_snapshot(b"x")
    assert store.metric_snapshot() == b"x"


def test_the_metric_snapshot_is_replaced(store: StateStore) -> None:
    assert store.metric_snapshot() is None
    for blob in (b"one", b"two"):
        with store.batch() as b:
            b.save_metric_snapshot(blob)
    assert store.metric_snapshot() == b"two"


def test_unit_snapshots_are_kept_per_flow_apart_from_the_account_snapshot(
    backend: Backend,
) -> None:
    with backend.open() as store:
        assert store.unit_metric_snapshot(FLOW) is None
        with store.batch() as b:
            b.save_unit_snapshot(FLOW, b"one")
            b.save_unit_snapshot(OTHER_FLOW, b"other")
        with store.batch() as b:
            b.save_unit_snapshot(FLOW, b"two")
        with pytest.raises(BoomError):
            run_batch(store, lambda b: b.save_unit_snapshot(OTHER_FLOW, b"rolled back"), fail=True)
        assert store.metric_snapshot() is None
    with backend.open() as reopened:
        assert reopened.unit_metric_snapshot(FLOW) == b"two"
        assert reopened.unit_metric_snapshot(OTHER_FLOW) == b"other"


def test_without_leases_every_unit_is_held(store: StateStore) -> None:
    with store.batch() as b:
        b.hold_unit(FLOW)
        b.save_unit_snapshot(FLOW, b"held")
    assert store.unit_metric_snapshot(FLOW) == b"held"


def test_last_success_per_source_survives_reopen(backend: Backend) -> None:
    with backend.open() as first:
        assert first.last_success("poll") is None
        first.set_last_success("poll", T0)
        first.set_last_success("poll", T0 + timedelta(seconds=30))
        first.set_last_success("push", T0)
    with backend.open() as second:
        assert second.last_success("poll") == T0 + timedelta(seconds=30)
        assert second.last_success("push") == T0
        assert second.count_pending_events() == 0
        assert second.count_pending_spans() == 0


# ---- span outbox --------------------------------------------------------------------------


def test_spans_wait_in_the_outbox_until_acknowledged(store: StateStore) -> None:
    with store.batch() as b:
        assert b.enqueue_spans([b"a", "b", b"c"]) == 0
        assert b.enqueue_spans([]) == 0
    pending = store.pending_spans(2)
    assert [span.payload for span in pending] == [b"a", b"b"]
    assert isinstance(pending[0], OutboxSpan)
    assert store.ack_spans([span.id for span in pending]) == 2
    assert store.ack_spans([span.id for span in pending]) == 0  # acknowledging twice is harmless
    assert store.ack_spans([]) == 0
    assert store.count_pending_spans() == 1
    assert [span.payload for span in store.pending_spans(10)] == [b"c"]


def test_the_outbox_keeps_the_order_spans_were_queued_in(store: StateStore) -> None:
    payloads = [f"span {n}".encode() for n in range(300)]
    for start in range(0, 300, 100):
        with store.batch() as b:
            b.enqueue_spans(payloads[start : start + 100])
    read = store.pending_spans(1000)
    assert [span.payload for span in read] == payloads
    assert [span.id for span in read] == sorted(span.id for span in read)


def test_a_full_outbox_drops_the_oldest_and_says_how_many(backend: Backend) -> None:
    with backend.open(max_pending_spans=5) as store:
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


def test_span_ids_are_not_reused_after_the_outbox_empties(backend: Backend) -> None:
    with backend.open() as store:
        with store.batch() as b:
            b.enqueue_spans([b"old"])
        old = store.pending_spans(1)
        store.ack_spans([span.id for span in old])
    with backend.open() as store:  # not even by a reopened store
        with store.batch() as b:
            b.enqueue_spans([b"new"])
        assert store.ack_spans([span.id for span in old]) == 0
        assert store.count_pending_spans() == 1


# ---- event inbox (push mode) --------------------------------------------------------------


def test_events_are_deduplicated_on_their_id(store: StateStore) -> None:
    assert store.enqueue_events([("EV1", b"one"), ("EV2", "two"), ("EV1", b"again")]) == 2
    assert store.enqueue_events([("EV2", b"redelivered"), ("EV3", b"three")]) == 1
    events = store.next_events(10)
    assert [(e.event_id, e.payload) for e in events] == [
        ("EV1", b"one"),
        ("EV2", b"two"),
        ("EV3", b"three"),
    ]
    assert isinstance(events[0], InboxEvent)
    assert store.ack_events([e.id for e in events[:2]]) == 2
    assert store.ack_events([e.id for e in events[:2]]) == 0
    assert store.count_pending_events() == 1
    assert store.enqueue_events([("EV1", b"after processing")]) == 0  # still remembered
    assert store.enqueue_events([]) == 0


def test_a_full_inbox_refuses_the_whole_delivery(backend: Backend) -> None:
    with backend.open(max_pending_events=3) as store:
        store.enqueue_events([("EV1", b"1"), ("EV2", b"2")])
        with pytest.raises(InboxFull, match="2 pending \\+ 2 new > 3"):
            store.enqueue_events([("EV3", b"3"), ("EV4", b"4")])
        assert store.count_pending_events() == 2
        assert store.enqueue_events([("EV3", b"3")]) == 1  # not remembered when refused
        assert store.enqueue_events([("EV1", b"1"), ("EV2", b"2")]) == 0  # seen: no room needed


def test_acknowledging_events_in_a_batch_is_undone_with_it(store: StateStore) -> None:
    store.enqueue_events([("EV1", b"1")])
    [event] = store.next_events(1)

    def ack(b: LedgerBatch) -> None:
        assert b.ack_events([event.id]) == 1

    with pytest.raises(BoomError):
        run_batch(store, ack, fail=True)
    assert store.count_pending_events() == 1
    with store.batch() as b:
        assert b.ack_events([event.id]) == 1
    assert store.next_events(1) == []


# ---- retention ----------------------------------------------------------------------------


def test_prune_forgets_what_studio_no_longer_keeps(store: StateStore) -> None:
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


def test_prune_keeps_the_outbox_the_inbox_and_cursors(store: StateStore) -> None:
    with store.batch() as b:
        b.set_cursor(FLOW, T0)
        b.enqueue_spans([b"span"])
    store.enqueue_events([("EV1", b"1")], received_at=T0)
    store.prune(T0 + timedelta(days=400))
    assert store.cursor(FLOW) == T0
    assert store.count_pending_spans() == 1
    assert [e.event_id for e in store.next_events(10)] == ["EV1"]


# ---- threads ------------------------------------------------------------------------------


def test_poller_sink_and_webhook_threads_share_the_store(store: StateStore) -> None:
    rounds, webhook_threads = 30, 4
    errors: list[BaseException] = []
    acked: list[int] = []

    def guarded(work: Callable[[], None]) -> threading.Thread:
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
    threads += [guarded(lambda w=w: webhook(w)) for w in range(webhook_threads)]  # type: ignore[misc]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert store.metric_snapshot() == str(rounds - 1).encode()
    assert sum(acked) + store.count_pending_spans() == rounds * 5
    assert len(store.pending_spans(10_000)) == store.count_pending_spans()
    events = store.next_events(10_000)
    assert len(events) == store.count_pending_events() == rounds * 3
    assert len({e.event_id for e in events}) == rounds * 3
    assert len(store.active_executions(FLOW)) == rounds * 20


def test_a_delivery_enqueued_in_a_batch_commits_or_rolls_back_with_it(store: StateStore) -> None:
    def deliver(b: LedgerBatch) -> None:
        assert b.enqueue_events([("EV1", b"1"), ("EV2", b"2")]) == 2

    with pytest.raises(BoomError):
        run_batch(store, deliver, fail=True)
    assert store.next_events(10) == []
    run_batch(store, deliver)
    assert [event.event_id for event in store.next_events(10)] == ["EV1", "EV2"]
    with store.batch() as b:
        assert b.enqueue_events([("EV2", b"2"), ("EV3", b"3")]) == 1  # EV2 seen before
