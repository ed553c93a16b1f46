"""Tests for studio_api: the generated client over real HTTP to the simulator, faults included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from studio_exporter.config import Credentials, Secret
from studio_exporter.core.domain import Execution
from studio_exporter.simulator import Faults, Simulator, SimulatorConfig
from studio_exporter.sources.studio_api import ApiError, StudioApi
from studio_exporter.sources.throttle import AdaptiveLimiter, RetryPolicy

pytestmark = pytest.mark.integration


class Recorder:
    """Counts what StudioApi reports, as the health metrics would."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.waits: list[float] = []
        self.limits: list[int] = []

    def api_request(self, operation: str, code: str, seconds: float) -> None:
        self.requests.append((operation, code))

    def rate_limit_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def set_concurrency_limit(self, limit: int) -> None:
        self.limits.append(limit)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=5, history_executions=300, history_days=1)) as sim:
        yield sim


@pytest.fixture(autouse=True)
def no_faults(simulator: Simulator) -> Iterator[None]:
    simulator.set_faults(Faults())
    yield
    simulator.set_faults(Faults())


def make_api(sim: Simulator, recorder: Recorder | None = None, **kwargs: Any) -> StudioApi:
    credentials = Credentials(sim.account_sid, sim.account_sid, Secret(sim.auth_token))
    return StudioApi(
        sim.url,
        credentials,
        health=recorder,
        retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.05),
        **kwargs,
    )


def run(api: StudioApi, work: Any) -> Any:
    async def scenario() -> Any:
        try:
            return await work(api)
        finally:
            await api.aclose()

    return asyncio.run(scenario())


def test_lists_flows_executions_and_steps(simulator: Simulator) -> None:
    async def work(api: StudioApi) -> tuple[Any, list[Execution], Any]:
        flows = await api.list_flows()
        flow = await api.fetch_flow(simulator.flow_sids[0])
        executions = await api.list_executions(flow.sid)
        steps = await api.list_steps(flow.sid, executions[0].sid)
        return flows, executions, (flow, steps)

    flows, executions, (flow, steps) = run(make_api(simulator), work)
    assert {flow.sid for flow in flows} == set(simulator.flow_sids)
    assert flow.widgets
    assert flow.initial_widget == "Trigger"
    assert executions
    assert all(e.flow_sid == flow.sid for e in executions)
    created = [execution.date_created for execution in executions]
    assert created == sorted(created, reverse=True), "executions are listed newest first"
    assert all(e.date_created.tzinfo is not None for e in executions)
    assert steps
    assert all(step.execution_sid == executions[0].sid for step in steps)
    assert all(step.context is None for step in steps), "context is dropped unless opted in"


def test_follows_every_page(simulator: Simulator) -> None:
    async def work(api: StudioApi) -> int:
        total = 0
        for flow_sid in simulator.flow_sids:
            total += len(await api.list_executions(flow_sid))
        return total

    api = make_api(simulator)
    total = run(api, work)
    started = sum(flow["executions_started"] for flow in simulator.truth()["flows"].values())
    assert total == started


def test_created_from_filters(simulator: Simulator) -> None:
    async def work(api: StudioApi) -> tuple[list[Execution], list[Execution]]:
        flow_sid = simulator.flow_sids[0]
        everything = await api.list_executions(flow_sid)
        middle = everything[len(everything) // 2].date_created
        return everything, await api.list_executions(flow_sid, created_from=middle)

    everything, recent = run(make_api(simulator), work)
    middle = everything[len(everything) // 2].date_created
    assert 0 < len(recent) < len(everything)
    assert all(execution.date_created >= middle for execution in recent)


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        pytest.param(Faults(fail_429=0.5, retry_after_seconds=0), "429", id="429-retry-after"),
        pytest.param(Faults(fail_5xx=0.4), None, id="5xx"),
        pytest.param(Faults(malformed_json=0.4), "malformed", id="malformed-json"),
        pytest.param(Faults(truncated_json=0.4), "malformed", id="truncated-json"),
        pytest.param(Faults(reset=0.3), "connection_error", id="connection-reset"),
    ],
)
def test_retries_what_may_pass(simulator: Simulator, faults: Faults, code: str | None) -> None:
    async def work(api: StudioApi) -> list[tuple[str, list[str]]]:
        flow_sid = simulator.flow_sids[0]
        executions = await api.list_executions(flow_sid)
        read = []
        for execution in executions[:20]:
            steps = await api.list_steps(flow_sid, execution.sid)
            read.append((execution.sid, sorted(step.sid for step in steps)))
        return read

    clean = run(make_api(simulator), work)
    simulator.set_faults(faults)
    recorder = Recorder()
    faulty = run(make_api(simulator, recorder), work)
    assert faulty == clean
    codes = {c for _, c in recorder.requests}
    assert "200" in codes
    if code is not None:
        assert code in codes, recorder.requests
    else:
        assert codes & {"500", "503"}, recorder.requests


def test_429_halves_the_concurrency_limit(simulator: Simulator) -> None:
    simulator.set_faults(Faults(fail_429=1.0, retry_after_seconds=0))
    recorder = Recorder()
    limiter = AdaptiveLimiter(8)
    api = make_api(simulator, recorder, limiter=limiter)
    with pytest.raises(ApiError) as caught:
        run(api, lambda api: api.list_flows())
    assert caught.value.reason == "rate_limited"
    assert limiter.limit == 1
    assert len(recorder.waits) == 8


def test_wrong_token_is_unauthorized_and_not_retried(simulator: Simulator) -> None:
    credentials = Credentials(simulator.account_sid, simulator.account_sid, Secret("wrong-token"))
    recorder = Recorder()
    api = StudioApi(simulator.url, credentials, health=recorder)
    with pytest.raises(ApiError) as caught:
        run(api, lambda api: api.list_flows())
    assert caught.value.reason == "unauthorized"
    assert caught.value.status == 401
    assert recorder.requests == [("ListFlow", "401")]
    assert "wrong-token" not in str(caught.value)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda api: api.fetch_flow("FW123"), id="short-flow-sid"),
        pytest.param(lambda api: api.list_executions("../../v1/Accounts"), id="path-traversal"),
        pytest.param(lambda api: api.list_steps("FW" + "a" * 32, "FT" + "a" * 32), id="wrong-kind"),
    ],
)
def test_sids_are_checked_before_any_request(simulator: Simulator, call: Any) -> None:
    recorder = Recorder()
    with pytest.raises(ApiError) as caught:
        run(make_api(simulator, recorder), call)
    assert caught.value.reason == "invalid_sid"
    assert recorder.requests == []


def test_timeout_is_retried_then_reported(simulator: Simulator) -> None:
    simulator.set_faults(Faults(latency_ms=400))
    recorder = Recorder()
    api = make_api(simulator, recorder, timeout=0.1)
    api.retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
    with pytest.raises(ApiError) as caught:
        run(api, lambda api: api.list_flows())
    assert caught.value.reason == "timeout"
    assert recorder.requests == [("ListFlow", "timeout")] * 2


def test_lookback_window_is_sent_as_twilio_parameters(simulator: Simulator) -> None:
    before = simulator.truth()["requests"]["by_operation"].get("ListExecution", 0)
    run(
        make_api(simulator),
        lambda api: api.list_executions(
            simulator.flow_sids[0],
            created_from=simulator.config.clock() - timedelta(hours=1),
            status="active",
        ),
    )
    after = simulator.truth()["requests"]["by_operation"].get("ListExecution", 0)
    assert after == before + 1
