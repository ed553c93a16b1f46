"""The simulator behaves like Studio's read API over real HTTP: paging, auth, errors, time."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException

from studio_exporter.simulator import FakeClock, Faults, Simulator, SimulatorConfig
from studio_exporter.simulator.clock import iso
from studio_exporter.simulator.flows import WIDGET_EVENTS
from tests.twilio_sdk import twilio_client

pytestmark = pytest.mark.integration

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
ERROR_KEYS = {"code", "message", "more_info", "status"}


def make_simulator(**overrides: Any) -> tuple[Simulator, FakeClock]:
    clock = FakeClock(START)
    settings: dict[str, Any] = {"seed": 7, "history_executions": 300, "history_days": 2.0}
    settings.update(overrides)
    return Simulator(SimulatorConfig(clock=clock, **settings)), clock


@pytest.fixture
def running() -> Iterator[tuple[Simulator, FakeClock, httpx.Client]]:
    simulator, clock = make_simulator()
    url = simulator.start()
    with httpx.Client(base_url=url, auth=(simulator.account_sid, simulator.auth_token)) as client:
        yield simulator, clock, client
    simulator.stop()


def all_pages(client: httpx.Client, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        records.extend(body[key])
        following = body["meta"]["next_page_url"]
        if following is None:
            return records
        response = client.get(following)


def executions(client: httpx.Client, flow: str, **params: Any) -> list[dict[str, Any]]:
    return all_pages(client, f"/v2/Flows/{flow}/Executions", "executions", PageSize=100, **params)


def steps(client: httpx.Client, execution: dict[str, Any]) -> list[dict[str, Any]]:
    return all_pages(client, execution["links"]["steps"], "steps", PageSize=1000)


def test_flows_are_listed_and_fetched_with_real_definitions(running: Any) -> None:
    simulator, _, client = running
    flows = all_pages(client, "/v2/Flows", "flows")
    assert {f["sid"] for f in flows} == set(simulator.flow_sids)
    names = {f["friendly_name"] for f in flows}
    subflow_sid = next(f["sid"] for f in flows if "subflow" in f["friendly_name"])
    assert len(names) == 5
    for flow in flows:
        fetched = client.get(f"/v2/Flows/{flow['sid']}").json()
        definition = fetched["definition"]
        assert definition["initial_state"] == "Trigger"
        states = {s["name"]: s for s in definition["states"]}
        for state in definition["states"]:
            assert [t["event"] for t in state["transitions"]] == sorted(
                (t["event"] for t in state["transitions"]),
                key=[*WIDGET_EVENTS[state["type"]]].index,
            )
            for transition in state["transitions"]:
                assert transition.get("next") is None or transition["next"] in states
            if state["type"] == "run-subflow":
                assert state["properties"]["flow_sid"] == subflow_sid
    types = {
        s["type"]
        for f in flows
        for s in client.get(f"/v2/Flows/{f['sid']}").json()["definition"]["states"]
    }
    assert {
        "gather-input-on-call",
        "split-based-on",
        "say-play",
        "connect-call-to",
        "enqueue-call",
        "send-and-wait-for-reply",
        "set-variables",
        "make-http-request",
        "send-message",
        "run-subflow",
    } <= types


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(None, id="no-credentials"),
        pytest.param(("AC51a751a751a751a751a751a751a751a7", "wrong"), id="wrong-token"),
        pytest.param(("AC" + "0" * 32, "0badc0de" * 4), id="other-account"),
    ],
)
def test_bad_credentials_get_401_with_twilio_error(running: Any, auth: Any) -> None:
    simulator, _, _ = running
    response = httpx.get(f"{simulator.url}/v2/Flows", auth=auth)
    assert response.status_code == 401
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["code"] == 20003


def test_api_key_and_secret_are_accepted() -> None:
    simulator, _ = make_simulator(
        history_executions=1, api_key_sid="SK" + "1" * 32, api_key_secret="secret"
    )
    with simulator:
        response = httpx.get(f"{simulator.url}/v2/Flows", auth=("SK" + "1" * 32, "secret"))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/v2/Flows/FWnothex", 400, id="malformed-flow"),
        pytest.param("/v2/Flows/FW" + "0" * 32, 404, id="unknown-flow"),
        pytest.param("/v2/Flows/{flow}/Executions/FN123", 400, id="malformed-execution"),
        pytest.param("/v2/Flows/{flow}/Executions/FN" + "0" * 32, 404, id="unknown-execution"),
        pytest.param("/v2/Flows/{flow}/Executions/FN" + "0" * 32 + "/Steps", 404, id="steps-404"),
        pytest.param("/v2/Flows/{flow}/Executions/{execution}/Steps/FT" + "0" * 32, 404, id="step"),
        pytest.param("/v2/Flows/{flow}/Executions/{execution}/Steps/XX", 400, id="bad-step"),
        pytest.param("/v2/Nothing", 404, id="unknown-path"),
        pytest.param("/v2/Flows?PageSize=1001", 400, id="page-size-too-large"),
        pytest.param("/v2/Flows?PageSize=0", 400, id="page-size-zero"),
        pytest.param("/v2/Flows?PageSize=ten", 400, id="page-size-text"),
        pytest.param("/v2/Flows?PageToken=garbage", 400, id="bad-token"),
        pytest.param("/v2/Flows/{flow}/Executions?status=paused", 400, id="bad-status"),
        pytest.param("/v2/Flows/{flow}/Executions?DateCreatedFrom=yesterday", 400, id="bad-date"),
    ],
)
def test_bad_requests_get_twilio_errors_never_500(running: Any, path: str, status: int) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    execution = executions(client, flow)[0]["sid"]
    response = client.get(path.format(flow=flow, execution=execution))
    assert response.status_code == status
    assert set(response.json()) == ERROR_KEYS
    assert response.json()["status"] == status


def test_page_size_over_1000_is_error_20007(running: Any) -> None:
    _, _, client = running
    assert client.get("/v2/Flows", params={"PageSize": 1001}).json()["code"] == 20007
    assert client.get("/v2/Flows", params={"PageSize": 1000}).status_code == 200


def test_paging_is_newest_first_with_absolute_urls_from_the_host(running: Any) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    first = client.get(f"/v2/Flows/{flow}/Executions", headers={"Host": "studio.example:8443"})
    meta = first.json()["meta"]
    assert meta["page_size"] == 50
    assert meta["page"] == 0
    assert meta["key"] == "executions"
    assert meta["previous_page_url"] is None
    for name in ("url", "first_page_url", "next_page_url"):
        assert meta[name].startswith(f"http://studio.example:8443/v2/Flows/{flow}/Executions?")
    listed = executions(client, flow)
    created = [e["date_created"] for e in listed]
    assert created == sorted(created, reverse=True)
    assert len({e["sid"] for e in listed}) == len(listed) > 50
    assert sum(f["executions_started"] for f in simulator.truth()["flows"].values()) == 300


def test_previous_page_url_leads_back(running: Any) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    page0 = client.get(f"/v2/Flows/{flow}/Executions", params={"PageSize": 20}).json()
    page1 = client.get(page0["meta"]["next_page_url"]).json()
    assert page1["meta"]["page"] == 1
    back = client.get(page1["meta"]["previous_page_url"]).json()
    assert [e["sid"] for e in back["executions"]] == [e["sid"] for e in page0["executions"]]


def test_page_without_token_is_an_offset(running: Any) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    listed = executions(client, flow)
    page2 = client.get(f"/v2/Flows/{flow}/Executions", params={"PageSize": 10, "Page": 2})
    assert [e["sid"] for e in page2.json()["executions"]] == [e["sid"] for e in listed[20:30]]


def test_date_and_status_filters(running: Any) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    listed = executions(client, flow)
    middle = listed[len(listed) // 2]["date_created"]
    newer = executions(client, flow, DateCreatedFrom=middle)
    older = executions(client, flow, DateCreatedTo=middle)
    assert all(e["date_created"] >= middle for e in newer)
    assert all(e["date_created"] <= middle for e in older)
    boundary = sum(1 for e in listed if e["date_created"] == middle)
    assert len(newer) + len(older) == len(listed) + boundary  # both bounds are inclusive
    assert len(executions(client, flow, status="ended")) == len(listed)
    assert executions(client, flow, status="active") == []


def test_executions_and_steps_look_like_studio(running: Any) -> None:
    simulator, _, client = running
    subflow = next(
        s
        for s in simulator.flow_sids
        if "Identity" in client.get(f"/v2/Flows/{s}").json()["friendly_name"]
    )
    for flow in simulator.flow_sids:
        for execution in executions(client, flow)[:40]:
            assert execution["status"] == "ended"
            assert execution["contact_channel_address"].startswith("+1555")
            assert TIMESTAMP.match(execution["date_created"])
            listed = steps(client, execution)
            assert [s["date_created"] for s in listed] == sorted(
                (s["date_created"] for s in listed), reverse=True
            )
            by_sid = {s["sid"]: s for s in listed}
            top = [s for s in reversed(listed) if s["parent_step_sid"] is None]
            assert top[0]["transitioned_from"] == "Trigger"
            assert top[-1]["transitioned_to"] == "Ended"
            assert execution["date_updated"] == top[-1]["date_created"]
            for before, after in itertools.pairwise(top):
                assert before["transitioned_to"] == after["transitioned_from"]
            for step in listed:
                assert TIMESTAMP.match(step["date_created"])
                assert step["date_updated"] is None
                assert step["execution_sid"] == execution["sid"]
                if step["parent_step_sid"] is not None:
                    parent = by_sid[step["parent_step_sid"]]
                    assert parent["flow_sid"] == flow
                    assert step["flow_sid"] == subflow
                    assert step["date_created"] >= parent["date_created"]
                    assert parent["transitioned_to"] == "verify_identity"
                fetched = client.get(step["url"]).json()
                assert fetched == step
                context = client.get(step["links"]["step_context"]).json()
                assert context["step_sid"] == step["sid"]
            if flow == simulator.flow_sids[1]:  # the survey: replies carry fake personal data
                context = client.get(execution["links"]["execution_context"]).json()["context"]
                assert (
                    context["contact"]["channel"]["address"] == execution["contact_channel_address"]
                )
            break


@pytest.mark.parametrize("reading", ["into", "out"])
def test_subflow_steps_name_the_step_into_or_out_of_run_subflow(reading: str) -> None:
    simulator, _ = make_simulator(subflow_parent=reading)
    url = simulator.start()
    support = simulator.flow_sids[3]
    subflow = simulator.flow_sids[4]
    checked = 0
    try:
        with httpx.Client(base_url=url, auth=(simulator.account_sid, simulator.auth_token)) as c:
            for execution in executions(c, support):
                listed = list(reversed(steps(c, execution)))
                into = [s for s in listed if s["transitioned_to"] == "verify_identity"]
                if not into:
                    continue
                leave = next(s for s in listed if s["transitioned_from"] == "verify_identity")
                named = into[0] if reading == "into" else leave
                nested = [s for s in listed if s["parent_step_sid"] == named["sid"]]
                assert nested[0]["transitioned_from"] == "Trigger"
                assert nested[0]["name"] == "incomingParent"
                assert nested[-1]["transitioned_to"] == "Ended"
                assert all(s["flow_sid"] == subflow for s in nested)
                assert leave["name"] in {"completed", "failed"}
                assert into[0]["date_created"] <= nested[0]["date_created"]
                assert leave["date_created"] >= nested[-1]["date_created"]
                assert listed.index(leave) > listed.index(nested[-1])
                checked += 1
    finally:
        simulator.stop()
    assert checked > 10


def test_subflow_parent_must_be_a_known_reading() -> None:
    with pytest.raises(ValueError, match="subflow_parent must be one of into, out"):
        SimulatorConfig(subflow_parent="both")


def test_live_traffic_follows_the_clock() -> None:
    simulator, clock = make_simulator(history_executions=0, rate=3.0, speed=60.0)
    with simulator, httpx.Client(auth=(simulator.account_sid, simulator.auth_token)) as client:
        assert sum(len(executions_at(client, simulator, f)) for f in simulator.flow_sids) == 0
        clock.advance(5)
        created = [e for f in simulator.flow_sids for e in executions_at(client, simulator, f)]
        assert len(created) > 0
        truth = simulator.truth()
        assert sum(f["executions_active"] for f in truth["flows"].values()) > 0
        active = next(e for e in created if e["status"] == "active")
        before = len(steps(client, active))
        clock.advance(400)  # the longest path, divided by the speed, is about 200 s
        after = client.get(active["url"]).json()
        assert after["status"] == "ended"
        assert len(steps(client, after)) > before


def executions_at(client: httpx.Client, simulator: Simulator, flow: str) -> list[dict[str, Any]]:
    return all_pages(client, f"{simulator.url}/v2/Flows/{flow}/Executions", "executions")


def test_retention_drops_executions_older_than_30_days(running: Any) -> None:
    simulator, clock, client = running
    flow = simulator.flow_sids[0]
    listed = executions(client, flow)
    oldest = listed[-1]
    cutoff = datetime.strptime(oldest["date_created"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    clock.set(cutoff + timedelta(days=30, seconds=1))
    assert client.get(oldest["url"]).status_code == 404
    remaining = executions(client, flow)
    assert oldest["sid"] not in {e["sid"] for e in remaining}
    assert len(remaining) < len(listed)


def test_same_seed_same_responses_other_seed_differs() -> None:
    bodies = []
    for seed in (3, 3, 4):
        simulator, _ = make_simulator(seed=seed, history_executions=50)
        with simulator, httpx.Client(auth=(simulator.account_sid, simulator.auth_token)) as client:
            flow = simulator.flow_sids[2]
            listed = executions_at(client, simulator, flow)
            body: list[tuple[str, ...]] = [(e["sid"], e["date_created"]) for e in listed]
            body += [
                (s["sid"], s["name"], s["date_created"]) for e in listed for s in steps(client, e)
            ]
            bodies.append(body)
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_set_faults_at_runtime(running: Any) -> None:
    simulator, _, client = running
    simulator.set_faults(Faults(fail_429=1.0))
    assert client.get("/v2/Flows").status_code == 429
    simulator.set_faults(Faults())
    assert client.get("/v2/Flows").status_code == 200


def test_twilio_sdk_deletes_an_execution_then_gets_404(running: Any) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    doomed, kept = executions(client, flow)[:2]
    sdk = twilio_client(simulator)
    assert sdk.studio.v2.flows(flow).executions(doomed["sid"]).delete() is True
    for path in (doomed["url"], doomed["links"]["steps"], doomed["links"]["execution_context"]):
        response = client.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == ERROR_KEYS
    with pytest.raises(TwilioRestException) as again:
        sdk.studio.v2.flows(flow).executions(doomed["sid"]).delete()
    assert again.value.status == 404
    listed = {execution["sid"] for execution in executions(client, flow)}
    assert doomed["sid"] not in listed
    assert kept["sid"] in listed
    truth = simulator.truth()
    assert truth["executions_deleted"] == 1
    assert truth["flows"][flow]["executions_started"] == len(listed)
    counts = truth["requests"]["by_operation"]
    assert counts["DeleteExecution"] == 2


def test_twilio_sdk_deletes_a_flow_with_its_executions(running: Any) -> None:
    simulator, _, client = running
    flow = simulator.flow_sids[0]
    execution = executions(client, flow)[0]
    sdk = twilio_client(simulator)
    assert sdk.studio.v2.flows(flow).delete() is True
    for path in (f"/v2/Flows/{flow}", execution["url"], f"/v2/Flows/{flow}/Executions"):
        assert client.get(path).status_code == 404, path
    assert flow not in {listed["sid"] for listed in all_pages(client, "/v2/Flows", "flows")}
    with pytest.raises(TwilioRestException) as again:
        sdk.studio.v2.flows(flow).delete()
    assert again.value.status == 404
    truth = simulator.truth()
    assert truth["flows"][flow]["deleted"] is True
    assert truth["flows"][flow]["executions_started"] == 0
    assert not any(t["flow_sid"] == flow and t["from"] == "Trigger" for t in truth["transitions"])


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/v2/Flows/FWnot-a-sid", 400, id="flow-sid"),
        pytest.param(f"/v2/Flows/FW{'0' * 32}", 404, id="unknown-flow"),
        pytest.param(f"/v2/Flows/FW{'0' * 32}/Executions/FN{'0' * 32}", 404, id="unknown-exec"),
        pytest.param("/v2/Flows", 405, id="collection"),
    ],
)
def test_delete_answers_like_studio(running: Any, path: str, status: int) -> None:
    _, _, client = running
    response = client.delete(path)
    assert response.status_code == status
    assert set(response.json()) == ERROR_KEYS


@pytest.mark.parametrize(
    "epoch",
    [
        pytest.param(0, id="epoch"),
        pytest.param(951_782_400, id="leap-day-2000"),
        pytest.param(1_767_225_599, id="last-second-of-2025"),
        pytest.param(1_767_225_600, id="new-year-2026"),
        pytest.param(4_102_444_799, id="end-of-2099"),
    ],
)
def test_timestamps_are_twilios_whole_second_utc_format(epoch: int) -> None:
    expected = datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert iso(epoch) == expected
