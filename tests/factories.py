"""Small factories for domain objects, shared by the test modules."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from studio_exporter.core.domain import TRIGGER, Execution, Flow, Step, Transition, Widget

ACCOUNT_SID = "AC" + "a" * 32
FLOW_SID = "FW" + "a" * 32
EXECUTION_SID = "FN" + "a" * 32
#: The seed payload's timestamp; every factory time is an offset in seconds from it.
BASE_TIME = datetime(2017, 11, 6, 12, 0, 0, tzinfo=UTC)

_step_numbers = itertools.count(1)


def at(seconds: float) -> datetime:
    """The time ``seconds`` after ``BASE_TIME``."""
    return BASE_TIME + timedelta(seconds=seconds)


def step_sid(number: int) -> str:
    """A well-formed step SID carrying ``number`` (so tests can name steps by number)."""
    return f"FT{number:032x}"


def make_execution(
    *,
    sid: str = EXECUTION_SID,
    flow_sid: str = FLOW_SID,
    status: str = "active",
    created: float = 0,
    account_sid: str = ACCOUNT_SID,
) -> Execution:
    """An execution created ``created`` seconds after ``BASE_TIME``."""
    return Execution(
        sid=sid,
        flow_sid=flow_sid,
        account_sid=account_sid,
        status=status,
        date_created=at(created),
    )


def make_step(
    transitioned_from: str,
    transitioned_to: str,
    second: float = 0,
    *,
    number: int | None = None,
    event: str = "next",
    widget_type: str = "set-variables",
    parent_step_sid: str | None = None,
    flow_sid: str = FLOW_SID,
    execution_sid: str = EXECUTION_SID,
) -> Step:
    """A step ``second`` seconds after ``BASE_TIME``; its SID carries ``number`` if given."""
    return Step(
        sid=step_sid(next(_step_numbers) if number is None else number),
        flow_sid=flow_sid,
        execution_sid=execution_sid,
        event=event,
        transitioned_from=transitioned_from,
        transitioned_to=transitioned_to,
        widget_type=widget_type,
        date_created=at(second),
        parent_step_sid=parent_step_sid,
        account_sid=ACCOUNT_SID,
    )


def make_chain(
    widgets: Sequence[str],
    seconds: Sequence[float],
    *,
    first_number: int | None = None,
    parent_step_sid: str | None = None,
    flow_sid: str = FLOW_SID,
) -> list[Step]:
    """Steps walking through ``widgets`` (``widgets[i]`` to ``widgets[i+1]`` at ``seconds[i]``).

    With ``first_number`` the steps are numbered from it in walk order.
    """
    if len(seconds) != len(widgets) - 1:
        raise ValueError("a chain through n widgets has n - 1 steps")
    return [
        make_step(
            widgets[index],
            widgets[index + 1],
            second,
            number=None if first_number is None else first_number + index,
            parent_step_sid=parent_step_sid,
            flow_sid=flow_sid,
        )
        for index, second in enumerate(seconds)
    ]


def make_flow(
    widget_types: Mapping[str, str],
    *,
    sid: str = FLOW_SID,
    name: str = "test flow",
    initial_widget: str = TRIGGER,
    transitions: Mapping[str, Sequence[tuple[str, str | None]]] | None = None,
) -> Flow:
    """A flow whose definition has the widgets named in ``widget_types`` (name to type)."""
    edges = transitions or {}
    return Flow(
        sid=sid,
        account_sid=ACCOUNT_SID,
        name=name,
        status="published",
        revision=1,
        widgets=tuple(
            Widget(
                name=widget,
                type=widget_type,
                transitions=tuple(
                    Transition(event, target) for event, target in edges.get(widget, ())
                ),
            )
            for widget, widget_type in widget_types.items()
        ),
        initial_widget=initial_widget,
    )


def survey() -> tuple[Execution, tuple[Step, Step, Step], Flow]:
    """A small SMS survey: Trigger -> ask -> confirm -> Ended, at seconds 1, 5 and 9 after the
    execution's creation; the execution, its three steps and the flow."""
    steps = (
        make_step("Trigger", "ask", 1, number=1, widget_type="trigger", event="incomingMessage"),
        make_step("ask", "confirm", 5, number=2, widget_type="send-and-wait-for-reply"),
        make_step("confirm", "Ended", 9, number=3, widget_type="split-based-on", event="match"),
    )
    flow = Flow(
        sid=FLOW_SID,
        account_sid=ACCOUNT_SID,
        name="Survey",
        status="published",
        revision=1,
        widgets=(
            Widget("Trigger", "trigger"),
            Widget("ask", "send-and-wait-for-reply"),
            Widget("confirm", "split-based-on"),
        ),
    )
    return make_execution(), steps, flow
