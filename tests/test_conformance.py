"""openapi/ agrees with Twilio's published specs for every operation the exporter uses."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from studio_exporter.spec.conformance import conforms, disagreements
from studio_exporter.spec.specdiff import (
    ACCOUNT_OPERATIONS,
    STUDIO_OPERATIONS,
    TypeShape,
    operation_shapes,
)
from tests.reference import reference_path

ROOT = Path(__file__).resolve().parents[1]
OURS_PATH = ROOT / "openapi" / "studio_v2.yaml"
REFERENCE_NAME = "twilio_studio_v2.json"
ACCOUNTS_OURS_PATH = ROOT / "openapi" / "api_v2010.yaml"
ACCOUNTS_REFERENCE_NAME = "twilio_api_v2010.json"

Spec = dict[str, Any]


def load_ours(path: Path = OURS_PATH) -> Spec:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def load_reference(path: Path) -> Spec:
    if not path.is_file():
        pytest.skip(
            f"Twilio's reference spec is not at {path} (it lives outside the project; "
            "a fresh clone has no ../shared): nothing to compare against"
        )
    document = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def reference() -> Spec:
    return load_reference(reference_path(REFERENCE_NAME))


@pytest.fixture(scope="module")
def accounts_reference() -> Spec:
    return load_reference(reference_path(ACCOUNTS_REFERENCE_NAME))


def test_openapi_agrees_with_twilio(reference: Spec) -> None:
    problems = disagreements(reference, load_ours())
    assert not problems, "openapi/ disagrees with Twilio's spec:\n" + "\n".join(problems)


def test_the_comparison_sees_every_operation_and_field(reference: Spec) -> None:
    # Guards against a vacuous pass: both sides must yield the same non-trivial surface.
    shapes = operation_shapes(load_ours(), STUDIO_OPERATIONS)
    assert set(shapes) == set(STUDIO_OPERATIONS)
    assert "steps[].transitioned_from" in shapes["ListExecutionStep"].fields
    assert ("query", "DateCreatedFrom") in shapes["ListExecution"].parameters
    assert set(operation_shapes(reference, STUDIO_OPERATIONS)) == set(STUDIO_OPERATIONS)


def test_the_account_spec_agrees_with_twilios_v2010(accounts_reference: Spec) -> None:
    ours = load_ours(ACCOUNTS_OURS_PATH)
    problems = disagreements(accounts_reference, ours, ACCOUNT_OPERATIONS)
    assert not problems, "openapi/api_v2010.yaml disagrees with Twilio's:\n" + "\n".join(problems)
    shapes = operation_shapes(ours, ACCOUNT_OPERATIONS)
    assert set(shapes) == set(ACCOUNT_OPERATIONS)
    assert "accounts[].auth_token" in shapes["ListAccount"].fields
    assert shapes["ListAccount"].fields["next_page_uri"].nullable
    assert ("query", "Status") in shapes["ListAccount"].parameters
    assert set(operation_shapes(accounts_reference, ACCOUNT_OPERATIONS)) == set(ACCOUNT_OPERATIONS)


def _account_status_values(spec: Spec) -> None:
    status = spec["components"]["schemas"]["api.v2010.account"]["properties"]["status"]
    status["x-known-values"] = ["active", "closed"]


def _account_sid_pattern(spec: Spec) -> None:
    account = spec["components"]["schemas"]["api.v2010.account"]["properties"]
    account["owner_account_sid"]["pattern"] = "^AC[0-9a-f]{32}$"


def _account_page_uri(spec: Spec) -> None:
    del spec["components"]["schemas"]["ListAccountResponse"]["properties"]["next_page_uri"]


def _account_server(spec: Spec) -> None:
    spec["servers"] = [{"url": "https://studio.twilio.com"}]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(_account_status_values, "values=[active,closed]", id="status-values"),
        pytest.param(_account_sid_pattern, "owner_account_sid", id="sid-pattern"),
        pytest.param(_account_page_uri, "next_page_uri missing", id="paging"),
        pytest.param(_account_server, "servers", id="server"),
    ],
)
def test_a_seeded_account_disagreement_is_detected(
    accounts_reference: Spec, mutate: Callable[[Spec], None], expected: str
) -> None:
    ours = copy.deepcopy(load_ours(ACCOUNTS_OURS_PATH))
    mutate(ours)
    problems = disagreements(accounts_reference, ours, ACCOUNT_OPERATIONS)
    assert any(expected in problem for problem in problems), problems


# Each mutation breaks our spec in one way Twilio's does not: the comparison must notice.
def _schema(spec: Spec, name: str) -> dict[str, Any]:
    schema = spec["components"]["schemas"][name]
    assert isinstance(schema, dict)
    return schema


def _step_field(spec: Spec, field: str) -> dict[str, Any]:
    prop = _schema(spec, "studio.v2.flow.execution.execution_step")["properties"][field]
    assert isinstance(prop, dict)
    return prop


def _list_execution(spec: Spec) -> dict[str, Any]:
    operation = spec["paths"]["/v2/Flows/{FlowSid}/Executions"]["get"]
    assert isinstance(operation, dict)
    return operation


def _wrong_sid_pattern(spec: Spec) -> None:
    _step_field(spec, "parent_step_sid")["pattern"] = "^FN[0-9a-fA-F]{32}$"


def _wrong_sid_length(spec: Spec) -> None:
    _schema(spec, "studio.v2.flow")["properties"]["sid"]["maxLength"] = 36


def _retyped_field(spec: Spec) -> None:
    _schema(spec, "studio.v2.flow.execution")["properties"]["flow_version"]["type"] = "string"


def _missing_field(spec: Spec) -> None:
    del _schema(spec, "studio.v2.flow.execution.execution_step")["properties"]["transitioned_to"]


def _extra_field(spec: Spec) -> None:
    _schema(spec, "studio.v2.flow.execution")["properties"]["priority"] = {"type": "integer"}


def _not_nullable(spec: Spec) -> None:
    _step_field(spec, "transitioned_from")["nullable"] = False


def _renamed_parameter(spec: Spec) -> None:
    for parameter in _list_execution(spec)["parameters"]:
        if parameter.get("name") == "DateCreatedFrom":
            parameter["name"] = "dateCreatedFrom"


def _parameter_location(spec: Spec) -> None:
    for parameter in _list_execution(spec)["parameters"]:
        if parameter.get("name") == "status":
            parameter["in"] = "header"


def _parameter_type(spec: Spec) -> None:
    for parameter in _list_execution(spec)["parameters"]:
        if parameter.get("name") == "DateCreatedTo":
            parameter["schema"] = {"type": "string", "format": "date"}


def _page_size_range(spec: Spec) -> None:
    spec["components"]["parameters"]["PageSize"]["schema"]["maximum"] = 100


def _known_values(spec: Spec) -> None:
    _schema(spec, "studio.v2.flow.execution")["properties"]["status"]["x-known-values"] = ["active"]


def _moved_path(spec: Spec) -> None:
    paths = spec["paths"]
    paths["/v2/Flows/{FlowSid}/Executions/{ExecutionSid}/Step"] = paths.pop(
        "/v2/Flows/{FlowSid}/Executions/{ExecutionSid}/Steps"
    )


def _method(spec: Spec) -> None:
    item = spec["paths"]["/v2/Flows/{Sid}"]
    item["post"] = item.pop("get")


def _server(spec: Spec) -> None:
    spec["servers"] = [{"url": "https://studio.example.com"}]


def _security(spec: Spec) -> None:
    spec["components"]["securitySchemes"]["accountSid_authToken"]["scheme"] = "bearer"


def _dropped_operation(spec: Spec) -> None:
    del spec["paths"]["/v2/Flows/{FlowSid}/Executions/{ExecutionSid}/Steps/{StepSid}/Context"]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(_wrong_sid_pattern, "parent_step_sid", id="sid-pattern"),
        pytest.param(_wrong_sid_length, "FetchFlow: field sid", id="sid-length"),
        pytest.param(_retyped_field, "flow_version", id="field-type"),
        pytest.param(_missing_field, "transitioned_to missing", id="field-missing"),
        pytest.param(_extra_field, "priority is not in Twilio", id="field-extra"),
        pytest.param(_not_nullable, "transitioned_from", id="field-not-nullable"),
        pytest.param(_renamed_parameter, "dateCreatedFrom", id="parameter-name"),
        pytest.param(_parameter_location, "parameter header status", id="parameter-location"),
        pytest.param(_parameter_type, "DateCreatedTo", id="parameter-type"),
        pytest.param(_page_size_range, "PageSize", id="page-size-range"),
        pytest.param(_known_values, "values=[active]", id="status-values"),
        pytest.param(_moved_path, "ListExecutionStep: path", id="path"),
        pytest.param(_method, "FetchFlow: method", id="method"),
        pytest.param(_server, "servers", id="server"),
        pytest.param(_security, "security", id="security"),
        pytest.param(_dropped_operation, "FetchExecutionStepContext: missing", id="operation"),
    ],
)
def test_a_seeded_disagreement_is_detected(
    reference: Spec, mutate: Callable[[Spec], None], expected: str
) -> None:
    ours = copy.deepcopy(load_ours())
    mutate(ours)
    problems = disagreements(reference, ours)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("theirs", "ours", "agrees"),
    [
        pytest.param(TypeShape("any", nullable=True), TypeShape("object", nullable=True), True,
                     id="open-type-named"),
        pytest.param(TypeShape("string"), TypeShape("string", nullable=True), True,
                     id="ours-more-lenient"),
        pytest.param(TypeShape("string", nullable=True), TypeShape("string"), False,
                     id="ours-stricter"),
        pytest.param(TypeShape("string", format="uri"), TypeShape("string"), False,
                     id="format-dropped"),
        pytest.param(TypeShape("string", values=("a", "b")), TypeShape("string", values=("a",)),
                     False, id="values-differ"),
    ],
)  # fmt: skip
def test_conforms_policy(theirs: TypeShape, ours: TypeShape, agrees: bool) -> None:
    assert conforms(theirs, ours) is agrees
