"""The generated studio_client over httpx.MockTransport: auth, Twilio's names, tolerant parsing."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from studio_client import AuthenticatedClient
from studio_client.api.studio_v2_execution import fetch_execution, list_execution
from studio_client.api.studio_v2_execution_context import fetch_execution_context
from studio_client.api.studio_v2_execution_step import fetch_execution_step, list_execution_step
from studio_client.api.studio_v2_execution_step_context import fetch_execution_step_context
from studio_client.api.studio_v2_flow import fetch_flow, list_flow
from studio_client.models import (
    Execution,
    ExecutionContext,
    ExecutionStep,
    ExecutionStepContext,
    Flow,
    FlowDefinitionJson,
    ListExecutionResponse,
    ListExecutionStepResponse,
    ListFlowResponse,
    PageMeta,
    StudioError,
)
from studio_client.types import Response

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi" / "studio_v2.yaml"
BASE_URL = "https://studio.twilio.com"
ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "auth-token"
API_KEY_SID = "SK" + "b" * 32
API_KEY_SECRET = "api-key-secret"
FLOW_SID = "FW" + "a" * 32
EXECUTION_SID = "FN" + "a" * 32
STEP_SID = "FT" + "a" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def spec_examples() -> dict[str, Any]:
    """The example payloads of the spec (the seed payloads among them), by name."""
    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return {name: example["value"] for name, example in spec["components"]["examples"].items()}


EXAMPLES = spec_examples()


def json_handler(body: Any, status: int = 200, **headers: str) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handle


def make_client(handler: Handler, *, auth: tuple[str, str] | None = None) -> AuthenticatedClient:
    """The way the exporter builds its client: httpx basic auth over the API's base URL."""
    auth = auth or (ACCOUNT_SID, AUTH_TOKEN)
    return AuthenticatedClient(
        base_url=BASE_URL,
        token="",  # unused: httpx's BasicAuth sets the Authorization header per request
        httpx_args={"auth": httpx.BasicAuth(*auth), "transport": httpx.MockTransport(handler)},
    )


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Recorder:
    """A MockTransport handler that answers with one body and remembers the requests."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.body)


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param((ACCOUNT_SID, AUTH_TOKEN), id="account-sid-and-auth-token"),
        pytest.param((API_KEY_SID, API_KEY_SECRET), id="api-key-and-secret"),
    ],
)
def test_basic_auth_is_sent(credentials: tuple[str, str]) -> None:
    recorder = Recorder(EXAMPLES["Flow"])
    client = make_client(recorder, auth=credentials)
    response = fetch_flow.sync_detailed(FLOW_SID, client=client)
    assert response.status_code == 200
    assert recorder.requests[0].headers["Authorization"] == basic(*credentials)


def test_basic_auth_through_the_token_prefix() -> None:
    # The other way AuthenticatedClient allows: a precomputed token with the "Basic" prefix.
    recorder = Recorder(EXAMPLES["Flow"])
    token = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    client = AuthenticatedClient(
        base_url=BASE_URL,
        token=token,
        prefix="Basic",
        httpx_args={"transport": httpx.MockTransport(recorder)},
    )
    fetch_flow.sync_detailed(FLOW_SID, client=client)
    assert recorder.requests[0].headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)


def test_asyncio_sends_basic_auth_and_parses() -> None:
    recorder = Recorder(EXAMPLES["ListExecutionStepPage"])
    client = make_client(recorder)

    async def run() -> Response[ListExecutionStepResponse | StudioError]:
        async with client:
            return await list_execution_step.asyncio_detailed(
                FLOW_SID, EXECUTION_SID, client=client, page_size=1000
            )

    response = asyncio.run(run())
    assert isinstance(response.parsed, ListExecutionStepResponse)
    assert recorder.requests[0].headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    assert recorder.requests[0].url.params["PageSize"] == "1000"


def test_list_execution_uses_twilios_query_names() -> None:
    recorder = Recorder(EXAMPLES["ListExecutionPage"])
    list_execution.sync_detailed(
        FLOW_SID,
        client=make_client(recorder),
        status="active",
        date_created_from=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        date_created_to=datetime(2024, 5, 2, 12, 0, tzinfo=UTC),
        page_size=1000,
        page=2,
        page_token="PAtoken",
    )
    params = recorder.requests[0].url.params
    assert dict(params) == {
        "status": "active",
        "DateCreatedFrom": "2024-05-01T12:00:00+00:00",
        "DateCreatedTo": "2024-05-02T12:00:00+00:00",
        "PageSize": "1000",
        "Page": "2",
        "PageToken": "PAtoken",
    }


def test_unset_query_parameters_are_not_sent() -> None:
    recorder = Recorder(EXAMPLES["ListFlowPage"])
    list_flow.sync_detailed(client=make_client(recorder), page_size=50)
    assert dict(recorder.requests[0].url.params) == {"PageSize": "50"}


def test_the_status_filter_takes_any_string() -> None:
    recorder = Recorder(EXAMPLES["ListExecutionPage"])
    list_execution.sync_detailed(FLOW_SID, client=make_client(recorder), status="paused")
    assert recorder.requests[0].url.params["status"] == "paused"


Call = Callable[[AuthenticatedClient], Response[Any]]


def operations() -> Iterator[Any]:
    """(call, example, expected path, expected model) for each of the eight operations."""
    flow = f"/v2/Flows/{FLOW_SID}"
    execution = f"{flow}/Executions/{EXECUTION_SID}"
    step = f"{execution}/Steps/{STEP_SID}"
    cases: list[tuple[str, Call, str, str, type[Any]]] = [
        ("ListFlow", lambda c: list_flow.sync_detailed(client=c), "ListFlowPage", "/v2/Flows",
         ListFlowResponse),
        ("FetchFlow", lambda c: fetch_flow.sync_detailed(FLOW_SID, client=c), "Flow", flow, Flow),
        ("ListExecution", lambda c: list_execution.sync_detailed(FLOW_SID, client=c),
         "ListExecutionPage", f"{flow}/Executions", ListExecutionResponse),
        ("FetchExecution",
         lambda c: fetch_execution.sync_detailed(FLOW_SID, EXECUTION_SID, client=c),
         "Execution", execution, Execution),
        ("FetchExecutionContext",
         lambda c: fetch_execution_context.sync_detailed(FLOW_SID, EXECUTION_SID, client=c),
         "ExecutionContext", f"{execution}/Context", ExecutionContext),
        ("ListExecutionStep",
         lambda c: list_execution_step.sync_detailed(FLOW_SID, EXECUTION_SID, client=c),
         "ListExecutionStepPage", f"{execution}/Steps", ListExecutionStepResponse),
        ("FetchExecutionStep",
         lambda c: fetch_execution_step.sync_detailed(FLOW_SID, EXECUTION_SID, STEP_SID, client=c),
         "ExecutionStep", step, ExecutionStep),
        ("FetchExecutionStepContext",
         lambda c: fetch_execution_step_context.sync_detailed(
             FLOW_SID, EXECUTION_SID, STEP_SID, client=c),
         "ExecutionStepContext", f"{step}/Context", ExecutionStepContext),
    ]  # fmt: skip
    for operation_id, call, example, path, model in cases:
        yield pytest.param(call, example, path, model, id=operation_id)


@pytest.mark.parametrize(("call", "example", "path", "model"), list(operations()))
def test_each_operation_gets_its_path_and_parses_its_example(
    call: Call, example: str, path: str, model: type[Any]
) -> None:
    recorder = Recorder(EXAMPLES[example])
    response = call(make_client(recorder))
    request = recorder.requests[0]
    assert (request.method, request.url.path) == ("GET", path)
    assert isinstance(response.parsed, model)
    # Nothing was lost on the way: the model renders back to the payload it came from.
    assert_same_json(response.parsed.to_dict(), EXAMPLES[example])


def assert_same_json(rendered: Any, original: Any) -> None:
    """Equal as JSON, reading datetimes back as instants (isoformat writes +00:00 for Z)."""
    if isinstance(original, str) and isinstance(rendered, str) and original != rendered:
        assert datetime.fromisoformat(rendered) == datetime.fromisoformat(original)
    elif isinstance(original, Mapping):
        assert isinstance(rendered, Mapping)
        assert set(rendered) == set(original)
        for key, value in original.items():
            assert_same_json(rendered[key], value)
    elif isinstance(original, list):
        assert isinstance(rendered, list)
        assert len(rendered) == len(original)
        for rendered_item, original_item in zip(rendered, original, strict=True):
            assert_same_json(rendered_item, original_item)
    else:
        assert rendered == original


def assert_aware_utc(value: object) -> datetime:
    assert isinstance(value, datetime)
    assert value.tzinfo is not None
    assert value.utcoffset() == timedelta(0)
    return value


def test_seed_step_parses_with_aware_utc_datetimes() -> None:
    step = ExecutionStep.from_dict(EXAMPLES["ExecutionStep"])
    assert assert_aware_utc(step.date_created) == datetime(2017, 11, 6, 12, 0, tzinfo=UTC)
    assert step.parent_step_sid is None
    assert (step.name, step.transitioned_from, step.transitioned_to) == (
        "incomingRequest",
        "Trigger",
        "Ended",
    )


def test_seed_step_list_parses_with_the_paging_meta() -> None:
    page = ListExecutionStepResponse.from_dict(EXAMPLES["ListExecutionStepPage"])
    assert page.steps
    assert [assert_aware_utc(step.date_created) for step in page.steps] == [
        datetime(2017, 11, 6, 12, 0, 5, tzinfo=UTC),
        datetime(2017, 11, 6, 12, 0, tzinfo=UTC),
    ]
    empty = ListExecutionStepResponse.from_dict(EXAMPLES["ListExecutionStepEmpty"])
    assert empty.steps == []
    assert isinstance(empty.meta, PageMeta)
    assert empty.meta.next_page_url is None
    assert empty.meta.key == "steps"


def test_next_page_url_is_kept_as_given() -> None:
    page = ListExecutionResponse.from_dict(EXAMPLES["ListExecutionPage"])
    expected = EXAMPLES["ListExecutionPage"]["meta"]["next_page_url"]
    assert isinstance(page.meta, PageMeta)
    assert page.meta.next_page_url == expected


def test_execution_datetimes_are_aware_utc() -> None:
    execution = Execution.from_dict(EXAMPLES["Execution"])
    assert_aware_utc(execution.date_created)
    assert_aware_utc(execution.date_updated)


def drifted(example: str, **changes: Any) -> dict[str, Any]:
    """A copy of a spec example as a changed API might send it."""
    payload = json.loads(json.dumps(EXAMPLES[example]))
    assert isinstance(payload, dict)
    payload.update(changes)
    return payload


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param("paused", "paused", id="unknown-value"),
        pytest.param(None, None, id="null"),
        pytest.param("ended", "ended", id="known-value"),
    ],
)
def test_execution_status_survives_whatever_twilio_sends(
    status: str | None, expected: str | None
) -> None:
    recorder = Recorder(drifted("Execution", status=status, priority=7))
    response = fetch_execution.sync_detailed(FLOW_SID, EXECUTION_SID, client=make_client(recorder))
    execution = response.parsed
    assert isinstance(execution, Execution)
    assert execution.status == expected
    assert execution.additional_properties == {"priority": 7}
    assert execution.to_dict()["priority"] == 7


def test_flow_status_and_extra_fields_survive() -> None:
    flow = Flow.from_dict(drifted("Flow", status="archived", folder={"name": "ops"}))
    assert flow.status == "archived"
    assert flow.additional_properties == {"folder": {"name": "ops"}}


def test_nulls_everywhere_parse() -> None:
    models: list[tuple[str, type[Any]]] = [
        ("ExecutionStep", ExecutionStep),
        ("Execution", Execution),
        ("Flow", Flow),
        ("ExecutionContext", ExecutionContext),
        ("ExecutionStepContext", ExecutionStepContext),
    ]
    for example, model in models:
        nulls = dict.fromkeys(EXAMPLES[example])
        assert model.from_dict(nulls).to_dict() == nulls, example


def test_missing_fields_parse_as_unset() -> None:
    step = ExecutionStep.from_dict({"sid": STEP_SID})
    assert step.sid == STEP_SID
    assert step.to_dict() == {"sid": STEP_SID}


def test_extra_fields_inside_nested_objects_survive() -> None:
    payload = drifted("ListExecutionStepPage", cursor="abc")
    payload["meta"]["total"] = 2
    payload["steps"][0]["duration_ms"] = 1500
    payload["steps"][0]["links"]["widget"] = "https://studio.twilio.com/widget"
    page = ListExecutionStepResponse.from_dict(payload)
    assert page.additional_properties == {"cursor": "abc"}
    assert isinstance(page.meta, PageMeta)
    assert page.meta.additional_properties == {"total": 2}
    assert page.steps
    assert page.steps[0].additional_properties["duration_ms"] == 1500
    assert_same_json(page.to_dict(), payload)


def test_context_and_definition_are_free_form_json() -> None:
    flow = Flow.from_dict(EXAMPLES["Flow"])
    assert isinstance(flow.definition, FlowDefinitionJson)
    definition = flow.definition.to_dict()
    assert definition["initial_state"] == "Trigger"
    assert [state["name"] for state in definition["states"]] == ["Trigger", "send_reminder"]
    context = ExecutionStepContext.from_dict(EXAMPLES["ExecutionStepContext"])
    assert context.context is not None
    assert context.to_dict()["context"] == EXAMPLES["ExecutionStepContext"]["context"]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        pytest.param(401, {}, id="401"),
        pytest.param(404, {}, id="404"),
        pytest.param(429, {"Retry-After": "3"}, id="429"),
        pytest.param(503, {}, id="5XX"),
    ],
)
def test_errors_parse_into_the_error_body(status: int, headers: dict[str, str]) -> None:
    body = {"code": 20000 + status, "message": "m", "more_info": "https://x", "status": status}
    client = make_client(json_handler(body, status, **headers))
    response = list_execution_step.sync_detailed(FLOW_SID, EXECUTION_SID, client=client)
    assert response.status_code == status
    assert isinstance(response.parsed, StudioError)
    assert (response.parsed.code, response.parsed.status) == (20000 + status, status)
    for name, value in headers.items():
        assert response.headers[name] == value


def test_an_undocumented_status_does_not_raise() -> None:
    client = make_client(json_handler({"detail": "teapot"}, 418))
    response = fetch_flow.sync_detailed(FLOW_SID, client=client)
    assert response.status_code == 418
    assert response.parsed is None
