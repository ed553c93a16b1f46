"""Every fault knob of the simulator does what it says, reproducibly, and is counted."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from studio_exporter.simulator import FakeClock, Faults, Simulator, SimulatorConfig

pytestmark = pytest.mark.integration

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=11, history_executions=200, clock=FakeClock(START))
    with Simulator(config) as running:
        yield running


def client_for(simulator: Simulator) -> httpx.Client:
    return httpx.Client(base_url=simulator.url, auth=(simulator.account_sid, simulator.auth_token))


def flows_status(simulator: Simulator) -> int:
    """One request on its own connection, so that parallel calls are really in flight together."""
    auth = (simulator.account_sid, simulator.auth_token)
    return httpx.get(f"{simulator.url}/v2/Flows", auth=auth).status_code


def step_sids(client: httpx.Client, execution: dict[str, Any]) -> list[str]:
    return [s["sid"] for s in client.get(execution["links"]["steps"]).json()["steps"]]


def steps_path(simulator: Simulator, client: httpx.Client, flow: int = 1) -> str:
    listed = client.get(f"/v2/Flows/{simulator.flow_sids[flow]}/Executions").json()["executions"]
    return str(listed[0]["links"]["steps"])


def test_fail_429_has_code_20429_and_retry_after(simulator: Simulator) -> None:
    simulator.set_faults(Faults(fail_429=1.0, retry_after_seconds=3))
    with client_for(simulator) as client:
        response = client.get("/v2/Flows")
    assert response.status_code == 429
    assert response.json()["code"] == 20429
    assert response.headers["Retry-After"] == "3"
    assert simulator.truth()["faults"]["fail_429"] == 1


def test_concurrency_limit_rejects_requests_beyond_n_in_flight(simulator: Simulator) -> None:
    simulator.set_faults(Faults(max_concurrency=2, latency_ms=300))
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: flows_status(simulator), range(8)))
    truth = simulator.truth()
    assert statuses.count(429) == truth["faults"]["concurrency_429"] > 0
    assert statuses.count(200) >= 1
    assert truth["faults"]["latency"] == statuses.count(200)


def test_latency_is_counted_and_does_not_serialise_requests(simulator: Simulator) -> None:
    simulator.set_faults(Faults(latency_ms=300))
    auth = (simulator.account_sid, simulator.auth_token)
    url = f"{simulator.url}/v2/Flows"
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: httpx.get(url, auth=auth), range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    assert simulator.truth()["faults"]["latency"] == 6
    # A sleeping request does not hold the others back: several were in flight together.
    assert max(int(r.headers["Twilio-Concurrent-Requests"]) for r in responses) > 1


def test_fail_5xx_answers_500_or_503_with_error_body(simulator: Simulator) -> None:
    simulator.set_faults(Faults(fail_5xx=1.0))
    with client_for(simulator) as client:
        responses = [client.get("/v2/Flows", params={"PageSize": size}) for size in range(1, 21)]
    assert {r.status_code for r in responses} == {500, 503}
    faults = simulator.truth()["faults"]
    assert faults["fail_500"] + faults["fail_503"] == 20
    assert all(set(r.json()) == {"code", "message", "more_info", "status"} for r in responses)


def test_reset_closes_the_connection_without_a_response(simulator: Simulator) -> None:
    simulator.set_faults(Faults(reset=1.0))
    with client_for(simulator) as client, pytest.raises(httpx.TransportError):
        client.get("/v2/Flows")
    truth = simulator.truth()
    assert truth["faults"]["reset"] == 1
    assert truth["requests"]["by_status"] == {"reset": 1}


@pytest.mark.parametrize(
    ("kind", "faults"),
    [
        pytest.param("malformed_json", Faults(malformed_json=1.0), id="malformed"),
        pytest.param("truncated_json", Faults(truncated_json=1.0), id="truncated"),
    ],
)
def test_broken_json_is_served_with_200(simulator: Simulator, kind: str, faults: Faults) -> None:
    simulator.set_faults(faults)
    with client_for(simulator) as client:
        response = client.get("/v2/Flows")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert simulator.truth()["faults"][kind] == 1


def test_unexpected_values_change_one_record(simulator: Simulator) -> None:
    with client_for(simulator) as client:
        path = f"/v2/Flows/{simulator.flow_sids[0]}/Executions"
        clean = client.get(path).json()["executions"]
        steps = steps_path(simulator, client)
        clean_steps = client.get(steps).json()["steps"]
        simulator.set_faults(Faults(unexpected_values=1.0))
        odd = client.get(path).json()["executions"]
        odd_steps = client.get(steps).json()["steps"]
    changed = [pair for pair in zip(clean, odd, strict=True) if pair[0] != pair[1]]
    assert len(changed) == 1
    _, record = changed[0]
    assert record["status"] == "paused" or record["date_updated"] is None
    changed_steps = [b for a, b in zip(clean_steps, odd_steps, strict=True) if a != b]
    assert len(changed_steps) == 1
    assert changed_steps[0]["type"] in {"ai-assistant", None}
    assert simulator.truth()["faults"]["unexpected_values"] == 2


def test_out_of_order_shuffles_a_steps_page(simulator: Simulator) -> None:
    with client_for(simulator) as client:
        path = steps_path(simulator, client)
        ordered = client.get(path).json()["steps"]
        simulator.set_faults(Faults(out_of_order=1.0))
        shuffled = [client.get(path).json()["steps"] for _ in range(5)]
    assert all(
        sorted(map(json.dumps, page)) == sorted(map(json.dumps, ordered)) for page in shuffled
    )
    assert any(page != ordered for page in shuffled)
    assert simulator.truth()["faults"]["out_of_order"] == 5


def test_missing_steps_are_stable_gaps_and_counted_as_withheld(simulator: Simulator) -> None:
    simulator.set_faults(Faults(missing_steps=0.3))
    with client_for(simulator) as client:
        flow = simulator.flow_sids[1]
        executions = client.get(f"/v2/Flows/{flow}/Executions", params={"PageSize": 1000}).json()
        first = {e["sid"]: step_sids(client, e) for e in executions["executions"]}
        again = {e["sid"]: step_sids(client, e) for e in executions["executions"]}
        gaps = 0
        for execution in executions["executions"]:
            listed = list(reversed(client.get(execution["links"]["steps"]).json()["steps"]))
            top = [s for s in listed if s["parent_step_sid"] is None]
            assert top[-1]["transitioned_to"] == "Ended"  # the end is never withheld
            gaps += sum(
                a["transitioned_to"] != b["transitioned_from"] for a, b in itertools.pairwise(top)
            )
    assert first == again
    assert gaps > 0
    assert simulator.truth()["steps_withheld"] > 0


def test_missing_end_steps_leave_ended_executions_without_their_end(
    simulator: Simulator,
) -> None:
    simulator.set_faults(Faults(missing_end_steps=0.5))
    with client_for(simulator) as client:
        flow = simulator.flow_sids[1]
        executions = client.get(f"/v2/Flows/{flow}/Executions", params={"PageSize": 1000}).json()
        ended = [e for e in executions["executions"] if e["status"] == "ended"]
        without_end = [
            e
            for e in ended
            if not any(
                s["transitioned_to"] == "Ended" and s["parent_step_sid"] is None
                for s in client.get(e["links"]["steps"]).json()["steps"]
            )
        ]
    assert 0 < len(without_end) < len(ended)
    truth = simulator.truth()
    assert truth["end_steps_withheld"] == truth["steps_withheld"] > 0


def test_fault_decisions_are_reproducible_for_a_seed() -> None:
    outcomes = []
    for _ in range(2):
        config = SimulatorConfig(
            seed=5,
            history_executions=20,
            clock=FakeClock(START),
            faults=Faults(fail_5xx=0.5, fail_429=0.2),
        )
        with Simulator(config) as simulator, client_for(simulator) as client:
            outcomes.append(
                [
                    client.get("/v2/Flows", params={"PageSize": n % 7 + 1}).status_code
                    for n in range(40)
                ]
            )
    assert outcomes[0] == outcomes[1]
    assert set(outcomes[0]) == {200, 429, 500, 503}


def test_retrying_the_same_request_rolls_again(simulator: Simulator) -> None:
    simulator.set_faults(Faults(fail_5xx=0.5))
    with client_for(simulator) as client:
        statuses = {client.get("/v2/Flows").status_code for _ in range(30)}
    assert 200 in statuses
    assert statuses & {500, 503}


def test_requests_are_counted_by_operation_and_status(simulator: Simulator) -> None:
    with client_for(simulator) as client:
        client.get("/v2/Flows")
        client.get(f"/v2/Flows/{simulator.flow_sids[0]}")
        client.get("/v2/Flows/FW" + "0" * 32)
        steps = steps_path(simulator, client)
        client.get(steps)
    requests: dict[str, Any] = simulator.truth()["requests"]
    assert requests["by_operation"] == {
        "FetchFlow": 2,
        "ListExecution": 1,
        "ListExecutionStep": 1,
        "ListFlow": 1,
    }
    assert requests["by_status"] == {"200": 4, "404": 1}
