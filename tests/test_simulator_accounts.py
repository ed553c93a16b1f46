"""Subaccounts in the simulator, read through Twilio's own SDK: who sees which account and flows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from studio_exporter.simulator import FakeClock, Simulator, SimulatorConfig
from studio_exporter.simulator.accounts import account_flows, rfc2822
from tests.twilio_sdk import sdk_client

pytestmark = pytest.mark.integration

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
SUBACCOUNTS = 5


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=3,
        history_executions=40,
        history_days=1.0,
        clock=FakeClock(START),
        subaccounts=SUBACCOUNTS,
        api_key_sid="SK" + "0" * 32,
        api_key_secret="key-secret",
    )
    with Simulator(config) as running:
        yield running


def test_main_credentials_list_every_account_over_pages(simulator: Simulator) -> None:
    client = sdk_client(simulator.url, simulator.account_sid, simulator.auth_token)
    listed = client.api.v2010.accounts.list(page_size=2)  # 3 pages, followed by the SDK
    assert sorted(a.sid for a in listed) == sorted(a.sid for a in simulator.accounts)
    assert len(listed) == SUBACCOUNTS + 1
    by_sid = {a.sid: a for a in listed}
    for account in simulator.accounts:
        seen = by_sid[account.sid]
        assert seen.auth_token == account.auth_token
        assert seen.owner_account_sid == simulator.account_sid
        assert seen.status == "active"
        assert seen.friendly_name == account.friendly_name


def test_the_api_key_of_the_main_account_lists_them_too(simulator: Simulator) -> None:
    client = sdk_client(simulator.url, "SK" + "0" * 32, "key-secret")
    client.account_sid = simulator.account_sid
    assert len(client.api.v2010.accounts.list()) == SUBACCOUNTS + 1


def test_every_subaccount_has_its_own_token_seed_and_flows(simulator: Simulator) -> None:
    accounts = simulator.accounts
    assert len({a.auth_token for a in accounts}) == len(accounts)
    assert len({a.traffic.config.seed for a in accounts}) == len(accounts)
    flow_sets = [frozenset(a.traffic.flow_sids) for a in accounts]
    assert all(not (one & other) for i, one in enumerate(flow_sets) for other in flow_sets[:i])
    keys = {tuple(f.key for f in account_flows(3, number)) for number in range(1, 40)}
    assert len(keys) > 1  # the default flows, varied per account
    for number in range(1, 40):
        flows = account_flows(3, number)
        runs_subflow = any(w.subflow for f in flows for w in f.widgets)
        assert runs_subflow == any(f.share == 0 for f in flows)


def test_a_subaccount_sees_only_itself_and_its_own_flows(simulator: Simulator) -> None:
    main, sub, other = simulator.accounts[0], simulator.accounts[1], simulator.accounts[2]
    client = sdk_client(simulator.url, sub.sid, sub.auth_token)
    assert [a.sid for a in client.api.v2010.accounts.list()] == [sub.sid]
    assert client.api.v2010.accounts(sub.sid).fetch().sid == sub.sid
    for hidden in (main.sid, other.sid):
        with pytest.raises(TwilioRestException) as caught:
            client.api.v2010.accounts(hidden).fetch()
        assert caught.value.status == 404
    flows = client.studio.v2.flows.list()
    assert {f.sid for f in flows} == set(sub.traffic.flow_sids)
    assert {f.account_sid for f in flows} == {sub.sid}
    flow = next(f for f in flows if sub.traffic.by_flow[sub.traffic.flow_by_sid[f.sid]])
    executions = client.studio.v2.flows(flow.sid).executions.list()
    assert executions
    assert {e.account_sid for e in executions} == {sub.sid}
    steps = client.studio.v2.flows(flow.sid).executions(executions[0].sid).steps.list()
    assert steps
    assert {s.account_sid for s in steps} == {sub.sid}


def test_the_main_credentials_do_not_reach_a_subaccounts_studio(simulator: Simulator) -> None:
    sub = simulator.accounts[1]
    client = sdk_client(simulator.url, simulator.account_sid, simulator.auth_token)
    with pytest.raises(TwilioRestException) as caught:
        client.studio.v2.flows(sub.traffic.flow_sids[0]).fetch()
    assert caught.value.status == 404
    assert {f.sid for f in client.studio.v2.flows.list()} == set(simulator.flow_sids)


def test_wrong_or_foreign_credentials_are_refused(simulator: Simulator) -> None:
    sub, other = simulator.accounts[1], simulator.accounts[2]
    with httpx.Client(base_url=simulator.url) as http:
        wrong = http.get("/2010-04-01/Accounts.json", auth=(sub.sid, other.auth_token))
        assert (wrong.status_code, wrong.json()["code"]) == (401, 20003)
        assert http.get("/v2/Flows", auth=(sub.sid, simulator.auth_token)).status_code == 401


@pytest.mark.parametrize("status", ["suspended", "closed"])
def test_status_filter_and_inactive_accounts(simulator: Simulator, status: str) -> None:
    sub = simulator.accounts[3]
    simulator.set_account_status(sub.sid, status)
    main = sdk_client(simulator.url, simulator.account_sid, simulator.auth_token)
    assert [a.sid for a in main.api.v2010.accounts.list(status=status)] == [sub.sid]
    active = main.api.v2010.accounts.list(status="active")
    assert sub.sid not in {a.sid for a in active}
    assert len(active) == SUBACCOUNTS
    with httpx.Client(base_url=simulator.url, auth=(sub.sid, sub.auth_token)) as http:
        refused = http.get("/v2/Flows")
        assert (refused.status_code, refused.json()["code"]) == (401, 20005)
    simulator.set_account_status(sub.sid, "active")
    own = sdk_client(simulator.url, sub.sid, sub.auth_token)
    assert own.api.v2010.accounts(sub.sid).fetch().status == "active"


def test_a_bad_status_filter_and_page_size_are_400(simulator: Simulator) -> None:
    auth = (simulator.account_sid, simulator.auth_token)
    with httpx.Client(base_url=simulator.url, auth=auth) as http:
        assert http.get("/2010-04-01/Accounts.json", params={"Status": "gone"}).status_code == 400
        too_big = http.get("/2010-04-01/Accounts.json", params={"PageSize": 1001})
        assert (too_big.status_code, too_big.json()["code"]) == (400, 20007)
        assert http.post("/2010-04-01/Accounts.json").status_code == 405


def test_a_subaccount_added_while_running_is_listed_and_served(simulator: Simulator) -> None:
    added = simulator.add_subaccount("Late customer")
    main = sdk_client(simulator.url, simulator.account_sid, simulator.auth_token)
    assert added.sid in {a.sid for a in main.api.v2010.accounts.list()}
    own = sdk_client(simulator.url, added.sid, added.auth_token)
    assert {f.sid for f in own.studio.v2.flows.list()} == set(added.traffic.flow_sids)


def test_truth_is_per_account(simulator: Simulator) -> None:
    sub = simulator.accounts[2]
    with httpx.Client(base_url=simulator.url) as http:
        own = http.get("/_simulator/truth", auth=(sub.sid, sub.auth_token)).json()
        assert own["account_sid"] == sub.sid
        assert set(own["flows"]) == set(sub.traffic.flow_sids)
        main_auth = (simulator.account_sid, simulator.auth_token)
        asked = http.get("/_simulator/truth", params={"AccountSid": sub.sid}, auth=main_auth)
        assert asked.json()["flows"] == own["flows"]
        assert http.get("/_simulator/truth", auth=main_auth).json()["account_sid"] == (
            simulator.account_sid
        )
        foreign = http.get(
            "/_simulator/truth",
            params={"AccountSid": simulator.account_sid},
            auth=(sub.sid, sub.auth_token),
        )
        assert foreign.json()["account_sid"] == sub.sid  # a subaccount cannot ask for others
    assert simulator.truth(sub.sid)["flows"] == own["flows"]
    assert sum(f["executions_started"] for f in own["flows"].values()) == 40


def test_requests_to_v2010_are_counted_with_the_caller(simulator: Simulator) -> None:
    sub = simulator.accounts[1]
    sdk_client(simulator.url, sub.sid, sub.auth_token).api.v2010.accounts.list()
    assert simulator.truth(sub.sid)["requests"]["by_operation"] == {"ListAccount": 1}


def test_rfc2822_is_v2010s_format() -> None:
    assert rfc2822(1438286400) == "Thu, 30 Jul 2015 20:00:00 +0000"


def test_a_rotated_token_replaces_the_old_one(simulator: Simulator) -> None:
    sub = simulator.accounts[4]
    old = sub.auth_token
    new = simulator.rotate_auth_token(sub.sid)
    assert new != old
    with httpx.Client(base_url=simulator.url) as http:
        assert http.get("/v2/Flows", auth=(sub.sid, old)).status_code == 401
        assert http.get("/v2/Flows", auth=(sub.sid, new)).status_code == 200
    main = sdk_client(simulator.url, simulator.account_sid, simulator.auth_token)
    assert main.api.v2010.accounts(sub.sid).fetch().auth_token == new
