"""Report what changed between two versions of a Twilio spec in the operations we use."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The Studio v2 operations the exporter calls (openapi/studio_v2.yaml, Twilio's
#: twilio_studio_v2.json); changes elsewhere in the spec do not concern us.
STUDIO_OPERATIONS: tuple[str, ...] = (
    "ListFlow",
    "FetchFlow",
    "ListExecution",
    "FetchExecution",
    "FetchExecutionContext",
    "ListExecutionStep",
    "FetchExecutionStep",
    "FetchExecutionStepContext",
)
#: The v2010 operations the exporter calls to follow subaccounts (openapi/api_v2010.yaml,
#: Twilio's twilio_api_v2010.json).
ACCOUNT_OPERATIONS: tuple[str, ...] = ("ListAccount", "FetchAccount")
#: Every operation the exporter calls. A spec holds some of them: the diff of two versions of
#: one Twilio document reports the ones that document has.
USED_OPERATIONS: tuple[str, ...] = STUDIO_OPERATIONS + ACCOUNT_OPERATIONS

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_COMPOSITES = ("allOf", "oneOf", "anyOf")
# Deep enough for any real response body; a bound keeps recursive schemas finite.
_MAX_DEPTH = 8


class SpecError(ValueError):
    """The document is not an OpenAPI spec this module can read."""


@dataclass(frozen=True, slots=True)
class TypeShape:
    """What a parameter or a response field accepts, reduced to what a client depends on.

    ``type`` is ``"any"`` where the spec leaves the type open. ``values`` are the allowed (or,
    with ``x-known-values``, the documented) string values.
    """

    type: str
    format: str | None = None
    nullable: bool = False
    required: bool = False
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    minimum: float | None = None
    maximum: float | None = None
    values: tuple[str, ...] | None = None

    def describe(self) -> str:
        """A compact one-line rendering, e.g. ``string(date-time)|null``."""
        text = self.type + (f"({self.format})" if self.format else "")
        if self.nullable:
            text += "|null"
        details = []
        if self.required:
            details.append("required")
        if self.pattern is not None:
            details.append(f"pattern={self.pattern}")
        if self.min_length is not None or self.max_length is not None:
            details.append(f"length={_bound(self.min_length)}..{_bound(self.max_length)}")
        if self.minimum is not None or self.maximum is not None:
            details.append(f"range={_bound(self.minimum)}..{_bound(self.maximum)}")
        if self.values is not None:
            details.append("values=[" + ",".join(self.values) + "]")
        return " ".join([text, *details])


@dataclass(frozen=True, slots=True)
class OperationShape:
    """One operation as a client sees it: where it lives, what it takes, what it returns.

    ``parameters`` is keyed by ``(location, name)``; ``fields`` by the dotted path of a field in
    the 200 response body, with ``[]`` for array items (``steps[].sid``).
    """

    operation_id: str
    method: str
    path: str
    servers: tuple[str, ...]
    security: tuple[str, ...]
    parameters: Mapping[tuple[str, str], TypeShape] = field(default_factory=dict)
    fields: Mapping[str, TypeShape] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference of an operation between an old and a new spec."""

    operation_id: str
    kind: str  # e.g. "field added", "parameter retyped", "path moved", "operation removed"
    subject: str
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        if self.old is not None and self.new is not None:
            detail = f"{self.old} -> {self.new}"
        else:
            detail = self.new if self.new is not None else (self.old or "")
        subject = f"{self.subject}: " if self.subject else ""
        return f"{self.kind:<19} {subject}{detail}".rstrip()


