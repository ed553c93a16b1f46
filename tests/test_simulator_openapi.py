"""Every simulator response validates against openapi/, read with the generated client."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.validation.response.exceptions import InvalidData
from werkzeug.datastructures import Headers, ImmutableMultiDict

from accounts_client import AuthenticatedClient as AccountsClient
from accounts_client.api.api_20100401_account import fetch_account, list_account
from accounts_client.models import ListAccountResponse
from studio_client import AuthenticatedClient
from studio_client.api.studio_v2_execution import fetch_execution, list_execution
from studio_client.api.studio_v2_execution_context import fetch_execution_context
from studio_client.api.studio_v2_execution_step import fetch_execution_step, list_execution_step
from studio_client.api.studio_v2_execution_step_context import fetch_execution_step_context
from studio_client.api.studio_v2_flow import fetch_flow, list_flow
from studio_client.models import (
    ListExecutionResponse,
    ListExecutionStepResponse,
    ListFlowResponse,
    PageMeta,
)
from studio_exporter.simulator import FakeClock, Faults, Simulator, SimulatorConfig

pytestmark = pytest.mark.integration

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi" / "studio_v2.yaml"
ACCOUNTS_SPEC_PATH = SPEC_PATH.parent / "api_v2010.yaml"
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
HISTORY = 600  # about 3,400 steps: thousands of records, paged


class _Request:
    """An httpx request seen through openapi-core's request protocol."""

    def __init__(self, request: httpx.Request) -> None:
        self._request = request
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(parse_qs(request.url.query.decode())),
            header=Headers(dict(request.headers)),
            cookie=ImmutableMultiDict({}),
        )
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.method = request.method.lower()
        self.body: bytes | None = None
        self.content_type = "application/json"


class _Response:
    def __init__(self, response: httpx.Response) -> None:
        self.data = response.content
        self.status_code = response.status_code
        self.content_type = response.headers.get("Content-Type", "")
        self.headers = Headers(dict(response.headers))


class Validator:
    """Validates every response a client receives, counting them by operation path and status."""

    def __init__(self, base_url: str, spec_path: Path = SPEC_PATH) -> None:
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8"))
        spec["servers"] = [{"url": base_url}]
        self._openapi = OpenAPI.from_dict(spec)
        self.validated: Counter[int] = Counter()

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self._openapi.validate_response(_Request(response.request), _Response(response))
        self.validated[response.status_code] += 1


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    config = SimulatorConfig(
        seed=21, history_executions=HISTORY, clock=FakeClock(START), subaccounts=3
    )
    with Simulator(config) as running:
        yield running


def make_client(
    simulator: Simulator, hook: Callable[[httpx.Response], None]
) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url=simulator.url,
        token="",
        httpx_args={
            "auth": httpx.BasicAuth(simulator.account_sid, simulator.auth_token),
            "event_hooks": {"response": [hook]},
        },
    )


def token(next_page_url: Any) -> str | None:
    if not isinstance(next_page_url, str):
        return None
    return parse_qs(urlsplit(next_page_url).query)["PageToken"][0]


def test_paging_through_everything_validates(simulator: Simulator) -> None:
    validator = Validator(simulator.url)
    client = make_client(simulator, validator)
    flows = list_flow.sync(client=client)
    assert isinstance(flows, ListFlowResponse)
    executions_read = steps_read = 0
    assert isinstance(flows.flows, list)
    for flow in flows.flows:
        assert isinstance(flow.sid, str)
        fetch_flow.sync(flow.sid, client=client)
        page_token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"page_size": 50}
            if page_token is not None:
                kwargs["page_token"] = page_token
            page = list_execution.sync(flow.sid, client=client, **kwargs)
            assert isinstance(page, ListExecutionResponse)
            assert isinstance(page.executions, list)
            assert isinstance(page.meta, PageMeta)
            for execution in page.executions:
                executions_read += 1
                assert isinstance(execution.sid, str)
                steps = list_execution_step.sync(
                    flow.sid, execution.sid, client=client, page_size=1000
                )
                assert isinstance(steps, ListExecutionStepResponse)
                assert isinstance(steps.steps, list)
                steps_read += len(steps.steps)
                if executions_read % 10 == 0:
                    fetch_execution.sync(flow.sid, execution.sid, client=client)
                    fetch_execution_context.sync(flow.sid, execution.sid, client=client)
                    step_sid = steps.steps[0].sid
                    assert isinstance(step_sid, str)
                    fetch_execution_step.sync(flow.sid, execution.sid, step_sid, client=client)
                    fetch_execution_step_context.sync(
                        flow.sid, execution.sid, step_sid, client=client
                    )
            page_token = token(page.meta.next_page_url)
            if page_token is None:
                break
    assert executions_read == HISTORY
    assert steps_read > 3 * HISTORY
    assert set(validator.validated) == {200}
    assert validator.validated[200] > HISTORY


