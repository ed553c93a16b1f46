"""Many accounts in one exporter, over real sockets: every account's own credentials and state."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.registry import Collector

from studio_exporter.accounts import AccountSupervisor, open_account_store
from studio_exporter.app import Exporter, build_exporter
from studio_exporter.config import config_from_mapping
from studio_exporter.simulator import DeliveryOptions, FakeClock, Simulator, SimulatorConfig
from studio_exporter.sources.poller import utc_now
from studio_exporter.store.postgres import PostgresStore, account_schema
from studio_exporter.store.sqlite import Store, state_file, subaccount_state_file
from tests.exporter_process import exporter_command
from tests.otlp_receiver import OtlpReceiver, running_receiver
from tests.truthcheck import expected_span_count, metric_mismatches, samples
from tests.twilio_sdk import sdk_client

pytestmark = pytest.mark.integration

SUBACCOUNTS = 3
HISTORY = 40


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=17, history_executions=HISTORY, history_days=1, subaccounts=SUBACCOUNTS
    )
    with Simulator(config) as sim:
        yield sim


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with running_receiver() as running:
        yield running


class AccountView(Collector):
    """The samples of one account (``account_sid`` label) of a registry."""

    def __init__(self, registry: CollectorRegistry, account_sid: str) -> None:
        self._registry = registry
        self._account_sid = account_sid

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            kept = Metric(family.name, family.documentation, family.type)
            kept.samples = [
                s for s in family.samples if s.labels.get("account_sid") == self._account_sid
            ]
            yield kept


def account_registry(registry: CollectorRegistry, account_sid: str) -> CollectorRegistry:
    view = CollectorRegistry()
    view.register(AccountView(registry, account_sid))
    return view


def make_exporter(
    sim: Simulator,
    state_dir: Path,
    receiver: OtlpReceiver,
    *,
    clock: FakeClock | None = None,
    **flags: str,
) -> Exporter:
    config = config_from_mapping(
        {
            "twilio_base_url": sim.url,
            "state_dir": str(state_dir),
            "lookback": "3d",
            "include_subaccounts": "true",
            "listen_address": "127.0.0.1:0",
            **flags,
        },
        {"TWILIO_ACCOUNT_SID": sim.account_sid, "TWILIO_AUTH_TOKEN": sim.auth_token},
    )
    exporter = build_exporter(
        config,
        env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint},
        serve_web=clock is not None,
        clock=clock or utc_now,
    )
    exporter.start()
    return exporter


def run(exporter: Exporter, scenario: Callable[[AccountSupervisor], Awaitable[None]]) -> None:
    """Run ``scenario`` in one event loop (the API clients live in it), then close them."""
    accounts = exporter.accounts
    assert accounts is not None

    async def wrapped() -> None:
        try:
            await scenario(accounts)
        finally:
            await exporter.aclose_apis()

    asyncio.run(wrapped())


async def refresh_and_cycle(accounts: AccountSupervisor) -> None:
    await accounts.refresh(force=True)
    await accounts.cycle()


Reading = dict[str, Counter[tuple[str, ...]]]


def sdk_reading(sim: Simulator, account_sid: str, token: str) -> Reading:
    """What the account's own credentials read through Twilio's SDK, counted like the metrics."""
    client = sdk_client(sim.url, account_sid, token)
    since = datetime.now(UTC) - timedelta(days=3)
    steps: Counter[tuple[str, ...]] = Counter()
    started: Counter[tuple[str, ...]] = Counter()
    for flow in client.studio.v2.flows.list():
        for execution in client.studio.v2.flows(flow.sid).executions.list(date_created_from=since):
            started[(flow.sid,)] += 1
            for step in client.studio.v2.flows(flow.sid).executions(execution.sid).steps.list():
                steps[(step.flow_sid, step.transitioned_from, step.name, step.transitioned_to)] += 1
    return {"steps": steps, "started": started}


def exported(registry: CollectorRegistry, account_sid: str) -> Reading:
    steps: Counter[tuple[str, ...]] = Counter()
    started: Counter[tuple[str, ...]] = Counter()
    for labels, value in samples(registry, "twilio_studio_steps_total"):
        if labels["account_sid"] == account_sid and value:
            key = (labels["flow_sid"], labels["widget"], labels["event"], labels["next_widget"])
            steps[key] += int(value)
    for labels, value in samples(registry, "twilio_studio_executions_started_total"):
        if labels["account_sid"] == account_sid and value:
            started[(labels["flow_sid"],)] += int(value)
    return {"steps": steps, "started": started}


def info(registry: CollectorRegistry) -> dict[str, tuple[str, str]]:
    return {
        labels["account_sid"]: (labels["account"], labels["status"])
        for labels, _ in samples(registry, "twilio_studio_account_info")
    }


def test_every_account_exports_what_its_own_credentials_read(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, tmp_path, receiver)
    try:
        run(exporter, refresh_and_cycle)
        accounts = simulator.accounts
        assert exporter.accounts is not None
        assert set(exporter.accounts.followed) == {a.sid for a in accounts}
        for account in accounts:
            assert exported(exporter.registry, account.sid) == sdk_reading(
                simulator, account.sid, account.auth_token
            ), account.sid
            view = account_registry(exporter.registry, account.sid)
            assert metric_mismatches(view, simulator.truth(account.sid)) == [], account.sid
        assert info(exporter.registry) == {a.sid: (a.friendly_name, "active") for a in accounts}
        expected = sum(expected_span_count(simulator.truth(a.sid)) for a in accounts)
        spans = receiver.wait_for_spans(expected, timeout=30)
    finally:
        exporter.close()
    by_account = Counter(span.resource["twilio.account.sid"] for span in spans)
    assert set(by_account) == {a.sid for a in accounts}  # one resource per account
    for span in spans:
        flow_sid = span.attributes["twilio.studio.flow.sid"]
        owner = next(a for a in accounts if flow_sid in a.traffic.flow_sids)
        assert span.resource["twilio.account.sid"] == owner.sid
    for account in accounts[1:]:
        path = subaccount_state_file(tmp_path, account.sid)
        with Store.open(path) as store:
            assert store.account_sid() == account.sid
    with Store.open(state_file(tmp_path)) as store:
        assert store.account_sid() == simulator.account_sid


def test_accounts_come_and_go_at_the_refresh(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, tmp_path, receiver)
    suspended = simulator.accounts[1]

    async def scenario(accounts: AccountSupervisor) -> None:
        await refresh_and_cycle(accounts)
        added = simulator.add_subaccount("Late customer")
        simulator.set_account_status(suspended.sid, "suspended")
        await accounts.cycle()
        assert added.sid not in accounts.followed  # not before the refresh
        await refresh_and_cycle(accounts)
        assert added.sid in accounts.followed
        assert suspended.sid not in accounts.followed
        registry = exporter.registry
        assert exported(registry, added.sid) == sdk_reading(simulator, added.sid, added.auth_token)
        assert exported(registry, suspended.sid) == {"steps": Counter(), "started": Counter()}
        assert info(registry)[suspended.sid] == (suspended.friendly_name, "suspended")
        assert info(registry)[added.sid] == ("Late customer", "active")
        # Its state was closed, not deleted: back to active, it carries on from it.
        simulator.set_account_status(suspended.sid, "active")
        await refresh_and_cycle(accounts)
        assert exported(registry, suspended.sid) == sdk_reading(
            simulator, suspended.sid, suspended.auth_token
        )

    try:
        run(exporter, scenario)
    finally:
        exporter.close()


def test_a_refused_token_is_counted_and_renewed_without_disturbing_others(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, tmp_path, receiver)
    rotated = simulator.accounts[2]

    async def scenario(accounts: AccountSupervisor) -> None:
        await refresh_and_cycle(accounts)
        simulator.rotate_auth_token(rotated.sid)
        await accounts.cycle()
        reports = accounts.last_reports
        assert not reports[rotated.sid].ok
        assert all(report.ok for sid, report in reports.items() if sid != rotated.sid)
        errors = exporter.registry.get_sample_value(
            "twilio_studio_exporter_account_errors_total",
            {"account_sid": rotated.sid, "reason": "unauthorized"},
        )
        assert errors == 1
        accounts.followed[rotated.sid].retry_at = 0.0  # skip the backoff
        await accounts.cycle()
        assert accounts.last_reports[rotated.sid].ok  # with the token fetched again

    try:
        run(exporter, scenario)
    finally:
        exporter.close()


def test_account_restricts_to_the_named_accounts(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    chosen = simulator.accounts[2].sid
    exporter = make_exporter(simulator, tmp_path, receiver, accounts=chosen)
    try:
        run(exporter, refresh_and_cycle)
        assert exporter.accounts is not None
        assert set(exporter.accounts.followed) == {chosen}
        assert set(info(exporter.registry)) == {chosen}
        started = samples(exporter.registry, "twilio_studio_executions_started_total")
        assert {labels["account_sid"] for labels, value in started if value} == {chosen}
        # Ready although the main account (not named) is never polled.
        assert exporter.readiness().ready, exporter.readiness().reasons
    finally:
        exporter.close()


def test_a_single_account_exporter_carries_the_account_and_its_info(
    simulator: Simulator, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    exporter = make_exporter(simulator, tmp_path, receiver, include_subaccounts="false")
    try:
        run(exporter, refresh_and_cycle)
        assert exporter.accounts is not None
        assert set(exporter.accounts.followed) == {simulator.account_sid}
        assert info(exporter.registry) == {simulator.account_sid: ("Main account", "active")}
        started = samples(exporter.registry, "twilio_studio_executions_started_total")
        assert {labels["account_sid"] for labels, value in started if value} == {
            simulator.account_sid
        }
    finally:
        exporter.close()


def test_push_gives_each_account_its_own_webhook_path(
    receiver: OtlpReceiver, tmp_path: Path
) -> None:
    """Each account's sink posts to ``/webhooks/event-streams/{AccountSid}``, signed with that
    account's token; the token is chosen by the path, so another account's path refuses it,
    and the main account's single-account path keeps working."""
    clock = FakeClock(datetime(2026, 5, 4, 8, 0, 0, tzinfo=UTC))
    config = SimulatorConfig(
        seed=19, history_executions=60, history_days=0.05, subaccounts=2, clock=clock
    )
    with Simulator(config) as sim:
        exporter = make_exporter(sim, tmp_path, receiver, clock=clock, mode="push", lookback="1d")
        exporter_config = exporter.config
        assert exporter.web is not None
        base = f"{exporter.web.url}{exporter_config.webhook_path}"
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()

        async def main() -> None:
            try:
                await exporter.run(stop)
            finally:
                await exporter.aclose_apis()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        pushers = []
        try:
            accounts = exporter.accounts
            assert accounts is not None
            deadline = time.monotonic() + 30
            while len(accounts.followed) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            main_sid, first, second = (a.sid for a in sim.accounts)
            since = clock() - timedelta(days=1)
            # The main account on the single-account path, the subaccounts on their own.
            targets = ((main_sid, base), (first, f"{base}/{first}"), (second, f"{base}/{second}"))
            for sid, url in targets:
                options = DeliveryOptions(seed=3)
                pushers.append(
                    sim.push_events_to(url, options, interval=0.05, since=since, account_sid=sid)
                )
            deadline = time.monotonic() + 60
            problems = ["not compared yet"]
            while problems and time.monotonic() < deadline:
                problems = [
                    f"{a.sid}: {problem}"
                    for a in sim.accounts
                    for problem in metric_mismatches(
                        account_registry(exporter.registry, a.sid), sim.truth(a.sid)
                    )
                ]
                time.sleep(0.3)
            assert problems == []
            for pusher in pushers:
                pusher.stop()
            # A delivery signed with one subaccount's token, posted to another's path: refused.
            misdirected = sim.push_events_to(
                f"{base}/{second}",
                DeliveryOptions(seed=4),
                interval=0.05,
                since=since,
                account_sid=first,
            )
            deadline = time.monotonic() + 10
            while not misdirected.sender.report.statuses.get(403) and time.monotonic() < deadline:
                time.sleep(0.05)
            misdirected.stop()
            assert misdirected.sender.report.statuses.get(403)
        finally:
            loop.call_soon_threadsafe(stop.set)
            thread.join(timeout=30)
            loop.close()
            exporter.close()


