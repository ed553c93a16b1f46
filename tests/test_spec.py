"""The project's OpenAPI spec: valid, complete for our operations, and robust to API change."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from studio_exporter.spec.specdiff import ACCOUNT_OPERATIONS, STUDIO_OPERATIONS

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi" / "studio_v2.yaml"
ERROR_STATUSES = ("401", "404", "429", "5XX")


def load_spec() -> dict[str, Any]:
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


SPEC = load_spec()


def resolve(node: Any) -> Any:
    """Follow one chain of local $ref pointers."""
    while isinstance(node, Mapping) and "$ref" in node:
        target: Any = SPEC
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def inline(node: Any) -> Any:
    """The node with every $ref replaced by its target (the spec has no recursive schemas)."""
    node = resolve(node)
    if isinstance(node, Mapping):
        return {key: inline(value) for key, value in node.items()}
    if isinstance(node, list):
        return [inline(value) for value in node]
    return node


def operations() -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def operation(operation_id: str) -> Mapping[str, Any]:
    for _, _, candidate in operations():
        if candidate["operationId"] == operation_id:
            return candidate
    raise KeyError(operation_id)


def ok_schema(operation_id: str) -> Any:
    return operation(operation_id)["responses"]["200"]["content"]["application/json"]["schema"]


def schema_nodes(node: Any) -> Iterator[Mapping[str, Any]]:
    """Every schema object nested in ``node`` (after inlining), ``node`` included."""
    if isinstance(node, Mapping):
        yield node
        for key, value in node.items():
            if key in {"properties"} and isinstance(value, Mapping):
                for child in value.values():
                    yield from schema_nodes(child)
            elif key in {"items", "additionalProperties", "allOf", "oneOf", "anyOf"}:
                yield from schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from schema_nodes(value)


def test_spec_is_valid_openapi_30() -> None:
    validate(SPEC)
    assert str(SPEC["openapi"]).startswith("3.0.")


def test_spec_has_exactly_the_operations_we_use() -> None:
    assert sorted(op["operationId"] for _, _, op in operations()) == sorted(STUDIO_OPERATIONS)
    assert {method for _, method, _ in operations()} == {"get"}


def test_server_and_http_basic_security() -> None:
    assert SPEC["servers"] == [{"url": "https://studio.twilio.com"}]
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes == {"accountSid_authToken": {**schemes["accountSid_authToken"]}}
    assert schemes["accountSid_authToken"]["type"] == "http"
    assert schemes["accountSid_authToken"]["scheme"] == "basic"
    for _, _, op in operations():
        assert op["security"] == [{"accountSid_authToken": []}]


@pytest.mark.parametrize("operation_id", STUDIO_OPERATIONS)
def test_every_operation_documents_the_error_body(operation_id: str) -> None:
    responses = operation(operation_id)["responses"]
    for status in ERROR_STATUSES:
        body = resolve(responses[status])["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/StudioError"}, status
    assert "Retry-After" in resolve(responses["429"])["headers"]
    assert set(resolve(SPEC["components"]["schemas"]["StudioError"])["properties"]) == {
        "code",
        "message",
        "more_info",
        "status",
    }


@pytest.mark.parametrize(
    ("operation_id", "key"),
    [
        pytest.param("ListFlow", "flows", id="flows"),
        pytest.param("ListExecution", "executions", id="executions"),
        pytest.param("ListExecutionStep", "steps", id="steps"),
    ],
)
def test_list_responses_share_one_meta_component(operation_id: str, key: str) -> None:
    body = resolve(ok_schema(operation_id))
    assert body["properties"]["meta"] == {"$ref": "#/components/schemas/PageMeta"}
    assert body["properties"][key]["type"] == "array"
    page_size = next(
        resolve(p)
        for p in operation(operation_id)["parameters"]
        if resolve(p)["name"] == "PageSize"
    )
    assert (page_size["schema"]["minimum"], page_size["schema"]["maximum"]) == (1, 1000)


def test_next_page_url_is_a_nullable_uri() -> None:
    next_page_url = SPEC["components"]["schemas"]["PageMeta"]["properties"]["next_page_url"]
    assert next_page_url == {"type": "string", "format": "uri", "nullable": True}


@pytest.mark.parametrize("operation_id", STUDIO_OPERATIONS)
def test_response_schemas_tolerate_change(operation_id: str) -> None:
    # The generated client raises on unknown enum values and on missing required fields, and
    # drops fields when additionalProperties is false: none of the three may appear.
    nodes = list(schema_nodes(inline(ok_schema(operation_id))))
    assert any(node.get("type") == "object" for node in nodes)
    for node in nodes:
        assert "enum" not in node, node
        assert "required" not in node, node
        if node.get("type") == "object":
            assert node.get("additionalProperties", True) is not False, node


@pytest.mark.parametrize(
    ("schema_name", "known"),
    [
        pytest.param("studio.v2.flow.execution", {"active", "ended"}, id="execution"),
        pytest.param("studio.v2.flow", {"draft", "published"}, id="flow"),
    ],
)
def test_status_is_a_nullable_plain_string_with_known_values(
    schema_name: str, known: set[str]
) -> None:
    status = SPEC["components"]["schemas"][schema_name]["properties"]["status"]
    assert status["type"] == "string"
    assert status["nullable"] is True
    # Subset: Twilio may add values (test_conformance checks the exact list against Twilio's).
    assert known <= set(status["x-known-values"])
    assert "$ref" not in status


@pytest.mark.parametrize(
    ("schema_name", "field"),
    [
        pytest.param("studio.v2.flow", "definition", id="flow-definition"),
        pytest.param("studio.v2.flow.execution", "context", id="execution"),
        pytest.param("studio.v2.flow.execution.execution_context", "context", id="exec-context"),
        pytest.param("studio.v2.flow.execution.execution_step", "context", id="step"),
        pytest.param(
            "studio.v2.flow.execution.execution_step.execution_step_context",
            "context",
            id="step-context",
        ),
    ],
)
def test_free_form_json_is_a_nullable_open_object(schema_name: str, field: str) -> None:
    prop = SPEC["components"]["schemas"][schema_name]["properties"][field]
    assert prop["type"] == "object"
    assert prop["nullable"] is True
    assert prop["additionalProperties"] is True
    assert "properties" not in prop


def examples() -> Iterator[Any]:
    for _, _, op in operations():
        for status, response in op["responses"].items():
            media = resolve(response)["content"]["application/json"]
            named = {name: resolve(ex)["value"] for name, ex in media.get("examples", {}).items()}
            if "example" in media:
                named["example"] = media["example"]
            for name, value in named.items():
                yield pytest.param(
                    media["schema"], value, id=f"{op['operationId']}-{status}-{name}"
                )


@pytest.mark.parametrize(("schema", "value"), list(examples()))
def test_examples_validate_against_their_schema(schema: Any, value: Any) -> None:
    OAS30Validator(inline(schema)).validate(value)


def test_every_success_response_has_an_example() -> None:
    for _, _, op in operations():
        media = op["responses"]["200"]["content"]["application/json"]
        assert media["examples"], op["operationId"]


def test_seed_payloads_are_the_step_examples() -> None:
    examples = SPEC["components"]["examples"]
    step = examples["ExecutionStep"]["value"]
    assert step["name"] == "incomingRequest"
    assert (step["transitioned_from"], step["transitioned_to"]) == ("Trigger", "Ended")
    assert "type" not in step  # the seed has no type: a missing field must parse
    assert examples["ListExecutionStepEmpty"]["value"]["steps"] == []


ACCOUNTS_SPEC_PATH = SPEC_PATH.parent / "api_v2010.yaml"


def load_accounts_spec() -> dict[str, Any]:
    document = yaml.safe_load(ACCOUNTS_SPEC_PATH.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_the_account_spec_is_valid_and_has_exactly_the_account_operations() -> None:
    spec = load_accounts_spec()
    validate(spec)
    assert spec["servers"] == [{"url": "https://api.twilio.com"}]
    found = sorted(
        (method, op["operationId"])
        for item in spec["paths"].values()
        for method, op in item.items()
    )
    assert found == sorted(("get", operation_id) for operation_id in ACCOUNT_OPERATIONS)


def test_the_account_spec_tolerates_change_and_documents_errors() -> None:
    spec = load_accounts_spec()

    def inline_accounts(node: Any) -> Any:
        while isinstance(node, Mapping) and "$ref" in node:
            target: Any = spec
            for part in str(node["$ref"]).removeprefix("#/").split("/"):
                target = target[part]
            node = target
        if isinstance(node, Mapping):
            return {key: inline_accounts(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline_accounts(value) for value in node]
        return node

    for item in spec["paths"].values():
        op = inline_accounts(item["get"])
        for status in ERROR_STATUSES:
            body = op["responses"][status]["content"]["application/json"]["schema"]
            assert set(body["properties"]) == {"code", "message", "more_info", "status"}
        media = op["responses"]["200"]["content"]["application/json"]
        for node in schema_nodes(media["schema"]):
            assert "enum" not in node, node
            assert "required" not in node, node
            if node.get("type") == "object":
                assert node.get("additionalProperties", True) is not False, node
        for example in media["examples"].values():
            OAS30Validator(media["schema"]).validate(example["value"])
    status = spec["components"]["schemas"]["api.v2010.account"]["properties"]["status"]
    assert (status["type"], status["nullable"]) == ("string", True)
    assert set(status["x-known-values"]) == {"active", "suspended", "closed"}
