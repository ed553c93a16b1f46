"""Whether the project's spec (openapi/) agrees with Twilio's, in the operations the exporter uses.

Shared by the conformance test and ``scripts/spec_check.py`` (``make spec-check``), so a user's
check of a freshly downloaded spec is the same check the test suite runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from studio_exporter.spec.specdiff import STUDIO_OPERATIONS, TypeShape, operation_shapes

#: The wording of a problem where Twilio has something openapi/ lacks: an additive change.
MISSING_FROM_OURS = "missing from openapi/"


def conforms(theirs: TypeShape, ours: TypeShape) -> bool:
    """Whether our shape accepts all Twilio documents and describes them the same way.

    Deliberate, documented latitude: where Twilio leaves the type open we may name it (context,
    definition), and we may allow null where Twilio does not. Everything else must be equal:
    type, format, pattern, lengths, ranges, required, and the (known) values of a status.
    """
    if theirs.type != "any" and (theirs.type, theirs.format) != (ours.type, ours.format):
        return False
    if theirs.nullable and not ours.nullable:
        return False
    return (
        theirs.pattern,
        theirs.min_length,
        theirs.max_length,
        theirs.minimum,
        theirs.maximum,
        theirs.required,
        theirs.values,
    ) == (
        ours.pattern,
        ours.min_length,
        ours.max_length,
        ours.minimum,
        ours.maximum,
        ours.required,
        ours.values,
    )


def _keyed_problems(
    operation_id: str, noun: str, theirs: Mapping[Any, TypeShape], ours: Mapping[Any, TypeShape]
) -> list[str]:
    problems = []
    for key in sorted(theirs.keys() | ours.keys(), key=str):
        name = " ".join(key) if isinstance(key, tuple) else key  # ("query", "status")
        if key not in ours:
            problems.append(f"{operation_id}: {noun} {name} {MISSING_FROM_OURS}")
        elif key not in theirs:
            problems.append(f"{operation_id}: {noun} {name} is not in Twilio's spec")
        elif not conforms(theirs[key], ours[key]):
            problems.append(
                f"{operation_id}: {noun} {name}: Twilio {theirs[key].describe()}, "
                f"ours {ours[key].describe()}"
            )
    return problems


def disagreements(
    reference: Mapping[str, Any],
    ours: Mapping[str, Any],
    operation_ids: tuple[str, ...] = STUDIO_OPERATIONS,
) -> list[str]:
    """Every way ``ours`` departs from ``reference`` in the operations we use.

    ``operation_ids``: the Studio operations by default; ``specdiff.ACCOUNT_OPERATIONS`` with
    the v2010 specs.
    """
    theirs_shapes = operation_shapes(reference, operation_ids)
    our_shapes = operation_shapes(ours, operation_ids)
    problems: list[str] = []
    for operation_id in operation_ids:
        theirs, mine = theirs_shapes.get(operation_id), our_shapes.get(operation_id)
        if theirs is None or mine is None:
            where = "Twilio's spec" if theirs is None else "openapi/"
            problems.append(f"{operation_id}: missing from {where}")
            continue
        for aspect in ("path", "method", "servers", "security"):
            if getattr(theirs, aspect) != getattr(mine, aspect):
                problems.append(
                    f"{operation_id}: {aspect} Twilio {getattr(theirs, aspect)!r}, "
                    f"ours {getattr(mine, aspect)!r}"
                )
        problems += _keyed_problems(operation_id, "parameter", theirs.parameters, mine.parameters)
        problems += _keyed_problems(operation_id, "field", theirs.fields, mine.fields)
    return problems