def _bound(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _resolve(spec: Mapping[str, Any], node: Any) -> Any:
    """Follow local ``$ref`` pointers (``#/components/...``) until a real node is reached."""
    seen: set[str] = set()
    while isinstance(node, Mapping) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise SpecError(f"only local $ref pointers are supported, got {ref!r}")
        if ref in seen:
            raise SpecError(f"$ref cycle at {ref}")
        seen.add(ref)
        target: Any = spec
        for part in ref[2:].split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or key not in target:
                raise SpecError(f"unresolvable $ref {ref}")
            target = target[key]
        node = target
    return node


def _flatten_composite(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Merge a one-member allOf/oneOf/anyOf (the usual way of making a $ref nullable)."""
    for keyword in _COMPOSITES:
        members = schema.get(keyword)
        if not isinstance(members, list):
            continue
        resolved = [_resolve(spec, member) for member in members]
        real = [m for m in resolved if not (isinstance(m, Mapping) and m.get("type") == "null")]
        if len(real) != 1 or not isinstance(real[0], Mapping):
            return schema
        merged = {k: v for k, v in schema.items() if k != keyword}
        merged.update(_flatten_composite(spec, real[0]))
        if len(real) != len(resolved) or schema.get("nullable") is True:
            merged["nullable"] = True
        return merged
    return schema


def _schema(spec: Mapping[str, Any], node: Any) -> Mapping[str, Any]:
    resolved = _resolve(spec, node)
    if resolved is None:
        return {}
    if not isinstance(resolved, Mapping):
        raise SpecError(f"a schema must be an object, got {resolved!r}")
    return _flatten_composite(spec, resolved)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def type_shape(schema: Mapping[str, Any], *, required: bool = False) -> TypeShape:
    """Reduce one (resolved) schema to its :class:`TypeShape`."""
    raw_type = schema.get("type")
    nullable = schema.get("nullable") is True
    if isinstance(raw_type, list):  # OpenAPI 3.1: type: [string, "null"]
        nullable = nullable or "null" in raw_type
        names = sorted(str(t) for t in raw_type if t != "null")
        type_name = "|".join(names) if names else "any"
    elif isinstance(raw_type, str):
        type_name = raw_type
    elif any(keyword in schema for keyword in _COMPOSITES):
        type_name = next(keyword for keyword in _COMPOSITES if keyword in schema)
    else:
        type_name = "any"
    enum = schema.get("enum")
    if not isinstance(enum, list):
        enum = schema.get("x-known-values")
    values = tuple(str(v) for v in enum if v is not None) if isinstance(enum, list) else None
    if isinstance(enum, list) and None in enum:
        nullable = True
    fmt = schema.get("format")
    pattern = schema.get("pattern")
    return TypeShape(
        type=type_name,
        format=fmt if isinstance(fmt, str) else None,
        nullable=nullable,
        required=required,
        pattern=pattern if isinstance(pattern, str) else None,
        min_length=_integer(schema.get("minLength")),
        max_length=_integer(schema.get("maxLength")),
        minimum=_number(schema.get("minimum")),
        maximum=_number(schema.get("maximum")),
        values=values,
    )


def _fields(
    spec: Mapping[str, Any], schema: Mapping[str, Any], prefix: str, depth: int
) -> Iterator[tuple[str, TypeShape]]:
    if depth > _MAX_DEPTH:
        return
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        required = schema.get("required")
        required_names = set(required) if isinstance(required, list) else set()
        for name, node in properties.items():
            child = _schema(spec, node)
            path = f"{prefix}{name}"
            yield path, type_shape(child, required=name in required_names)
            yield from _fields(spec, child, f"{path}.", depth + 1)
    items = schema.get("items")
    if schema.get("type") == "array" and items is not None:
        item = _schema(spec, items)
        if isinstance(item.get("properties"), Mapping):
            yield from _fields(spec, item, f"{prefix.rstrip('.')}[].", depth + 1)


def _response_schema(spec: Mapping[str, Any], operation: Mapping[str, Any]) -> Mapping[str, Any]:
    responses = operation.get("responses")
    if not isinstance(responses, Mapping):
        return {}
    response = _resolve(spec, responses.get("200", responses.get(200)))
    if not isinstance(response, Mapping):
        return {}
    content = response.get("content")
    if not isinstance(content, Mapping):
        return {}
    media = content.get("application/json")
    if not isinstance(media, Mapping) or "schema" not in media:
        return {}
    return _schema(spec, media["schema"])


def _parameters(
    spec: Mapping[str, Any], path_item: Mapping[str, Any], operation: Mapping[str, Any]
) -> dict[tuple[str, str], TypeShape]:
    shapes: dict[tuple[str, str], TypeShape] = {}
    # Path-level parameters first: the operation's own override them (OpenAPI semantics).
    for node in [*path_item.get("parameters", []), *operation.get("parameters", [])]:
        parameter = _resolve(spec, node)
        if not isinstance(parameter, Mapping):
            raise SpecError(f"a parameter must be an object, got {parameter!r}")
        key = (str(parameter.get("in")), str(parameter.get("name")))
        shapes[key] = type_shape(
            _schema(spec, parameter.get("schema")), required=parameter.get("required") is True
        )
    return shapes


def _servers(*levels: Any) -> tuple[str, ...]:
    # The most specific level that declares servers wins (operation, then path, then root).
    for servers in levels:
        if isinstance(servers, list) and servers:
            return tuple(sorted(str(s.get("url")) for s in servers if isinstance(s, Mapping)))
    return ()


def _security(spec: Mapping[str, Any], operation: Mapping[str, Any]) -> tuple[str, ...]:
    requirements = operation.get("security", spec.get("security", []))
    components = spec.get("components", {})
    schemes = components.get("securitySchemes", {}) if isinstance(components, Mapping) else {}
    described: set[str] = set()
    for requirement in requirements if isinstance(requirements, list) else []:
        if not isinstance(requirement, Mapping):
            continue
        if not requirement:
            described.add("none")
        for name in requirement:
            scheme = _resolve(spec, schemes.get(name, {})) if isinstance(schemes, Mapping) else {}
            kind = scheme.get("type", "?") if isinstance(scheme, Mapping) else "?"
            detail = scheme.get("scheme", "") if isinstance(scheme, Mapping) else ""
            described.add(f"{kind}/{detail}".lower() if detail else str(kind))
    return tuple(sorted(described))


def operation_shapes(
    spec: Mapping[str, Any], operation_ids: Iterable[str] = USED_OPERATIONS
) -> dict[str, OperationShape]:
    """The shapes of the named operations that ``spec`` has (missing ones are left out)."""
    wanted = set(operation_ids)
    paths = spec.get("paths")
    if not isinstance(paths, Mapping):
        raise SpecError("the document has no 'paths' object: is it an OpenAPI spec?")
    shapes: dict[str, OperationShape] = {}
    for path, path_item in paths.items():
        if not isinstance(path_item, Mapping):
            continue
        for method in _METHODS:
            operation = path_item.get(method)
            if not isinstance(operation, Mapping):
                continue
            operation_id = operation.get("operationId")
            if operation_id not in wanted:
                continue
            body = _response_schema(spec, operation)
            fields = dict(_fields(spec, body, "", 0))
            shapes[str(operation_id)] = OperationShape(
                operation_id=str(operation_id),
                method=method.upper(),
                path=str(path),
                servers=_servers(
                    operation.get("servers"), path_item.get("servers"), spec.get("servers")
                ),
                security=_security(spec, operation),
                parameters=_parameters(spec, path_item, operation),
                fields=fields,
            )
    return shapes


def _diff_keyed(
    operation_id: str,
    noun: str,
    old: Mapping[Any, TypeShape],
    new: Mapping[Any, TypeShape],
    label: Any,
) -> Iterator[Change]:
    for key in sorted(old.keys() | new.keys(), key=str):
        subject = label(key)
        if key not in new:
            yield Change(operation_id, f"{noun} removed", subject, old=old[key].describe())
        elif key not in old:
            yield Change(operation_id, f"{noun} added", subject, new=new[key].describe())
        elif old[key] != new[key]:
            yield Change(
                operation_id, f"{noun} retyped", subject, old[key].describe(), new[key].describe()
            )


def diff_operations(old: OperationShape, new: OperationShape) -> list[Change]:
    """Every difference between two shapes of the same operation."""
    op = old.operation_id
    changes: list[Change] = []
    if old.path != new.path:
        changes.append(Change(op, "path moved", "", old.path, new.path))
    if old.method != new.method:
        changes.append(Change(op, "method changed", "", old.method, new.method))
    if old.servers != new.servers:
        changes.append(
            Change(op, "servers changed", "", " ".join(old.servers), " ".join(new.servers))
        )
    if old.security != new.security:
        changes.append(
            Change(op, "security changed", "", " ".join(old.security), " ".join(new.security))
        )

    def parameter_label(key: tuple[str, str]) -> str:
        return f"{key[0]} {key[1]}"

    changes.extend(_diff_keyed(op, "parameter", old.parameters, new.parameters, parameter_label))
    changes.extend(_diff_keyed(op, "field", old.fields, new.fields, str))
    return changes


def diff_specs(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    operation_ids: Iterable[str] = USED_OPERATIONS,
) -> list[Change]:
    """What changed from ``old`` to ``new`` in the named operations, in operation order."""
    ids = tuple(operation_ids)
    old_shapes = operation_shapes(old, ids)
    new_shapes = operation_shapes(new, ids)
    changes: list[Change] = []
    for operation_id in ids:
        before, after = old_shapes.get(operation_id), new_shapes.get(operation_id)
        if before is None and after is None:
            continue
        if after is None:
            assert before is not None  # narrowed by the check above
            changes.append(
                Change(operation_id, "operation removed", "", f"{before.method} {before.path}")
            )
        elif before is None:
            changes.append(
                Change(operation_id, "operation added", "", new=f"{after.method} {after.path}")
            )
        else:
            changes.extend(diff_operations(before, after))
    return changes


def format_report(changes: Sequence[Change], old_name: str, new_name: str) -> str:
    """The human-readable report ``main`` prints, grouped by operation."""
    if not changes:
        return f"No changes in the operations we use ({old_name} -> {new_name}).\n"
    lines = [f"Changes in the operations we use ({old_name} -> {new_name}):"]
    current = None
    for change in changes:
        if change.operation_id != current:
            current = change.operation_id
            lines.append(current)
        lines.append(f"  {change}")
    lines.append(f"{len(changes)} change{'s' if len(changes) != 1 else ''}.")
    return "\n".join(lines) + "\n"


def load_spec(path: Path) -> dict[str, Any]:
    """Read a spec from JSON (``.json``) or YAML (anything else); SpecError if unreadable."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"{path}: invalid JSON: {error}") from error
    else:
        # PyYAML is a dev dependency: only this developer command needs it.
        import yaml

        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise SpecError(f"{path}: invalid YAML: {error}") from error
    if not isinstance(document, dict):
        raise SpecError(f"{path}: not a JSON/YAML object")
    return document


_USAGE = (
    "usage: spec-diff OLD NEW\n"
    "Report what changed between two versions of a Twilio spec (JSON or YAML: Studio v2 or\n"
    f"API v2010) in the operations the exporter uses: {', '.join(USED_OPERATIONS)}.\n"
    "Exit status: 0 no changes, 1 changes, 2 error.\n"
)


def main(argv: Sequence[str]) -> int:
    """``spec-diff OLD NEW``: print the changes; exit 0 if none, 1 if some, 2 on error."""
    if list(argv) in (["-h"], ["--help"]):
        sys.stdout.write(_USAGE)
        return 0
    if len(argv) != 2:
        sys.stderr.write(_USAGE)
        return 2
    old_path, new_path = Path(argv[0]), Path(argv[1])
    try:
        changes = diff_specs(load_spec(old_path), load_spec(new_path))
    except (OSError, SpecError) as error:
        print(f"spec-diff: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(format_report(changes, str(old_path), str(new_path)))
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