@pytest.mark.parametrize(
    ("faults", "status"),
    [
        pytest.param(Faults(fail_429=1.0), {429}, id="429"),
        pytest.param(Faults(max_concurrency=1, fail_5xx=1.0), {500, 503}, id="5xx"),
        pytest.param(Faults(unexpected_values=1.0), {200}, id="unexpected-values"),
    ],
)
def test_fault_responses_validate(simulator: Simulator, faults: Faults, status: set[int]) -> None:
    validator = Validator(simulator.url)
    client = make_client(simulator, validator)
    flow = simulator.flow_sids[0]
    executions = list_execution.sync(flow, client=client)
    assert isinstance(executions, ListExecutionResponse)
    assert isinstance(executions.executions, list)
    first = executions.executions[0].sid
    assert isinstance(first, str)
    simulator.set_faults(faults)
    try:
        for _ in range(4):
            list_execution.sync(flow, client=client)
            fetch_execution.sync(flow, first, client=client)
            list_execution_step.sync(flow, first, client=client)
    finally:
        simulator.set_faults(Faults())
    assert set(validator.validated) - {200} <= status
    assert sum(validator.validated[s] for s in status) >= 12


@pytest.mark.parametrize(
    ("path", "auth", "status"),
    [
        pytest.param("/v2/Flows", ("AC" + "0" * 32, "nope"), 401, id="401"),
        pytest.param("/v2/Flows/FW" + "0" * 32, None, 404, id="404-flow"),
        pytest.param("/v2/Flows/{flow}/Executions/FN" + "0" * 32, None, 404, id="404-execution"),
    ],
)
def test_error_responses_validate(
    simulator: Simulator, path: str, auth: tuple[str, str] | None, status: int
) -> None:
    validator = Validator(simulator.url)
    credentials = auth or (simulator.account_sid, simulator.auth_token)
    with httpx.Client(auth=credentials, event_hooks={"response": [validator]}) as client:
        response = client.get(simulator.url + path.format(flow=simulator.flow_sids[0]))
    assert response.status_code == status
    assert validator.validated == {status: 1}


def test_the_validator_rejects_a_response_that_breaks_the_spec(simulator: Simulator) -> None:
    validator = Validator(simulator.url)
    request = httpx.Request("GET", f"{simulator.url}/v2/Flows")
    broken = httpx.Response(200, json={"meta": {"page": "first"}, "flows": "none"}, request=request)
    with pytest.raises(InvalidData):
        validator(broken)


def test_the_accounts_api_validates_against_api_v2010(simulator: Simulator) -> None:
    validator = Validator(simulator.url, ACCOUNTS_SPEC_PATH)
    simulator.set_account_status(simulator.accounts[2].sid, "suspended")
    try:
        client = AccountsClient(
            base_url=simulator.url,
            token="",
            httpx_args={
                "auth": httpx.BasicAuth(simulator.account_sid, simulator.auth_token),
                "event_hooks": {"response": [validator]},
            },
        )
        seen: list[str] = []
        page_token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"page_size": 1}
            if page_token is not None:
                kwargs["page_token"] = page_token
            page = list_account.sync(client=client, **kwargs)
            assert isinstance(page, ListAccountResponse)
            assert isinstance(page.accounts, list)
            seen += [str(account.sid) for account in page.accounts]
            next_uri = page.next_page_uri
            if not isinstance(next_uri, str):
                break
            assert next_uri.startswith("/2010-04-01/Accounts.json?")  # relative, as v2010's
            page_token = parse_qs(urlsplit(next_uri).query)["PageToken"][0]
        assert sorted(seen) == sorted(a.sid for a in simulator.accounts)
        suspended = list_account.sync(client=client, status="suspended")
        assert isinstance(suspended, ListAccountResponse)
        assert [a.status for a in suspended.accounts or []] == ["suspended"]
        for account in simulator.accounts:
            fetch_account.sync(account.sid, client=client)
        fetch_account.sync("AC" + "0" * 32, client=client)  # 404
        with httpx.Client(event_hooks={"response": [validator]}) as http:
            http.get(f"{simulator.url}/2010-04-01/Accounts.json", auth=("AC" + "0" * 32, "x"))
    finally:
        simulator.set_account_status(simulator.accounts[2].sid, "active")
    assert validator.validated == {200: len(seen) + 1 + len(simulator.accounts), 404: 1, 401: 1}
