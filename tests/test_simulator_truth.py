"""The simulator's ground truth equals what a client sums over the steps it reads back."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from studio_exporter.simulator import FakeClock, Faults, Simulator, SimulatorConfig

pytestmark = pytest.mark.integration

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def seconds(timestamp: str) -> int:
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(parsed.timestamp())


def read_everything(simulator: Simulator) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every execution with its steps (oldest first), as a client pages through them."""
    result = []
    auth = (simulator.account_sid, simulator.auth_token)
    with httpx.Client(base_url=simulator.url, auth=auth) as client:
        for flow in simulator.flow_sids:
            url: str | None = f"/v2/Flows/{flow}/Executions?PageSize=200"
            while url is not None:
                page = client.get(url).json()
                for execution in page["executions"]:
                    steps = client.get(execution["links"]["steps"], params={"PageSize": 1000})
                    result.append((execution, list(reversed(steps.json()["steps"]))))
                url = page["meta"]["next_page_url"]
    return result


def subflow_start(steps: list[dict[str, Any]], parent_sid: str, reading: str) -> int | None:
    """When the run-subflow visit that the subflow named ``parent_sid`` ran in began.

    Under the "into" reading the parent step entered it; under "out" the parent step left it,
    and it began with the step before that one in its chain, if that step leads into it.
    """
    by_sid = {s["sid"]: s for s in steps}
    parent = by_sid.get(parent_sid)
    if parent is None:
        return None
    if reading == "into":
        return seconds(parent["date_created"])
    chain = [s for s in steps if s["parent_step_sid"] == parent["parent_step_sid"]]
    index = chain.index(parent)
    before = chain[index - 1] if index else None
    if before is None or before["transitioned_to"] != parent["transitioned_from"]:
        return None
    return seconds(before["date_created"])


def recount(
    simulator: Simulator, reading: str = "into", ambiguous: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The truth, recomputed from API data alone with the exporter's visit rule.

    The visits of ``ambiguous`` executions (order within a second not knowable) are left out,
    as the truth leaves them out.
    """
    flows: dict[str, Any] = {}
    transitions: Counter[tuple[str, str, str, str]] = Counter()
    visits: Counter[tuple[str, str]] = Counter()
    durations: Counter[tuple[str, str]] = Counter()
    for execution, steps in read_everything(simulator):
        summary = flows.setdefault(
            execution["flow_sid"], {"started": 0, "ended": 0, "duration": 0, "final": Counter()}
        )
        summary["started"] += 1
        by_sid = {s["sid"]: s for s in steps}
        last_in_chain: dict[str | None, dict[str, Any]] = {}
        for step in steps:
            edge = (step["transitioned_from"], step["transitioned_to"], step["name"])
            transitions[(step["flow_sid"], *edge)] += 1
            chain = step["parent_step_sid"]
            before = last_in_chain.get(chain)
            entered: int | None = None
            if before is not None:
                if before["transitioned_to"] == step["transitioned_from"]:
                    entered = seconds(before["date_created"])
            elif step["transitioned_from"] == "Trigger":
                if chain is None:
                    entered = seconds(execution["date_created"])
                elif chain in by_sid:
                    entered = subflow_start(steps, chain, reading)
            if entered is not None and execution["sid"] not in ambiguous:
                key = (step["flow_sid"], step["transitioned_from"])
                visits[key] += 1
                durations[key] += seconds(step["date_created"]) - entered
            last_in_chain[chain] = step
        if execution["status"] == "ended":
            end = last_in_chain[None]
            summary["ended"] += 1
            summary["duration"] += seconds(end["date_created"]) - seconds(execution["date_created"])
            summary["final"][end["transitioned_from"]] += 1
    return {
        "flows": flows,
        "transitions": transitions,
        "visits": visits,
        "durations": durations,
    }


def assert_truth_matches(simulator: Simulator) -> dict[str, Any]:
    truth = simulator.truth()
    seen = recount(
        simulator,
        simulator.config.subflow_parent,
        frozenset(truth["executions_order_ambiguous"]),
    )
    for sid, flow in truth["flows"].items():
        counted = seen["flows"].get(sid, {"started": 0, "ended": 0, "duration": 0, "final": {}})
        assert flow["executions_started"] == counted["started"]
        assert flow["executions_ended"] == counted["ended"]
        assert flow["executions_active"] == counted["started"] - counted["ended"]
        assert flow["execution_duration_seconds_sum"] == counted["duration"]
        assert flow["final_widgets"] == dict(counted["final"])
        for widget, numbers in flow["widgets"].items():
            assert numbers["visits"] == seen["visits"][(sid, widget)], (sid, widget)
            assert numbers["duration_seconds_sum"] == seen["durations"][(sid, widget)]
    truth_transitions = {
        (t["flow_sid"], t["from"], t["to"], t["event"]): t["count"] for t in truth["transitions"]
    }
    assert truth_transitions == dict(seen["transitions"])
    assert truth["steps_served"] == sum(seen["transitions"].values())
    return truth


@pytest.mark.parametrize("reading", ["into", "out"])
@pytest.mark.parametrize(
    "faults",
    [
        pytest.param(Faults(), id="all-steps"),
        pytest.param(Faults(missing_steps=0.1), id="missing-steps"),
    ],
)
def test_truth_of_history_equals_sums_over_served_steps(faults: Faults, reading: str) -> None:
    config = SimulatorConfig(
        seed=2,
        history_executions=400,
        clock=FakeClock(START),
        faults=faults,
        subflow_parent=reading,
    )
    with Simulator(config) as simulator:
        truth = assert_truth_matches(simulator)
    assert sum(f["executions_ended"] for f in truth["flows"].values()) == 400
    assert (truth["steps_withheld"] > 0) == (faults.missing_steps > 0)
    # Only a hole leaves an order within a second open; most executions stay comparable.
    ambiguous = len(truth["executions_order_ambiguous"])
    assert (ambiguous > 0) == (faults.missing_steps > 0)
    assert ambiguous < 400 // 5
    subflow = truth["flows"][simulator.flow_sids[4]]
    assert subflow["executions_started"] == 0
    assert subflow["widgets"]["ask_pin"]["visits"] > 0


def test_truth_with_active_executions_counts_only_what_is_visible() -> None:
    clock = FakeClock(START)
    config = SimulatorConfig(seed=9, history_executions=0, rate=6.0, speed=30.0, clock=clock)
    with Simulator(config) as simulator:
        clock.advance(20)
        truth = assert_truth_matches(simulator)
        active = sum(f["executions_active"] for f in truth["flows"].values())
        in_progress = sum(
            w["visits_in_progress"] for f in truth["flows"].values() for w in f["widgets"].values()
        )
        assert active > 0
        assert in_progress >= active
        clock.advance(30)
        later = assert_truth_matches(simulator)
        assert later["steps_served"] > truth["steps_served"]


def test_truth_endpoint_serves_the_same_truth() -> None:
    config = SimulatorConfig(seed=4, history_executions=100, clock=FakeClock(START))
    with Simulator(config) as simulator:
        auth = (simulator.account_sid, simulator.auth_token)
        served = httpx.get(f"{simulator.url}/_simulator/truth", auth=auth)
        assert httpx.get(f"{simulator.url}/_simulator/truth").status_code == 401
        assert served.status_code == 200
        assert served.json() == simulator.truth()