def test_backfill_takes_the_account_flags(simulator: Simulator, tmp_path: Path) -> None:
    chosen = [a.sid for a in simulator.accounts[1:]]
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": simulator.account_sid,
        "TWILIO_AUTH_TOKEN": simulator.auth_token,
        "OTEL_SDK_DISABLED": "true",
    }
    done = subprocess.run(
        [
            *exporter_command("backfill"),
            "--include-subaccounts",
            *(flag for sid in chosen for flag in ("--account", sid)),
            "--twilio-base-url",
            simulator.url,
            "--state-dir",
            str(tmp_path),
            "--since",
            "3d",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    started = sum(
        flow["executions_started"]
        for sid in chosen
        for flow in simulator.truth(sid)["flows"].values()
    )
    assert f", {started} executions," in done.stdout
    for sid in chosen:
        with Store.open(subaccount_state_file(tmp_path, sid)) as store:
            assert store.account_sid() == sid


MAIN = "AC" + "1" * 32
SUB = "AC" + "2" * 32


@pytest.mark.parametrize("account", [pytest.param(MAIN, id="main"), pytest.param(SUB, id="sub")])
def test_each_account_opens_its_own_sqlite_file(tmp_path: Path, account: str) -> None:
    config = config_from_mapping(
        {"state_dir": str(tmp_path)}, {"TWILIO_ACCOUNT_SID": MAIN, "TWILIO_AUTH_TOKEN": "t"}
    )
    with open_account_store(config, account) as store:
        assert isinstance(store, Store)
        assert store.path == (
            state_file(tmp_path) if account == MAIN else subaccount_state_file(tmp_path, account)
        )
        assert store.account_sid() == account


def test_with_postgres_each_account_opens_its_own_schema(tmp_path: Path, postgres_url: str) -> None:
    config = config_from_mapping(
        {"state_dir": str(tmp_path)},
        {
            "TWILIO_ACCOUNT_SID": MAIN,
            "TWILIO_AUTH_TOKEN": "t",
            "STUDIO_EXPORTER_STATE_POSTGRES_URL": postgres_url,
        },
    )
    with open_account_store(config, MAIN) as main, open_account_store(config, SUB) as sub:
        assert isinstance(main, PostgresStore)
        assert isinstance(sub, PostgresStore)
        assert main.where.endswith(f"schema {account_schema(MAIN)}")
        assert sub.where.endswith(f"schema {account_schema(SUB)}")
        assert (main.account_sid(), sub.account_sid()) == (MAIN, SUB)
    assert list(tmp_path.iterdir()) == []  # no SQLite file beside
