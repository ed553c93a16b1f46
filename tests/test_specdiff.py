"""specdiff: what changed between two versions of a Twilio spec, in the operations we use."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from studio_exporter.spec.specdiff import (
    ACCOUNT_OPERATIONS,
    STUDIO_OPERATIONS,
    Change,
    TypeShape,
    diff_specs,
    main,
    operation_shapes,
    type_shape,
)
from tests.reference import reference_path

ROOT = Path(__file__).resolve().parents[1]
OURS_PATH = ROOT / "openapi" / "studio_v2.yaml"
ACCOUNTS_OURS_PATH = ROOT / "openapi" / "api_v2010.yaml"
STEPS = "/v2/Flows/{FlowSid}/Executions/{ExecutionSid}/Steps"
STEP = "/v2/Flows/{FlowSid}/Executions/{ExecutionSid}/Steps/{Sid}"
EXECUTIONS = "/v2/Flows/{FlowSid}/Executions"

Spec = dict[str, Any]


def load_base(name: str) -> Spec:
    """Twilio's reference spec (when present), or the project's own, which has the same shape."""
    if name == "reference":
        path = reference_path("twilio_studio_v2.json")
        document = json.loads(path.read_text(encoding="utf-8"))
    else:
        document = yaml.safe_load(OURS_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


@pytest.fixture(params=["reference", "project"])
def base(request: pytest.FixtureRequest) -> Spec:
    return load_base(str(request.param))


def resolve(spec: Spec, node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def step_schema(spec: Spec) -> dict[str, Any]:
    ok = spec["paths"][STEP]["get"]["responses"]["200"]
    schema = resolve(spec, ok["content"]["application/json"]["schema"])
    assert isinstance(schema, dict)
    return schema


def execution_schema(spec: Spec) -> dict[str, Any]:
    ok = spec["paths"][EXECUTIONS + "/{Sid}"]["get"]["responses"]["200"]
    schema = resolve(spec, ok["content"]["application/json"]["schema"])
    assert isinstance(schema, dict)
    return schema


def list_execution_parameter(spec: Spec, name: str) -> dict[str, Any]:
    for node in spec["paths"][EXECUTIONS]["get"]["parameters"]:
        parameter = resolve(spec, node)
        if parameter["name"] == name:
            assert isinstance(parameter, dict)
            return parameter
    raise KeyError(name)


# Mutations: how Twilio might change its spec. Each returns nothing and edits in place.
def add_step_field(spec: Spec) -> None:
    step_schema(spec)["properties"]["added_by_test"] = {"type": "integer", "nullable": True}


def remove_step_type(spec: Spec) -> None:
    del step_schema(spec)["properties"]["type"]


def retype_flow_version(spec: Spec) -> None:
    execution_schema(spec)["properties"]["flow_version"]["type"] = "string"


def add_status_value(spec: Spec) -> None:
    # Twilio's status is a $ref to an enum, the project's a string with x-known-values.
    status = resolve(spec, execution_schema(spec)["properties"]["status"])
    key = "enum" if "enum" in status else "x-known-values"
    status[key] = [*status[key], "paused"]


def remove_date_created_to(spec: Spec) -> None:
    operation = spec["paths"][EXECUTIONS]["get"]
    operation["parameters"] = [
        node for node in operation["parameters"] if resolve(spec, node)["name"] != "DateCreatedTo"
    ]


def rename_page_token(spec: Spec) -> None:
    operation = spec["paths"][STEPS]["get"]
    operation["parameters"] = [
        {**resolve(spec, node), "name": "pageToken"}
        if resolve(spec, node)["name"] == "PageToken"
        else node
        for node in operation["parameters"]
    ]


def move_steps_path(spec: Spec) -> None:
    spec["paths"][STEPS.replace("Steps", "Transitions")] = spec["paths"].pop(STEPS)


def remove_step_context_path(spec: Spec) -> None:
    del spec["paths"][STEPS + "/{StepSid}/Context"]


def tighten_page_size(spec: Spec) -> None:
    operation = spec["paths"]["/v2/Flows"]["get"]
    operation["parameters"] = [
        {**resolve(spec, node), "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
        if resolve(spec, node)["name"] == "PageSize"
        else node
        for node in operation["parameters"]
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            add_step_field,
            [
                ("ListExecutionStep", "field added", "steps[].added_by_test", None, "integer|null"),
                ("FetchExecutionStep", "field added", "added_by_test", None, "integer|null"),
            ],
            id="field-added",
        ),
        pytest.param(
            remove_step_type,
            [
                ("ListExecutionStep", "field removed", "steps[].type", "string|null", None),
                ("FetchExecutionStep", "field removed", "type", "string|null", None),
            ],
            id="field-removed",
        ),
        pytest.param(
            retype_flow_version,
            [
                ("ListExecution", "field retyped", "executions[].flow_version",
                 "integer|null", "string|null"),
                ("FetchExecution", "field retyped", "flow_version", "integer|null", "string|null"),
            ],
            id="field-retyped",
        ),
        pytest.param(
            remove_date_created_to,
            [("ListExecution", "parameter removed", "query DateCreatedTo", "string(date-time)",
              None)],
            id="parameter-removed",
        ),
        pytest.param(
            rename_page_token,
            [
                ("ListExecutionStep", "parameter removed", "query PageToken", "string", None),
                ("ListExecutionStep", "parameter added", "query pageToken", None, "string"),
            ],
            id="parameter-renamed",
        ),
        pytest.param(
            tighten_page_size,
            [("ListFlow", "parameter retyped", "query PageSize",
              "integer(int64) range=1..1000", "integer range=1..500")],
            id="parameter-retyped",
        ),
        pytest.param(
            move_steps_path,
            [("ListExecutionStep", "path moved", "", STEPS, STEPS.replace("Steps", "Transitions"))],
            id="path-moved",
        ),
        pytest.param(
            remove_step_context_path,
            [("FetchExecutionStepContext", "operation removed", "",
              "GET " + STEPS + "/{StepSid}/Context", None)],
            id="path-removed",
        ),
    ],
)  # fmt: skip
def test_a_change_in_an_operation_we_use_is_reported(
    base: Spec,
    mutate: Callable[[Spec], None],
    expected: list[tuple[str, str, str, str | None, str | None]],
) -> None:
    new = copy.deepcopy(base)
    mutate(new)
    assert diff_specs(base, new) == [Change(*fields) for fields in expected]


def test_a_new_status_value_is_reported(base: Spec) -> None:
    new = copy.deepcopy(base)
    add_status_value(new)
    changes = diff_specs(base, new)
    subjects = {(change.operation_id, change.subject) for change in changes}
    assert ("FetchExecution", "status") in subjects
    assert ("ListExecution", "executions[].status") in subjects
    assert all(change.kind.endswith("retyped") for change in changes)
    assert all(change.new and "paused" in change.new for change in changes)


def test_identical_specs_and_unrelated_edits_report_nothing(base: Spec) -> None:
    new = copy.deepcopy(base)
    new["info"]["description"] = "rewritten"
    new["paths"]["/v2/Flows/{Sid}/Anything"] = {"get": {"operationId": "FetchSomethingElse"}}
    assert diff_specs(base, base) == []
    assert diff_specs(base, new) == []


def test_shapes_cover_every_operation_we_use(base: Spec) -> None:
    shapes = operation_shapes(base)
    assert set(shapes) == set(STUDIO_OPERATIONS)
    step = shapes["FetchExecutionStep"]
    assert (step.method, step.path) == ("GET", STEP)
    assert step.servers == ("https://studio.twilio.com",)
    assert step.security == ("http/basic",)
    assert step.parameters[("path", "Sid")] == TypeShape(
        "string", required=True, pattern="^FT[0-9a-fA-F]{32}$", min_length=34, max_length=34
    )
    assert shapes["ListFlow"].fields["meta.next_page_url"] == TypeShape(
        "string", format="uri", nullable=True
    )


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param({}, TypeShape("any"), id="untyped"),
        pytest.param({"type": ["string", "null"]}, TypeShape("string", nullable=True), id="3.1"),
        pytest.param(
            {"type": "string", "enum": ["a", None]},
            TypeShape("string", nullable=True, values=("a",)),
            id="enum-with-null",
        ),
        pytest.param(
            {"type": "string", "x-known-values": ["active"]},
            TypeShape("string", values=("active",)),
            id="known-values",
        ),
        pytest.param({"oneOf": [{}, {}]}, TypeShape("oneOf"), id="composite"),
    ],
)
def test_type_shape(schema: dict[str, Any], expected: TypeShape) -> None:
    assert type_shape(schema) == expected


def test_a_nullable_ref_wrapper_is_seen_through() -> None:
    spec = copy.deepcopy(load_base("project"))
    step = spec["components"]["schemas"]["studio.v2.flow.execution.execution_step"]
    meta_ref = {"$ref": "#/components/schemas/PageMeta"}
    list_step = spec["components"]["schemas"]["ListExecutionStepResponse"]
    list_step["properties"]["meta"] = {"allOf": [meta_ref], "nullable": True}
    step["properties"]["flow_sid"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    fields = operation_shapes(spec)["ListExecutionStep"].fields
    assert fields["meta"] == TypeShape("object", nullable=True)
    assert fields["meta.next_page_url"] == TypeShape("string", format="uri", nullable=True)
    assert fields["steps[].flow_sid"] == TypeShape("string", nullable=True)


def write(path: Path, spec: Spec) -> Path:
    text = json.dumps(spec) if path.suffix == ".json" else yaml.safe_dump(spec)
    path.write_text(text, encoding="utf-8")
    return path


def test_main_reports_changes_and_exits_1(
    base: Spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = copy.deepcopy(base)
    add_step_field(new)
    old_path, new_path = write(tmp_path / "old.json", base), write(tmp_path / "new.yaml", new)
    assert main([str(old_path), str(new_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"Changes in the operations we use ({old_path} -> {new_path}):",
        "ListExecutionStep",
        "  field added         steps[].added_by_test: integer|null",
        "FetchExecutionStep",
        "  field added         added_by_test: integer|null",
        "2 changes.",
    ]


def test_main_exits_0_without_changes(
    base: Spec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "spec.json", base)
    assert main([str(path), str(path)]) == 0
    assert capsys.readouterr().out.startswith("No changes in the operations we use")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"old.json": "{not json", "new.json": "{}"}, "invalid JSON", id="bad-json"),
        pytest.param({"old.yaml": "a: [", "new.json": "{}"}, "invalid YAML", id="bad-yaml"),
        pytest.param({"old.json": "[]", "new.json": "{}"}, "not a JSON/YAML object", id="list"),
        pytest.param({"old.json": "{}", "new.json": "{}"}, "no 'paths'", id="not-openapi"),
        pytest.param({"old.json": "{}"}, "No such file", id="missing"),
    ],
)
def test_main_exits_2_on_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    names = [*files, "new.json"][:2]
    assert main([str(tmp_path / name) for name in names]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        pytest.param([], 2, id="no-args"),
        pytest.param(["only-one"], 2, id="one-arg"),
        pytest.param(["--help"], 0, id="help"),
    ],
)
def test_main_usage(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == code
    captured = capsys.readouterr()
    assert "usage: spec-diff OLD NEW" in captured.out + captured.err


@pytest.fixture(params=["reference", "project"])
def accounts_base(request: pytest.FixtureRequest) -> Spec:
    """Twilio's v2010 spec (when present) or the project's api_v2010.yaml."""
    if request.param == "reference":
        path = reference_path("twilio_api_v2010.json")  # skips, or fails under CI=true
        document = json.loads(path.read_text(encoding="utf-8"))
    else:
        document = yaml.safe_load(ACCOUNTS_OURS_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_the_account_operations_are_diffed_too(accounts_base: Spec) -> None:
    assert set(operation_shapes(accounts_base)) == set(ACCOUNT_OPERATIONS)
    new = copy.deepcopy(accounts_base)
    account = new["components"]["schemas"]["api.v2010.account"]["properties"]
    del account["owner_account_sid"]
    account["region"] = {"type": "string", "nullable": True}
    changes = diff_specs(accounts_base, new)
    assert {(change.operation_id, change.kind, change.subject) for change in changes} == {
        ("ListAccount", "field removed", "accounts[].owner_account_sid"),
        ("ListAccount", "field added", "accounts[].region"),
        ("FetchAccount", "field removed", "owner_account_sid"),
        ("FetchAccount", "field added", "region"),
    }
