"""Tests for accounts_api: the v2010 Accounts list and fetch over real HTTP to the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from studio_exporter.config import Credentials, Secret
from studio_exporter.simulator import Simulator, SimulatorConfig
from studio_exporter.sources.accounts_api import Account, AccountsApi
from studio_exporter.sources.studio_api import ApiError
from studio_exporter.sources.throttle import RetryPolicy

pytestmark = pytest.mark.integration

SUBACCOUNTS = 4


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def api_request(self, operation: str, code: str, seconds: float) -> None:
        self.requests.append((operation, code))

    def rate_limit_wait(self, seconds: float) -> None:
        pass

    def set_concurrency_limit(self, limit: int) -> None:
        pass


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=9, history_executions=5, subaccounts=SUBACCOUNTS)
    with Simulator(config) as sim:
        yield sim


def make_api(sim: Simulator, sid: str, token: str, recorder: Recorder | None = None) -> AccountsApi:
    return AccountsApi(
        sim.url,
        Credentials(sid, sid, Secret(token)),
        health=recorder,
        retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02),
    )


def run_list(api: AccountsApi, **kwargs: object) -> list[Account]:
    async def scenario() -> list[Account]:
        try:
            return await api.list_accounts(**kwargs)  # type: ignore[arg-type]
        finally:
            await api.aclose()

    return asyncio.run(scenario())


def test_the_main_credentials_list_every_account_with_its_token(simulator: Simulator) -> None:
    recorder = Recorder()
    api = make_api(simulator, simulator.account_sid, simulator.auth_token, recorder)
    listed = run_list(api, page_size=2)
    assert sorted(a.sid for a in listed) == sorted(a.sid for a in simulator.accounts)
    tokens = {a.sid: a.auth_token for a in listed}
    for account in simulator.accounts:
        token = tokens[account.sid]
        assert token is not None
        assert token.reveal() == account.auth_token
    assert recorder.requests == [("ListAccount", "200")] * 3  # 5 accounts, 2 a page
    assert all(a.is_active and a.owner_account_sid == simulator.account_sid for a in listed)


def test_an_account_never_shows_its_token(simulator: Simulator) -> None:
    api = make_api(simulator, simulator.account_sid, simulator.auth_token)
    for account in run_list(api):
        assert account.auth_token is not None
        assert account.auth_token.reveal() not in repr(account)
        assert account.auth_token.reveal() not in str(account)


def test_a_subaccount_lists_itself_and_the_status_filter_applies(simulator: Simulator) -> None:
    sub = simulator.accounts[1]
    assert [a.sid for a in run_list(make_api(simulator, sub.sid, sub.auth_token))] == [sub.sid]
    simulator.set_account_status(sub.sid, "suspended")
    try:
        main = make_api(simulator, simulator.account_sid, simulator.auth_token)
        suspended = run_list(main, status="suspended")
        assert [(a.sid, a.status, a.is_active) for a in suspended] == [
            (sub.sid, "suspended", False)
        ]
    finally:
        simulator.set_account_status(sub.sid, "active")


def test_fetch_and_its_failures(simulator: Simulator) -> None:
    sub, other = simulator.accounts[1], simulator.accounts[2]

    async def scenario() -> None:
        main = make_api(simulator, simulator.account_sid, simulator.auth_token)
        own = make_api(simulator, sub.sid, sub.auth_token)
        wrong = make_api(simulator, sub.sid, "not-the-token")
        try:
            fetched = await main.fetch_account(other.sid)
            assert (fetched.sid, fetched.friendly_name) == (other.sid, other.friendly_name)
            with pytest.raises(ApiError) as hidden:
                await own.fetch_account(other.sid)
            assert hidden.value.reason == "not_found"
            with pytest.raises(ApiError) as refused:
                await wrong.fetch_account(sub.sid)
            assert (refused.value.reason, refused.value.status) == ("unauthorized", 401)
            with pytest.raises(ApiError) as invalid:
                await main.fetch_account("AC123")
            assert invalid.value.reason == "invalid_sid"
        finally:
            for api in (main, own, wrong):
                await api.aclose()

    asyncio.run(scenario())
