"""Replicas on one real PostgreSQL: three processes, two SIGKILLs and a join, against the truth.

The simulator serves three accounts with live traffic whose clock follows the wall clock until
the test freezes it (traffic stops, and the truth with it). Replicas are real ``run``
processes; kills are SIGKILL (nothing flushed, nothing committed). After the kills and the
join, the metrics summed over the replicas still running equal the simulator's truth for every
account, every span arrives (duplicates only with identical ids, and counted), and a killed
replica's units are leased by others within ``--lease-duration`` plus one poll interval.

With ``STUDIO_EXPORTER_REPORT=1`` (``make replicas``) the figures also go to docs/replicas.md
and the README.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from studio_exporter.simulator import Simulator, SimulatorConfig
from studio_exporter.simulator.eventstreams import DeliveryOptions
from tests.exporter_process import ExporterProcess, exporter_command, scrape
from tests.otlp_receiver import OtlpReceiver, running_receiver
from tests.report import replace_section
from tests.test_accounts import account_registry
from tests.truthcheck import expected_span_count, metric_mismatches, samples, together

LEASE_SECONDS = 6.0
POLL_SECONDS = 1.0
ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "replicas.md"


class RunningClock:
    """Wall time until frozen: live traffic stops at the freeze, and the truth with it."""

    def __init__(self) -> None:
        self._frozen: datetime | None = None

    def __call__(self) -> datetime:
        return self._frozen or datetime.now(UTC)

    def freeze(self) -> None:
        self._frozen = datetime.now(UTC)


@dataclass
class Figures:
    """What the run measured, for the README."""

    units: int = 0
    takeovers: list[float] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    spread: dict[str, list[int]] = field(default_factory=dict)
    spans: int = 0
    duplicates: int = 0
    held_back: int = 0


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as running:
        yield running


def leases(url: str) -> dict[str, int]:
    """Units held per replica name (host/pid), from the lease table itself."""
    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT r.name, count(l.*) FROM studio_exporter_leases.leases l "
            "JOIN studio_exporter_leases.replicas r ON r.id = l.owner "
            "WHERE l.expires > clock_timestamp() GROUP BY r.name"
        ).fetchall()
    return {str(name): int(count) for name, count in rows}


def unit_count(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM studio_exporter_leases.leases").fetchone()
    assert row is not None
    return int(row[0])


def name_of(replica: ExporterProcess) -> str:
    return f"{os.uname().nodename}/{replica.pid}"


def wait_until_balanced(
    url: str, replicas: list[ExporterProcess], units: int, timeout: float = 60
) -> list[int]:
    """Every unit held by a running replica, each within one of the mean; returns the counts."""
    names = [name_of(replica) for replica in replicas]
    deadline = time.monotonic() + timeout
    while True:
        held = leases(url)
        counts = [held.get(name, 0) for name in names]
        if sum(counts) == units and max(counts) - min(counts) <= 1:
            return counts
        if time.monotonic() > deadline:
            pytest.fail(f"not balanced after {timeout}s: {held} over {names}, {units} units")
        time.sleep(0.1)


def take_over_seconds(url: str, killed: ExporterProcess, timeout: float = 60) -> float:
    """SIGKILL ``killed``, then the seconds until no unit is leased to it any more."""
    name = name_of(killed)
    assert leases(url).get(name, 0) > 0, "the replica held nothing before the kill"
    killed.kill()
    started = time.monotonic()
    while leases(url).get(name, 0) and time.monotonic() - started < timeout:
        time.sleep(0.05)
    return time.monotonic() - started


def requests_per_second(replicas: list[ExporterProcess], seconds: float = 6.0) -> float:
    """API requests per second, summed over ``replicas``, over ``seconds``, once the catch-up
    after a move is over (a few seconds)."""
    time.sleep(3)

    def total() -> float:
        return sum(
            value
            for replica in replicas
            for _, value in samples(
                scrape(replica.web_url())[1], "twilio_studio_exporter_api_requests_total"
            )
        )

    before = total()
    time.sleep(seconds)
    return (total() - before) / seconds


def solo_spans(simulator: Simulator, env: dict[str, str], state_dir: Path) -> set[tuple[int, int]]:
    """The (trace, span) ids one exporter alone (SQLite, no leases) sends for the same data."""
    with running_receiver() as reference:
        solo_env = {k: v for k, v in env.items() if k != "STUDIO_EXPORTER_STATE_POSTGRES_URL"}
        solo_env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = reference.endpoint
        argv = [
            *exporter_command("backfill"), "--include-subaccounts",
            "--twilio-base-url", simulator.url, "--since", "2d", "--state-dir", str(state_dir),
        ]  # fmt: skip
        done = subprocess.run(
            argv,
            env=solo_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return {(span.trace_id, span.span_id) for span in reference.spans}


def summed(replicas: list[ExporterProcess]) -> CollectorRegistry:
    return together(*(scrape(replica.web_url())[1] for replica in replicas))


@pytest.mark.integration
def test_three_replicas_two_kills_and_a_join_sum_to_the_truth(
    postgres_url: str, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    clock = RunningClock()
    config = SimulatorConfig(
        seed=31, history_executions=40, history_days=0.5, rate=30, speed=10, subaccounts=2,
        clock=clock,
    )  # fmt: skip
    figures = Figures()
    with Simulator(config) as simulator:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": simulator.account_sid,
            "TWILIO_AUTH_TOKEN": simulator.auth_token,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "STUDIO_EXPORTER_STATE_POSTGRES_URL": postgres_url,
        }
        common = [
            "--include-subaccounts", "--twilio-base-url", simulator.url,
            "--web.listen-address", "127.0.0.1:0", "--lookback", "1d",
            "--poll-interval", f"{POLL_SECONDS:g}s", "--lease-duration", f"{LEASE_SECONDS:g}s",
        ]  # fmt: skip
        started: list[ExporterProcess] = []

        def replica(name: str) -> ExporterProcess:
            process = ExporterProcess(
                [*common, "--state-dir", str(tmp_path / name)], env, tmp_path / f"{name}.log"
            ).start()
            started.append(process)
            process.web_url()
            return process

        try:
            a, b, c = replica("a"), replica("b"), replica("c")
            every_flow = sum(len(account.traffic.flow_sids) for account in simulator.accounts)
            deadline = time.monotonic() + 60
            while unit_count(postgres_url) < every_flow and time.monotonic() < deadline:
                time.sleep(0.1)
            figures.units = unit_count(postgres_url)
            assert figures.units == every_flow
            figures.spread["3 replicas"] = wait_until_balanced(
                postgres_url, [a, b, c], figures.units
            )

            figures.takeovers.append(take_over_seconds(postgres_url, a))
            figures.spread["2 replicas (after a kill)"] = wait_until_balanced(
                postgres_url, [b, c], figures.units
            )

            figures.takeovers.append(take_over_seconds(postgres_url, b))
            figures.spread["1 replica (after a second kill)"] = wait_until_balanced(
                postgres_url, [c], figures.units
            )

            d = replica("d")
            figures.spread["2 replicas (after a join)"] = wait_until_balanced(
                postgres_url, [c, d], figures.units
            )
            time.sleep(3)  # live traffic goes on across the join
            clock.freeze()
            accounts = [account.sid for account in simulator.accounts]
            truths = {sid: simulator.truth(sid) for sid in accounts}
            deadline = time.monotonic() + 90
            while True:
                registry = summed([c, d])
                problems = {
                    sid: metric_mismatches(account_registry(registry, sid), truths[sid])
                    for sid in accounts
                }
                if not any(problems.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert problems == {sid: [] for sid in accounts}, figures
            # The spans one exporter alone sends for the same data: a subflow visit's span
            # waits for its run-subflow visit to close, which live traffic frozen mid-subflow
            # never does, so the truth's count of closed visits can be a little higher.
            reference = solo_spans(simulator, env, tmp_path / "solo")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = {(span.trace_id, span.span_id) for span in list(receiver.spans)}
                if reference <= got:
                    break
                time.sleep(0.5)
            held_back = sum(map(expected_span_count, truths.values())) - len(reference)
            # Requests per second with the traffic frozen (the same followed executions re-read
            # every cycle), so that 1, 2 and 3 replicas read the same work.
            figures.rates["2 replicas"] = requests_per_second([c, d])
            e = replica("e")
            wait_until_balanced(postgres_url, [c, d, e], figures.units)
            figures.rates["3 replicas"] = requests_per_second([c, d, e])
            for gone in (d, e):
                assert gone.terminate() == 0
            wait_until_balanced(postgres_url, [c], figures.units)
            figures.rates["1 replica"] = requests_per_second([c])
        finally:
            codes = {process.pid: process.terminate() for process in started if process.running()}
        assert codes == {c.pid: 0}, c.own_log()[-3000:]
    assert problems == {sid: [] for sid in accounts}
    spans = list(receiver.spans)
    ids = Counter((span.trace_id, span.span_id) for span in spans)
    figures.spans = len(ids)
    figures.duplicates = len(spans) - len(ids)
    figures.held_back = held_back
    assert set(ids) == reference  # every span arrived, and no other
    assert 0 <= held_back <= 20, held_back
    for (trace_id, span_id), copies in ids.items():
        if copies > 1:  # a duplicate is the same span again: same name and times
            same = {
                (span.name, span.start_ns, span.end_ns)
                for span in spans
                if (span.trace_id, span.span_id) == (trace_id, span_id)
            }
            assert len(same) == 1
    bound = LEASE_SECONDS + POLL_SECONDS
    print(f"\nreplicas: {figures}")
    assert all(seconds <= bound for seconds in figures.takeovers), figures.takeovers
    if os.environ.get("STUDIO_EXPORTER_REPORT") == "1":
        write_report(figures)


def write_report(figures: Figures) -> None:
    rows = [
        "| Measure | Value |",
        "|---|---|",
        f"| Units (account, flow) | {figures.units} |",
        *(
            f"| Units per replica, {phase} | {', '.join(map(str, counts))} |"
            for phase, counts in figures.spread.items()
        ),
        *(
            f"| Take-over after SIGKILL #{n} (bound {LEASE_SECONDS + POLL_SECONDS:g} s) | "
            f"{seconds:.1f} s |"
            for n, seconds in enumerate(figures.takeovers, 1)
        ),
        *(
            f"| Studio API requests/s with the traffic frozen, {phase} | {rate:.1f} |"
            for phase, rate in sorted(figures.rates.items())
        ),
        f"| Spans received (distinct) / duplicates | {figures.spans} / {figures.duplicates} |",
    ]
    table = "\n".join(rows) + "\n"
    replace_section(REPORT, "failover", table)
    replace_section(ROOT / "README.md", "failover", table)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("mode", "kill"),
    [
        pytest.param("push", False, id="push"),
        pytest.param("hybrid", False, id="hybrid"),
        pytest.param("push", True, id="push-holder-killed"),
    ],
)
def test_push_deliveries_to_one_replica_are_applied_by_each_accounts_holder(
    postgres_url: str, receiver: OtlpReceiver, tmp_path: Path, mode: str, kill: bool
) -> None:
    """In push and hybrid modes the unit is the account: every replica's receiver fills the
    account's inbox in PostgreSQL, and the replica holding the account applies it (and, in
    hybrid mode, polls its flows). ``kill``: the other replica is SIGKILLed while deliveries
    go on; its accounts move to the survivor with what their inboxes still hold."""
    config = SimulatorConfig(seed=37, history_executions=50, history_days=0.05, subaccounts=2)
    with Simulator(config) as simulator:
        env = {
            **os.environ,
            "TWILIO_ACCOUNT_SID": simulator.account_sid,
            "TWILIO_AUTH_TOKEN": simulator.auth_token,
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "STUDIO_EXPORTER_STATE_POSTGRES_URL": postgres_url,
        }
        common = [
            "--mode", mode, "--include-subaccounts", "--twilio-base-url", simulator.url,
            "--web.listen-address", "127.0.0.1:0", "--lookback", "1d",
            "--lease-duration", f"{LEASE_SECONDS:g}s",
        ]  # fmt: skip
        replicas = [
            ExporterProcess(
                [*common, "--state-dir", str(tmp_path / name)], env, tmp_path / f"{name}.log"
            ).start()
            for name in ("a", "b")
        ]
        pushers = []
        try:
            a, b = replicas
            for replica in replicas:
                replica.web_url()  # serving: the lease tables exist
            accounts = [account.sid for account in simulator.accounts]
            deadline = time.monotonic() + 60
            while unit_count(postgres_url) < len(accounts) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sorted(wait_until_balanced(postgres_url, replicas, len(accounts))) == [1, 2]
            # Every delivery goes to a: the accounts b holds are applied by b all the same.
            base = f"{a.web_url()}/webhooks/event-streams"
            since = datetime.now(UTC) - timedelta(days=1)
            for sid in accounts:
                pushers.append(
                    simulator.push_events_to(
                        f"{base}/{sid}",
                        DeliveryOptions(seed=3),
                        interval=0.05,
                        since=since,
                        account_sid=sid,
                    )
                )
            truths = {sid: simulator.truth(sid) for sid in accounts}
            running = replicas
            if kill:
                time.sleep(1)  # some of b's accounts applied, some still in their inboxes
                b.kill()
                running = [a]
            deadline = time.monotonic() + 90
            while True:
                registry = summed(running)
                problems = {
                    sid: metric_mismatches(account_registry(registry, sid), truths[sid])
                    for sid in accounts
                }
                if not any(problems.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert problems == {sid: [] for sid in accounts}
            served = [
                {
                    labels["account_sid"]
                    for labels, value in samples(
                        scrape(replica.web_url())[1], "twilio_studio_steps_total"
                    )
                    if value
                }
                for replica in running
            ]
            expected = sum(map(expected_span_count, truths.values()))
            spans = receiver.wait_for_spans(expected, 60)
        finally:
            for pusher in pushers:
                pusher.stop()
            codes = [replica.terminate() for replica in replicas if replica.running()]
        assert codes == [0] * len(running), a.own_log()[-3000:]
    if kill:
        assert served == [set(accounts)]  # the survivor took b's accounts over
    else:
        assert served[0].isdisjoint(served[1])
        assert served[0] | served[1] == set(accounts)
        assert served[1], "b applied the accounts it holds from deliveries a received"
    assert len({(span.trace_id, span.span_id) for span in spans}) == expected
