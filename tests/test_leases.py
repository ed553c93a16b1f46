"""Leases on a real PostgreSQL: balance, expiry, leaving, and the fence inside a commit."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.sinks.selfmetrics import LeaseMetrics
from studio_exporter.sources.replicas import LeaseOwnership, Replica
from studio_exporter.store.leases import LeaseBoard, TickResult, quota
from studio_exporter.store.postgres import PostgresStore
from studio_exporter.store.protocols import LeaseLost

ACCOUNT = "AC" + "a" * 32
SUBACCOUNT = "AC" + "b" * 32
LONG = timedelta(seconds=60)
FLOWS = [f"FW{i:032x}" for i in range(7)]


@pytest.fixture
def boards(postgres_url: str) -> Iterator[list[LeaseBoard]]:
    opened = [LeaseBoard.open(postgres_url, replica=f"replica-{name}", name=name) for name in "abc"]
    yield opened
    for board in opened:
        board.close()


@pytest.mark.parametrize(
    ("units", "replicas", "expected"),
    [
        pytest.param(7, ["a", "b", "c"], [3, 2, 2], id="7-over-3"),
        pytest.param(6, ["a", "b", "c"], [2, 2, 2], id="6-over-3"),
        pytest.param(2, ["a", "b", "c"], [1, 1, 0], id="fewer-units-than-replicas"),
        pytest.param(5, ["a"], [5], id="alone"),
    ],
)
def test_quotas_add_up_and_differ_by_at_most_one(
    units: int, replicas: list[str], expected: list[int]
) -> None:
    assert [quota(units, replicas, replica) for replica in replicas] == expected


def _settle(boards: list[LeaseBoard], listed: dict[str, list[str]]) -> list[TickResult]:
    results: list[TickResult] = []
    for _ in range(3):  # two ticks each converge; a third changes nothing
        results = [board.tick(LONG, listed) for board in boards]
    return results


def test_three_replicas_split_the_units_within_one_of_the_mean(
    boards: list[LeaseBoard],
) -> None:
    listed = {ACCOUNT: FLOWS[:4], SUBACCOUNT: FLOWS[4:]}
    results = _settle(boards, listed)
    sizes = sorted(len(result.owned) for result in results)
    assert sizes == [2, 2, 3]
    owned = [unit for result in results for unit in result.owned]
    assert len(owned) == len(set(owned)) == 7  # every unit once
    assert all(result.replicas == 3 and result.units == 7 for result in results)
    again = [board.tick(LONG, listed) for board in boards]
    assert all(not (r.acquired or r.released) for r in again)  # stable: nothing moves


def test_a_replica_that_joins_gets_its_share_and_only_that_moves(
    boards: list[LeaseBoard],
) -> None:
    listed = {ACCOUNT: FLOWS}
    first = _settle(boards[:2], listed)
    before = {board.replica: r.owned for board, r in zip(boards[:2], first, strict=True)}
    after = _settle(boards, listed)
    sizes = sorted(len(r.owned) for r in after)
    assert sizes == [2, 2, 3]
    kept = sum(len(before[b.replica] & r.owned) for b, r in zip(boards[:2], after[:2], strict=True))
    assert kept == 7 - len(after[2].owned)  # only the newcomer's share moved


def test_a_departed_replicas_units_are_taken_once_its_lease_expires(
    postgres_url: str,
) -> None:
    short = timedelta(seconds=1)
    a = LeaseBoard.open(postgres_url, replica="replica-a", name="a")
    b = LeaseBoard.open(postgres_url, replica="replica-b", name="b")
    try:
        listed = {ACCOUNT: FLOWS}
        for _ in range(2):
            a.tick(short, listed)
            b.tick(short, listed)
        held_by_a = a.tick(short, listed).owned
        assert held_by_a
        # a stops ticking (killed): its leases and heartbeat expire.
        assert not b.tick(short, listed).owned & held_by_a
        time.sleep(1.2)
        taken = b.tick(short, listed)
        assert taken.owned == {(ACCOUNT, flow) for flow in FLOWS}
        assert taken.replicas == 1
    finally:
        a.close()
        b.close()


def test_a_replica_that_leaves_frees_its_units_at_once(boards: list[LeaseBoard]) -> None:
    listed = {ACCOUNT: FLOWS}
    _settle(boards, listed)
    boards[0].leave()
    results = _settle(boards[1:], listed)
    assert sorted(len(r.owned) for r in results) == [3, 4]


def test_a_deleted_flow_stops_being_a_unit(boards: list[LeaseBoard]) -> None:
    _settle(boards, {ACCOUNT: FLOWS})
    results = _settle(boards, {ACCOUNT: FLOWS[:3]})
    owned = {unit for result in results for unit in result.owned}
    assert owned == {(ACCOUNT, flow) for flow in FLOWS[:3]}


def test_an_account_not_listed_this_tick_keeps_its_units(boards: list[LeaseBoard]) -> None:
    _settle(boards, {ACCOUNT: FLOWS[:3], SUBACCOUNT: FLOWS[3:]})
    results = _settle(boards, {ACCOUNT: FLOWS[:3]})  # the subaccount's listing failed
    assert sum(len(r.owned) for r in results) == 7


def _commit_unit(store: PostgresStore, flow: str, blob: bytes) -> None:
    with store.batch() as b:
        b.save_unit_snapshot(flow, blob)
        b.hold_unit(flow)


def _holder(boards: list[LeaseBoard], results: list[TickResult], flow: str) -> int:
    return next(i for i, r in enumerate(results) if (ACCOUNT, flow) in r.owned)


def test_a_commit_for_a_unit_held_elsewhere_rolls_back(
    postgres_url: str, boards: list[LeaseBoard]
) -> None:
    results = _settle(boards, {ACCOUNT: FLOWS})
    holder = _holder(boards, results, FLOWS[0])
    other = (holder + 1) % 3
    mine = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner=boards[holder].replica)
    theirs = PostgresStore.open(
        postgres_url, account_sid=ACCOUNT, lease_owner=boards[other].replica
    )
    try:
        with mine.batch() as b:
            b.save_unit_snapshot(FLOWS[0], b"by the holder")
            b.hold_unit(FLOWS[0])
        with pytest.raises(LeaseLost, match="no longer leased"):
            _commit_unit(theirs, FLOWS[0], b"by another replica")
        assert mine.unit_metric_snapshot(FLOWS[0]) == b"by the holder"
    finally:
        mine.close()
        theirs.close()


def test_a_commit_after_the_lease_expired_rolls_back(postgres_url: str) -> None:
    board = LeaseBoard.open(postgres_url, replica="replica-a", name="a")
    store = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-a")
    try:
        board.tick(timedelta(seconds=0.5), {ACCOUNT: FLOWS[:1]})
        time.sleep(0.7)
        with pytest.raises(LeaseLost), store.batch() as b:
            b.hold_unit(FLOWS[0])
    finally:
        store.close()
        board.close()


def test_a_claim_waits_for_the_holders_commit_and_then_sees_it(postgres_url: str) -> None:
    """The fence locks the lease row: a replica taking over the unit waits for the commit."""
    a = LeaseBoard.open(postgres_url, replica="replica-a", name="a")
    b = LeaseBoard.open(postgres_url, replica="replica-b", name="b")
    store = PostgresStore.open(postgres_url, account_sid=ACCOUNT, lease_owner="replica-a")
    claimed: list[TickResult] = []

    def claim() -> None:
        claimed.append(b.tick(LONG, {ACCOUNT: FLOWS[:1]}))

    try:
        a.tick(timedelta(seconds=1), {ACCOUNT: FLOWS[:1]})
        with store.batch() as batch:
            batch.hold_unit(FLOWS[0])
            batch.save_unit_snapshot(FLOWS[0], b"committed before the move")
            time.sleep(1.2)  # a's lease expires while its commit is still open
            thread = threading.Thread(target=claim)
            thread.start()
            thread.join(timeout=1.0)
            assert thread.is_alive()  # b waits on the lease row
        thread.join(timeout=10)
        assert claimed
        assert (ACCOUNT, FLOWS[0]) in claimed[0].owned
        assert store.unit_metric_snapshot(FLOWS[0]) == b"committed before the move"
        with pytest.raises(LeaseLost), store.batch() as batch:
            batch.hold_unit(FLOWS[0])
    finally:
        store.close()
        a.close()
        b.close()


class _Listing:
    """An account's poller as the lease loop sees it: its listed flows, and adopt calls."""

    def __init__(self, account_sid: str, flows: set[str]) -> None:
        self.account_sid = account_sid
        self.flows = flows
        self.adopted = 0

    def listed_flow_sids(self) -> set[str] | None:
        return set(self.flows)

    def adopt(self) -> None:
        self.adopted += 1


def test_a_replica_that_cannot_renew_drops_its_units_once_its_leases_would_have_expired(
    postgres_url: str,
) -> None:
    registry = CollectorRegistry()
    ownership = LeaseOwnership()
    poller = _Listing(ACCOUNT, set(FLOWS[:2]))
    replica = Replica(
        LeaseBoard.open(postgres_url, replica="replica-a", name="a"),
        ownership,
        timedelta(seconds=1.5),
        LeaseMetrics(registry),
        lambda: [poller],
    )
    try:
        asyncio.run(replica.tick())
        held = {(ACCOUNT, flow) for flow in FLOWS[:2]}
        assert ownership.owned == held
        assert poller.adopted == 1
        database = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(
            postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True
        ) as admin:
            # The database becomes unreachable for this replica: cut and kept out.
            admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'studio-exporter-leases'"
            )
        asyncio.run(replica.tick())  # fails: the units are kept while the leases may hold
        assert ownership.owned == held
        time.sleep(1.6)
        asyncio.run(replica.tick())  # fails again, past the lease: the units are dropped
        assert ownership.owned == frozenset()
        assert poller.adopted == 2
        assert registry.get_sample_value("twilio_studio_exporter_lease_errors_total") == 2
        assert registry.get_sample_value("twilio_studio_exporter_units_leased") == 0
        moves = "twilio_studio_exporter_unit_moves_total"
        assert registry.get_sample_value(moves, {"direction": "expired"}) == 2
        assert registry.get_sample_value(moves, {"direction": "acquired"}) == 2
        _allow_connections(postgres_url, database)
        asyncio.run(replica.tick())  # the database is back: the board reconnects and leases
        assert ownership.owned == held
        assert registry.get_sample_value(moves, {"direction": "acquired"}) == 4
    finally:
        _allow_connections(postgres_url, postgres_url.rsplit("/", 1)[1])
        replica.leave()


def _allow_connections(url: str, database: str) -> None:
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
