"""Tests for the pure transform from Studio steps to an execution's visits and gaps."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from studio_exporter.core.domain import ENDED, TRIGGER, Execution, ExecutionPath, Flow, Step, Visit
from studio_exporter.core.transform import UNKNOWN_WIDGET_TYPE, build_path, ready_steps
from tests.factories import (
    BASE_TIME,
    FLOW_SID,
    at,
    make_chain,
    make_execution,
    make_flow,
    make_step,
    step_sid,
)

SUBFLOW_SID = "FW" + "b" * 32

VisitRow = tuple[str, float, float | None, int | None]  # widget, entered, left, parent step
GapRow = tuple[int | None, int]  # before, after (step numbers)


def number(step: Step | None) -> int | None:
    return None if step is None else int(step.sid[2:], 16)


def seconds(moment: datetime | None) -> float | None:
    return None if moment is None else (moment - BASE_TIME).total_seconds()


def visit_rows(path: ExecutionPath) -> list[VisitRow]:
    return [
        (
            visit.widget,
            (visit.entered_at - BASE_TIME).total_seconds(),
            seconds(visit.left_at),
            None if visit.parent_step_sid is None else int(visit.parent_step_sid[2:], 16),
        )
        for visit in path.visits
    ]


def gap_rows(path: ExecutionPath) -> list[GapRow]:
    return [(number(gap.before), int(gap.after.sid[2:], 16)) for gap in path.gaps]


def step_numbers(path: ExecutionPath) -> list[int]:
    return [int(step.sid[2:], 16) for step in path.steps]


def sub(widgets: Sequence[str], times: Sequence[float], first: int, parent: int) -> list[Step]:
    """A subflow chain run by step number ``parent``."""
    return make_chain(
        widgets,
        times,
        first_number=first,
        parent_step_sid=step_sid(parent),
        flow_sid=SUBFLOW_SID,
    )


LINEAR = make_chain([TRIGGER, "a", "b", ENDED], [1, 5, 7], first_number=1)
SAME_SECOND = [
    make_step(TRIGGER, "a", 3, number=4),
    make_step("a", "b", 3, number=2),
    make_step("b", "c", 3, number=3),
    make_step("c", ENDED, 3, number=1),
]
# A split that loops back through "a" twice within one second, then leaves for "b".
LOOPS = [
    make_step(TRIGGER, "split", 1, number=10),
    make_step("split", "a", 2, number=5),
    make_step("a", "split", 2, number=7),
    make_step("split", "a", 2, number=3),
    make_step("a", "split", 2, number=2),
    make_step("split", "b", 2, number=1),
    make_step("b", ENDED, 4, number=11),
]
# The loop's exit has the smallest sid: taking it first would strand the loop as a gap.
LOOP_EXIT_FIRST_BY_SID = [
    make_step(TRIGGER, "split", 2, number=9),
    make_step("split", "b", 2, number=1),
    make_step("split", "a", 2, number=8),
    make_step("a", "split", 2, number=7),
    make_step("b", ENDED, 2, number=2),
]
PARENT_FIRST = make_step(TRIGGER, "sub", 1, number=1, widget_type="trigger")
PARENT_NEXT = make_step("sub", ENDED, 5, number=4, event="completed", widget_type="run-subflow")


@pytest.mark.parametrize(
    ("status", "steps", "visits", "gaps"),
    [
        pytest.param(
            "ended",
            [
                make_step(
                    TRIGGER, ENDED, 0, number=1, event="incomingRequest", widget_type="trigger"
                )
            ],
            [(TRIGGER, 0, 0, None)],
            [],
            id="seed-payload-trigger-to-ended",
        ),
        pytest.param(
            "ended",
            LINEAR,
            [(TRIGGER, 0, 1, None), ("a", 1, 5, None), ("b", 5, 7, None)],
            [],
            id="linear",
        ),
        pytest.param(
            "ended",
            SAME_SECOND,
            [(TRIGGER, 0, 3, None), ("a", 3, 3, None), ("b", 3, 3, None), ("c", 3, 3, None)],
            [],
            id="same-second-ties-newest-first",
        ),
        pytest.param(
            "ended",
            list(reversed(LOOPS)),
            [
                (TRIGGER, 0, 1, None),
                ("split", 1, 2, None),
                ("a", 2, 2, None),
                ("split", 2, 2, None),
                ("a", 2, 2, None),
                ("split", 2, 2, None),
                ("b", 2, 4, None),
            ],
            [],
            id="same-second-loops",
        ),
        pytest.param(
            "ended",
            LOOP_EXIT_FIRST_BY_SID,
            [
                (TRIGGER, 0, 2, None),
                ("split", 2, 2, None),
                ("a", 2, 2, None),
                ("split", 2, 2, None),
                ("b", 2, 2, None),
            ],
            [],
            id="same-second-loop-before-exit-with-smaller-sid",
        ),
        pytest.param(
            "active",
            make_chain([TRIGGER, "ask"], [1], first_number=1),
            [(TRIGGER, 0, 1, None), ("ask", 1, None, None)],
            [],
            id="waiting-open-visit",
        ),
        pytest.param(
            "active",
            [],
            [(TRIGGER, 0, None, None)],
            [],
            id="no-steps-yet",
        ),
        pytest.param(
            "ended",
            [],
            [],
            [],
            id="ended-without-steps-invents-nothing",
        ),
        pytest.param(
            "ended",
            make_chain([TRIGGER, "a", "b"], [1, 2], first_number=1),
            [(TRIGGER, 0, 1, None), ("a", 1, 2, None)],
            [],
            id="ended-without-end-step-has-no-open-visit",
        ),
        pytest.param(
            "ended",
            [LINEAR[0], LINEAR[2]],
            [(TRIGGER, 0, 1, None)],
            [(1, 3)],
            id="gap-in-the-middle",
        ),
        pytest.param(
            "ended",
            [
                make_step(TRIGGER, "a", 1, number=1),
                make_step("b", "c", 3, number=3),
                make_step("c", ENDED, 4, number=4),
            ],
            [(TRIGGER, 0, 1, None), ("c", 3, 4, None)],
            [(1, 3)],
            id="gap-then-chain-resumes",
        ),
        pytest.param(
            "ended",
            LINEAR[1:],
            [("b", 5, 7, None)],
            [(None, 2)],
            id="missing-first-step",
        ),
        pytest.param(
            "ended",
            [*LINEAR, *LINEAR, LINEAR[1]],
            [(TRIGGER, 0, 1, None), ("a", 1, 5, None), ("b", 5, 7, None)],
            [],
            id="duplicate-steps",
        ),
        pytest.param(
            "ended",
            [LINEAR[1], LINEAR[2], LINEAR[0]],
            [(TRIGGER, 0, 1, None), ("a", 1, 5, None), ("b", 5, 7, None)],
            [],
            id="any-input-order",
        ),
        pytest.param(
            "ended",
            [
                PARENT_NEXT,
                *reversed(sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=1)),
                PARENT_FIRST,
            ],
            [
                (TRIGGER, 0, 1, None),
                ("sub", 1, 5, None),
                (TRIGGER, 1, 2, 1),
                ("s1", 2, 4, 1),
            ],
            [],
            id="subflow-nests-under-parent-step",
        ),
        pytest.param(
            "ended",
            sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=9),
            [("s1", 2, 4, 9)],
            [(None, 2)],
            id="subflow-with-missing-parent-step",
        ),
        pytest.param(
            "ended",
            [
                *make_chain([TRIGGER, "a", ENDED], [1, 2], first_number=1),
                *make_chain(["x", "y", "z"], [3, 4], first_number=3),
            ],
            [(TRIGGER, 0, 1, None), ("a", 1, 2, None)],
            [(2, 3), (3, 4)],
            id="steps-after-ended",
        ),
        pytest.param(
            "ended",
            [
                make_step(TRIGGER, "a", 1, number=1),
                make_step("a", ENDED, 2, number=2),
                make_step(ENDED, "b", 3, number=3),
            ],
            [(TRIGGER, 0, 1, None), ("a", 1, 2, None)],
            [(2, 3)],
            id="nothing-leaves-ended",
        ),
        pytest.param(
            "ended",
            [make_step(TRIGGER, "a", 5, number=1), make_step("a", ENDED, 3, number=2)],
            [],
            [(None, 2), (2, 1)],
            id="steps-out-of-time-order-are-gaps",
        ),
    ],
)
def test_build_path_examples(
    status: str, steps: list[Step], visits: list[VisitRow], gaps: list[GapRow]
) -> None:
    path = build_path(make_execution(status=status), steps)

    assert visit_rows(path) == visits
    assert gap_rows(path) == gaps
    assert sorted(step_numbers(path)) == sorted({number(s) for s in steps})  # type: ignore[type-var]


@pytest.mark.parametrize(
    ("steps", "order"),
    [
        pytest.param(LINEAR, [1, 2, 3], id="linear"),
        pytest.param(SAME_SECOND, [4, 2, 3, 1], id="same-second-chain-not-sid-order"),
        pytest.param(LOOP_EXIT_FIRST_BY_SID, [9, 8, 7, 1, 2], id="loop-before-exit"),
        pytest.param(
            [PARENT_NEXT, *sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=1), PARENT_FIRST],
            [1, 2, 3, 4],
            id="subflow-between-parent-steps",
        ),
        pytest.param(
            [
                make_step(TRIGGER, "sub", 1, number=5),
                make_step("sub", "after", 1, number=1),
                *sub([TRIGGER, "s1", ENDED], [1, 1], first=2, parent=5),
            ],
            [5, 2, 3, 1],
            id="same-second-subflow-after-its-parent-step",
        ),
    ],
)
def test_steps_are_in_path_order(steps: list[Step], order: list[int]) -> None:
    path = build_path(make_execution(status="ended"), steps)

    assert step_numbers(path) == order


def test_same_second_loops_follow_the_chain() -> None:
    path = build_path(make_execution(status="ended"), reversed(LOOPS))

    assert not path.gaps
    assert [s.transitioned_from for s in path.steps] == [
        TRIGGER, "split", "a", "split", "a", "split", "b",
    ]  # fmt: skip
    assert all(a.transitioned_to == b.transitioned_from for a, b in pairwise(path.steps))


def test_same_second_gap_ends_where_the_next_second_continues() -> None:
    # In second 2, "a" -> "b" continues the chain; "x" -> "y" and "p" -> "q" are stranded
    # (their entering steps are lost). The next second leaves "q", so "p" -> "q" goes last.
    steps = [
        make_step(TRIGGER, "a", 1, number=10),
        make_step("a", "b", 2, number=20),
        make_step("p", "q", 2, number=2),
        make_step("x", "y", 2, number=3),
        make_step("q", ENDED, 3, number=30),
    ]
    path = build_path(make_execution(status="ended"), steps)

    assert step_numbers(path) == [10, 20, 3, 2, 30]
    assert gap_rows(path) == [(20, 3), (3, 2)]
    assert visit_rows(path) == [(TRIGGER, 0, 1, None), ("a", 1, 2, None), ("q", 2, 3, None)]


@pytest.mark.parametrize(
    ("steps", "order", "gaps"),
    [
        pytest.param(
            [
                make_step(TRIGGER, "w2", 0, number=10),
                make_step("w2", "w1", 0, number=11),
                make_step("w1", "w0", 0, number=12),
                make_step("w0", "w2", 0, number=13),
                make_step("w0", "w2", 0, number=14),
                make_step("w2", ENDED, 0, number=1),
            ],
            [10, 11, 12, 13, 14, 1],
            [(13, 14)],
            id="end-comes-last-when-a-stranded-step-rejoins",
        ),
        pytest.param(
            [
                make_step(TRIGGER, "a", 0, number=10),
                make_step("a", ENDED, 0, number=11),
                make_step("x", "y", 0, number=1),
            ],
            [10, 11, 1],
            [(11, 1)],
            id="stranded-step-after-end-breaks-less-than-inside",
        ),
    ],
)
def test_same_second_end_with_lost_steps(
    steps: list[Step], order: list[int], gaps: list[GapRow]
) -> None:
    path = build_path(make_execution(status="ended"), reversed(steps))

    assert step_numbers(path) == order
    assert gap_rows(path) == gaps


def test_subflow_visits_carry_parent_and_flow() -> None:
    steps = [
        PARENT_FIRST,
        *sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=1),
        PARENT_NEXT,
    ]
    path = build_path(make_execution(status="ended"), steps)

    subflow_visits = [v for v in path.visits if v.parent_step_sid is not None]
    assert {v.parent_step_sid for v in subflow_visits} == {PARENT_FIRST.sid}
    assert {v.flow_sid for v in subflow_visits} == {SUBFLOW_SID}
    assert subflow_visits[0].entered_at == PARENT_FIRST.date_created
    assert subflow_visits[0].entry_step is None
    assert path.end_step == PARENT_NEXT
    assert not path.gaps


def test_subflow_with_missing_parent_gap_names_the_parent() -> None:
    steps = sub([TRIGGER, "s1"], [2], first=2, parent=9)
    path = build_path(make_execution(status="active"), steps)

    [gap] = path.gaps
    assert gap.before is None
    assert gap.after == steps[0]
    assert gap.parent_step_sid == step_sid(9)
    assert gap.execution_sid == make_execution().sid
    assert visit_rows(path) == [(TRIGGER, 0, None, None), ("s1", 2, None, 9)]


@pytest.mark.parametrize(
    ("flow", "widget_type"),
    [
        pytest.param(None, UNKNOWN_WIDGET_TYPE, id="no-flow"),
        pytest.param(make_flow({TRIGGER: "trigger"}), UNKNOWN_WIDGET_TYPE, id="widget-not-in-flow"),
        pytest.param(
            make_flow({TRIGGER: "trigger", "ask": "send-and-wait-for-reply"}),
            "send-and-wait-for-reply",
            id="widget-in-flow",
        ),
    ],
)
def test_open_visit_type_comes_from_the_flow(flow: Flow | None, widget_type: str) -> None:
    steps = [make_step(TRIGGER, "ask", 1, widget_type="trigger")]
    path = build_path(make_execution(status="active"), steps, flow)

    closed, open_visit = path.visits
    assert closed.widget_type == "trigger"
    assert open_visit.is_open
    assert open_visit.widget_type == widget_type
    assert open_visit.entry_step == steps[0]


def test_closed_visit_without_step_type_falls_back_to_the_flow() -> None:
    flow = make_flow({TRIGGER: "trigger", "a": "split-based-on"})
    steps = [
        make_step(TRIGGER, "a", 1, widget_type=""),
        make_step("a", "b", 2, widget_type=""),
        make_step("b", ENDED, 3, widget_type=""),
    ]
    path = build_path(make_execution(status="ended"), steps, flow)

    assert [v.widget_type for v in path.visits] == ["trigger", "split-based-on", "unknown"]


def test_flow_initial_widget_starts_the_chain() -> None:
    flow = make_flow({"Start": "trigger"}, initial_widget="Start")
    steps = [make_step("Start", "a", 1, number=1), make_step("a", ENDED, 2, number=2)]
    path = build_path(make_execution(status="ended"), steps, flow)

    assert visit_rows(path) == [("Start", 0, 1, None), ("a", 1, 2, None)]
    assert not path.gaps


def test_clock_skew_is_kept_not_clamped() -> None:
    steps = [make_step(TRIGGER, ENDED, 0)]
    path = build_path(make_execution(status="ended", created=2), steps)

    [visit] = path.visits
    assert visit.duration_seconds == -2.0


def test_visit_links_entry_and_exit_steps() -> None:
    path = build_path(make_execution(status="ended"), LINEAR)

    assert [(number(v.entry_step), number(v.exit_step)) for v in path.visits] == [
        (None, 1),
        (1, 2),
        (2, 3),
    ]
    assert [v.event for v in path.visits] == ["next"] * 3
    assert path.final_widget == "b"
    assert path.ended_at == at(7)


def test_nested_subflows_nest_under_their_own_parent_step() -> None:
    steps = [
        make_step(TRIGGER, "sub", 1, number=1),
        *sub([TRIGGER, "inner"], [2], first=2, parent=1),
        *sub([TRIGGER, "s1"], [3], first=3, parent=2),
    ]
    path = build_path(make_execution(status="active"), reversed(steps))

    assert not path.gaps
    assert step_numbers(path) == [1, 2, 3]
    assert visit_rows(path) == [
        (TRIGGER, 0, 1, None),
        ("sub", 1, None, None),
        (TRIGGER, 1, 2, 1),
        ("inner", 2, None, 1),
        (TRIGGER, 2, 3, 2),
        ("s1", 3, None, 2),
    ]


def test_step_that_names_itself_as_parent_does_not_loop_forever() -> None:
    own = make_step(TRIGGER, "a", 1, number=1, parent_step_sid=step_sid(1))
    path = build_path(make_execution(status="active"), [own])

    assert step_numbers(path) == [1]
    assert sorted(visit_rows(path), key=str) == sorted(
        [(TRIGGER, 0, None, None), (TRIGGER, 1, 1, 1), ("a", 1, None, 1)], key=str
    )


@pytest.mark.parametrize(
    "order",
    [pytest.param([0, 1], id="older-record-first"), pytest.param([1, 0], id="newer-record-first")],
)
def test_differing_copies_of_a_step_resolve_the_same_way(order: list[int]) -> None:
    copies = [
        make_step(TRIGGER, "a", 1, number=1, event="incomingMessage"),
        make_step(TRIGGER, "a", 1, number=1, event="incomingCall"),
    ]
    path = build_path(make_execution(), [copies[index] for index in order])

    assert [s.event for s in path.steps] == ["incomingCall"]


def test_large_same_second_group_stays_a_chain() -> None:
    # A tight loop that Studio logged within one second, listed newest first.
    widgets = [TRIGGER, *(["split", "work"] * 200), "done", ENDED]
    steps = make_chain(widgets, [7] * (len(widgets) - 1))
    path = build_path(make_execution(status="ended"), reversed(steps))

    assert not path.gaps
    assert [s.transitioned_from for s in path.steps] == widgets[:-1]


def test_input_is_consumed_once() -> None:
    path = build_path(make_execution(status="ended"), iter(LINEAR))

    assert step_numbers(path) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Property tests over generated executions.

PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DURATIONS = st.sampled_from([0, 0, 0, 0, 1, 1, 2, 5, 60, 3600])
SUBFLOW_WIDGET = "sub"
T = TypeVar("T")
Graph = dict[str, list[tuple[str, str]]]  # widget -> [(event, next widget)]


@dataclass
class Generated:
    """An execution walked over a random flow, with the visits that really happened."""

    execution: Execution
    steps: list[Step]  # in walk order
    visits: list[tuple[str, datetime, datetime | None, str | None]] = field(default_factory=list)
    # Steps whose loss leaves a subflow without a known start: the step into the run-subflow
    # widget, and under the "out" reading also the step out of it (its parent_step_sid).
    parents: set[str] = field(default_factory=set)
    #: Which step a subflow's parent_step_sid names: "into" or "out of" the run-subflow widget.
    reading: str = "into"
    flow: Flow | None = None  # the flow definition given to the transform, if any


@dataclass
class _Walker:
    draw: Any
    rng: random.Random
    subgraph: Graph
    budget: int
    min_duration: int
    out: Generated
    sids: int = 0

    def new_sid(self) -> str:
        # Random high bits so sid order is not walk order; the count keeps sids distinct.
        self.sids += 1
        return f"FT{self.rng.getrandbits(96):024x}{self.sids:08x}"

    def step(
        self,
        widget: str,
        entered: datetime,
        earliest: datetime,
        parent: str | None,
        graph: Graph,
        sid: str | None = None,
    ) -> Step | None:
        """Leave ``widget`` (entered at ``entered``) at or after ``earliest``; None: budget out."""
        if self.budget == 0:
            self.out.visits.append((widget, entered, None, parent))
            return None
        self.budget -= 1
        left = earliest + (at(max(self.min_duration, self.draw(DURATIONS))) - BASE_TIME)
        event, target = self.draw(st.sampled_from(graph[widget]))
        made = Step(
            sid=sid or self.new_sid(),
            flow_sid=SUBFLOW_SID if parent else FLOW_SID,
            execution_sid=self.out.execution.sid,
            event=event,
            transitioned_from=widget,
            transitioned_to=target,
            widget_type="run-subflow" if widget == SUBFLOW_WIDGET else "split-based-on",
            date_created=left,
            parent_step_sid=parent,
        )
        self.out.steps.append(made)
        self.out.visits.append((widget, entered, left, parent))
        return made

    def walk(self, graph: Graph, start: datetime, parent: str | None) -> datetime | None:
        """Walk from Trigger to Ended: the time it ended, or None if the budget ran out first."""
        widget, entered = TRIGGER, start
        entry: Step | None = None
        while widget != ENDED:
            earliest = entered
            exit_sid = None
            if widget == SUBFLOW_WIDGET and entry is not None:
                # The step out of the widget exists only later, but its sid is known now: the
                # "out" reading names it in the subflow's steps (Twilio could, sids are opaque).
                exit_sid = self.new_sid()
                named = entry.sid if self.out.reading == "into" else exit_sid
                self.out.parents.update({entry.sid, named})
                # The parent leaves the subflow widget only after the subflow it ran ended.
                # A subflow without a step yet leaves no trace: only the parent's visit shows.
                finished = self.walk(self.subgraph, entered, named) if self.budget else None
                if finished is None:
                    self.out.visits.append((widget, entered, None, parent))
                    return None
                earliest = finished
            entry = self.step(widget, entered, earliest, parent, graph, exit_sid)
            if entry is None:
                return None
            widget, entered = entry.transitioned_to, entry.date_created
        return entered


def _graph(draw: Any, names: list[str], targets: list[str], *, acyclic: bool = False) -> Graph:
    """Each widget's events and where they lead; ``acyclic``: only to widgets after it.

    ``targets`` lists the widgets of ``names[1:]`` in the same order, then the ends.
    """
    return {
        name: [
            (f"e{index}", draw(st.sampled_from(targets[position:] if acyclic else targets)))
            for index in range(draw(st.integers(1, 3)))
        ]
        for position, name in enumerate(names)
    }


@st.composite
def generated(
    draw: Any,
    *,
    min_duration: int = 0,
    subflows: bool = True,
    reading: str | None = None,
    acyclic: bool = False,
) -> Generated:
    """A random walk; ``reading`` (drawn when None) is what a subflow's parent_step_sid names.

    Under the "out" reading steps take at least a second: a subflow that shares the second of
    both steps around its run-subflow widget fits either visit, and only the order of readings
    the transform prefers (the visit the parent step opened) decides, which the "into" walks
    test. The flow definition is given, as the exporter has it: without it, a subflow whose
    parent step (the step out) does not exist yet cannot be told from one that lost its own.
    """
    widgets = [f"w{index}" for index in range(draw(st.integers(1, 4)))]
    if subflows and draw(st.booleans()):
        widgets.append(SUBFLOW_WIDGET)
    graph = _graph(draw, [TRIGGER, *widgets], [*widgets, ENDED, ENDED], acyclic=acyclic)
    subgraph = _graph(draw, [TRIGGER, "s0", "s1"], ["s0", "s1", ENDED], acyclic=acyclic)
    execution_sid = f"FN{draw(st.integers(0, 2**128 - 1)):032x}"
    reading = reading or draw(st.sampled_from(["into", "out"]))
    types = {TRIGGER: "trigger"} | {
        widget: "run-subflow" if widget == SUBFLOW_WIDGET else "split-based-on"
        for widget in widgets
    }
    flow = make_flow(types) if reading == "out" or draw(st.booleans()) else None
    if reading == "out":
        min_duration = max(min_duration, 1)
    out = Generated(
        execution=make_execution(sid=execution_sid), steps=[], reading=reading, flow=flow
    )
    walker = _Walker(
        draw=draw,
        rng=draw(st.randoms(use_true_random=False)),
        subgraph=subgraph,
        budget=draw(st.integers(0, 30)),
        min_duration=min_duration,
        out=out,
    )
    finished = walker.walk(graph, BASE_TIME, None)
    out.execution = replace(out.execution, status="active" if finished is None else "ended")
    return out


def build(run: Generated, steps: Iterable[Step]) -> ExecutionPath:
    return build_path(run.execution, steps, run.flow)


def _visit_multiset(
    visits: Sequence[Visit] | Sequence[tuple[str, datetime, datetime | None, str | None]],
) -> Counter[tuple[str, datetime, datetime | None, str | None]]:
    rows = [
        (v.widget, v.entered_at, v.left_at, v.parent_step_sid) if isinstance(v, Visit) else v
        for v in visits
    ]
    return Counter(rows)


def _chains(path: ExecutionPath) -> dict[str | None, list[Visit]]:
    chains: dict[str | None, list[Visit]] = {}
    for visit in path.visits:
        chains.setdefault(visit.parent_step_sid, []).append(visit)
    return chains


def _shuffled(items: Sequence[T], rng: random.Random) -> list[T]:
    copy = list(items)
    rng.shuffle(copy)
    return copy


@PROPERTY_SETTINGS
@given(generated(), st.randoms(use_true_random=False))
def test_complete_steps_give_the_true_visits(run: Generated, rng: random.Random) -> None:
    path = build(run, _shuffled(run.steps, rng))

    assert not path.gaps
    # Loops within one second may be linearised in another order than they happened, but
    # every such order yields the same visits (widget, entered, left).
    assert _visit_multiset(path.visits) == _visit_multiset(run.visits)
    assert Counter(path.steps) == Counter(run.steps)


@PROPERTY_SETTINGS
@given(generated(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_input_order(run: Generated, rng: random.Random) -> None:
    steps = run.steps + rng.sample(run.steps, len(run.steps) // 3)
    mutilated = [s for s in steps if rng.random() > 0.2]

    first = build(run, _shuffled(mutilated, rng))
    second = build(run, _shuffled(mutilated, rng))

    assert first == second


@PROPERTY_SETTINGS
@given(generated())
def test_visits_are_contiguous_within_each_chain(run: Generated) -> None:
    path = build(run, reversed(run.steps))

    for chain in _chains(path).values():
        for earlier, later in pairwise(chain):
            assert earlier.left_at == later.entered_at
            assert earlier.exit_step is later.entry_step
        assert all(not visit.is_open for visit in chain[:-1])
    entered = [visit.entered_at for visit in path.visits]
    assert entered == sorted(entered)


@PROPERTY_SETTINGS
@given(generated())
def test_ended_execution_durations_sum_to_its_length(run: Generated) -> None:
    path = build(run, reversed(run.steps))

    top = [visit for visit in path.visits if visit.parent_step_sid is None]
    if run.execution.is_ended:
        assert path.ended_at is not None
        total = sum(visit.duration_seconds or 0.0 for visit in top)
        assert total == (path.ended_at - run.execution.date_created).total_seconds()
        assert not any(visit.is_open for visit in path.visits)
    else:
        assert path.end_step is None
        assert top[-1].is_open


@PROPERTY_SETTINGS
@given(generated(), st.randoms(use_true_random=False))
def test_lost_steps_are_accounted_for(run: Generated, rng: random.Random) -> None:
    lost = {s.sid for s in run.steps if rng.random() < 0.25}
    kept = [s for s in run.steps if s.sid not in lost]
    path = build(run, _shuffled(kept + kept[: len(kept) // 2], rng))

    # Every step appears once, and either closes exactly one visit or follows exactly one gap.
    assert Counter(s.sid for s in path.steps) == Counter(s.sid for s in kept)
    closers = [v.exit_step.sid for v in path.visits if v.exit_step is not None]
    afters = [gap.after.sid for gap in path.gaps]
    assert sorted(closers + afters) == sorted(s.sid for s in kept)
    # Nothing is invented: durations stay non-negative and visits of a chain never overlap.
    assert all((v.duration_seconds or 0.0) >= 0 for v in path.visits)
    for chain in _chains(path).values():
        for earlier, later in pairwise(chain):
            assert earlier.left_at is not None
            assert earlier.left_at <= later.entered_at
    # Each lost step breaks a chain at most once; a lost parent step also orphans its subflow.
    orphaned = len(lost & run.parents)
    assert len(path.gaps) <= len(lost) + orphaned, (lost, path)


@PROPERTY_SETTINGS
@given(generated(min_duration=1), st.data())
def test_one_lost_step_is_one_gap(run: Generated, data: st.DataObject) -> None:
    # With distinct seconds the order is certain, so a lost step is exactly one gap, between
    # its neighbours in its chain (unless it was the chain's last step or a self-loop).
    chains: dict[str | None, list[Step]] = {}
    for made in run.steps:
        chains.setdefault(made.parent_step_sid, []).append(made)
    candidates = [
        (chain[index - 1] if index else None, chain[index], chain[index + 1])
        for chain in chains.values()
        for index in range(len(chain) - 1)
        if chain[index].transitioned_from != chain[index].transitioned_to
        and chain[index].sid not in run.parents
    ]
    if not candidates:
        return
    before, lost, after = data.draw(st.sampled_from(candidates))
    path = build(run, [s for s in run.steps if s is not lost])

    assert [(gap.before, gap.after) for gap in path.gaps] == [(before, after)]
    assert not any(visit.exit_step is after for visit in path.visits)
    assert not any(visit.entry_step is before and before is not None for visit in path.visits)


# -- both readings of parent_step_sid -------------------------------------------------------

SUB_FLOW_DEFINITION = make_flow({TRIGGER: "trigger", "sub": "run-subflow", "next": "say-play"})
INTO_SUB = make_step(TRIGGER, "sub", 1, number=1, widget_type="trigger")
OUT_OF_SUB = make_step("sub", "next", 5, number=4, event="completed", widget_type="run-subflow")


def subflow_rows(path: ExecutionPath) -> list[VisitRow]:
    """Subflow visits as rows whose last item is the step that entered their parent visit."""
    return [
        (
            visit.widget,
            (visit.entered_at - BASE_TIME).total_seconds(),
            seconds(visit.left_at),
            None if visit.parent_entry_sid is None else int(visit.parent_entry_sid[2:], 16),
        )
        for visit in path.visits
        if visit.parent_step_sid is not None
    ]


@pytest.mark.parametrize(
    ("named", "flow"),
    [
        pytest.param(1, None, id="into-untyped"),
        pytest.param(4, None, id="out-untyped"),
        pytest.param(1, SUB_FLOW_DEFINITION, id="into-typed"),
        pytest.param(4, SUB_FLOW_DEFINITION, id="out-typed"),
    ],
)
def test_a_subflow_goes_in_its_run_subflow_visit_whichever_step_is_named(
    named: int, flow: Flow | None
) -> None:
    steps = [INTO_SUB, *sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=named), OUT_OF_SUB]
    path = build_path(make_execution(status="active"), reversed(steps), flow)

    assert not path.gaps
    # Its first visit starts when run-subflow was entered; every visit nests under that visit.
    assert subflow_rows(path) == [(TRIGGER, 1, 2, 1), ("s1", 2, 4, 1)]
    assert {v.parent_step_sid for v in path.visits if v.flow_sid == SUBFLOW_SID} == {
        step_sid(named)
    }
    assert step_numbers(path) == [1, 2, 3, 4]
    assert all((v.duration_seconds or 0) >= 0 for v in path.visits)


def test_out_reading_while_the_subflow_runs_uses_the_open_run_subflow_visit() -> None:
    # The step out of "sub" does not exist yet; the subflow's steps already name it.
    steps = [INTO_SUB, *sub([TRIGGER, "s1"], [2], first=2, parent=4)]
    path = build_path(make_execution(status="active"), steps, SUB_FLOW_DEFINITION)

    assert not path.gaps
    assert subflow_rows(path) == [(TRIGGER, 1, 2, 1), ("s1", 2, None, 1)]


def test_out_reading_without_the_flow_cannot_place_a_running_subflow() -> None:
    # Without widget types an open visit might be anything: the start stays unknown, a gap.
    steps = [INTO_SUB, *sub([TRIGGER, "s1"], [2], first=2, parent=4)]
    path = build_path(make_execution(status="active"), steps)

    assert gap_rows(path) == [(None, 2)]
    assert subflow_rows(path) == [("s1", 2, None, None)]


@pytest.mark.parametrize(
    ("named", "expected_parent"),
    [pytest.param(1, 1, id="into"), pytest.param(4, 1, id="out-not-into-a-say-play")],
)
def test_a_subflow_sharing_a_second_with_both_steps(named: int, expected_parent: int) -> None:
    # Everything in second 1: both visits of the parent step contain the subflow. The visit
    # of a widget that cannot run a subflow ("next", a say-play) is not taken.
    into = make_step(TRIGGER, "sub", 1, number=1, widget_type="trigger")
    out = make_step("sub", "next", 1, number=4, event="completed", widget_type="run-subflow")
    steps = [into, *sub([TRIGGER, ENDED], [1], first=2, parent=named), out]
    path = build_path(make_execution(status="active"), steps, SUB_FLOW_DEFINITION)

    assert [row[3] for row in subflow_rows(path)] == [expected_parent]


def test_into_reading_with_the_step_out_lost_still_knows_the_start() -> None:
    # The visit of "sub" is cut by a gap, but the step into it dates the subflow's start.
    later = make_step("next", ENDED, 9, number=5, widget_type="say-play")
    steps = [INTO_SUB, *sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=1), later]
    path = build_path(make_execution(status="ended"), steps)

    assert gap_rows(path) == [(1, 5)]
    assert subflow_rows(path) == [(TRIGGER, 1, 2, 1), ("s1", 2, 4, 1)]


def test_out_reading_with_the_step_into_lost_leaves_the_start_unknown() -> None:
    steps = [*sub([TRIGGER, "s1", ENDED], [2, 4], first=2, parent=4), OUT_OF_SUB]
    path = build_path(make_execution(status="active"), steps, SUB_FLOW_DEFINITION)

    assert gap_rows(path) == [(None, 2), (None, 4)]
    assert subflow_rows(path) == [("s1", 2, 4, None)]


@pytest.mark.parametrize("reading", ["into", "out"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_subflow_visits_lie_inside_their_run_subflow_visit(
    reading: str, data: st.DataObject
) -> None:
    run = data.draw(generated(reading=reading))
    path = build(run, reversed(run.steps))

    opened = {v.entry_step.sid: v for v in path.visits if v.entry_step is not None}
    for visit in path.visits:
        if visit.parent_step_sid is None:
            continue
        assert visit.parent_entry_sid is not None
        parent = opened[visit.parent_entry_sid]
        assert parent.widget == SUBFLOW_WIDGET
        assert parent.entered_at <= visit.entered_at
        assert parent.left_at is None or (visit.left_at or parent.left_at) <= parent.left_at


def test_a_visit_of_a_widget_that_cannot_run_subflows_never_holds_one() -> None:
    # One second: "a" (a set-variables widget) is left by the parent step and contains the
    # subflow in time, but the subflow ran in "sub", whose step out was lost.
    steps = [
        make_step(TRIGGER, "a", 1, number=1, widget_type="trigger"),
        make_step("a", "sub", 1, number=2, widget_type="set-variables"),
        *sub([TRIGGER, ENDED], [1], first=3, parent=2),
        make_step("next", ENDED, 9, number=5, widget_type="say-play"),
    ]
    path = build_path(make_execution(status="ended"), steps, SUB_FLOW_DEFINITION)

    assert subflow_rows(path) == [(TRIGGER, 1, 1, 2)]


# -- readiness: the one rule for "this step continues the chain" -------------------------------


@pytest.mark.parametrize(
    ("arrived", "applied", "expected"),
    [
        pytest.param([1, 2, 3], [], [1, 2, 3], id="whole-chain"),
        pytest.param([2, 3], [], [], id="first-step-missing"),
        pytest.param([1, 3], [], [1], id="hole-blocks-what-follows"),
        pytest.param([3], [1, 2], [3], id="continues-the-applied"),
        pytest.param([1, 2, 3], [1], [2, 3], id="applied-skipped"),
    ],
)
def test_ready_steps_follow_the_chain(
    arrived: list[int], applied: list[int], expected: list[int]
) -> None:
    chain = make_chain(["Trigger", "a", "b", ENDED], [1, 2, 3], first_number=1)
    known = [step for step in chain if int(step.sid[2:], 16) in arrived + applied]

    ready = ready_steps(make_execution(), known, {step_sid(n) for n in applied})

    assert ready == {step_sid(n) for n in expected}


def test_ready_steps_start_in_the_flows_initial_widget() -> None:
    chain = make_chain(["Start", "a", ENDED], [1, 2], first_number=1)
    flow = make_flow({"Start": "trigger", "a": "set-variables"}, initial_widget="Start")

    assert ready_steps(make_execution(), chain, set(), flow) == {step_sid(1), step_sid(2)}
    # Without the flow the chain is assumed to start in Trigger: nothing continues it.
    assert ready_steps(make_execution(), chain, set()) == set()


def test_ready_subflow_steps_wait_for_their_parent_step() -> None:
    top = make_chain(["Trigger", "run", "b"], [1, 5], first_number=1)
    sub = make_chain(
        ["Trigger", "s", ENDED],
        [2, 3],
        first_number=10,
        parent_step_sid=step_sid(1),
        flow_sid=SUBFLOW_SID,
    )
    execution = make_execution()

    assert ready_steps(execution, sub, set()) == set()
    assert ready_steps(execution, [top[0], *sub], set()) == {
        step_sid(1),
        step_sid(10),
        step_sid(11),
    }


def test_a_loop_still_in_transit_cannot_be_seen() -> None:
    # The limit the property below excludes: w0 -> w1 -> w0 (steps 2 and 3) arrives after
    # step 4, which continues the chain from w0 as if there had been no loop. Step 4 is
    # exported; when steps 2 and 3 arrive they show as a gap (counted in step_gaps_total).
    chain = make_chain(["Trigger", "w0", "w1", "w0", "w1"], [1, 2, 3, 4], first_number=1)
    early = [chain[0], chain[3]]
    assert ready_steps(make_execution(), early, set()) == {step_sid(1), step_sid(4)}


@PROPERTY_SETTINGS
@given(
    generated(acyclic=True),
    st.randoms(use_true_random=False),
    st.sampled_from([0.0, 0.1, 0.3]),
)
def test_ready_subset_never_creates_a_gap_the_full_set_lacks(
    run: Generated, rng: random.Random, loss: float
) -> None:
    # ``full`` is everything that will ever arrive (lost steps are holes for good); it arrives
    # in a random order, a few steps at a time, and each time the ready steps are applied.
    # Walks without loops: a loop whose steps arrive late is undetectable until they do (see
    # the next test), as a loop lost for good is for any reader of the steps.
    full = [step for step in run.steps if rng.random() >= loss]
    full_gaps = {gap.after.sid for gap in build_path(run.execution, full, run.flow).gaps}
    arrival = _shuffled(full, rng)
    known: list[Step] = []
    applied: set[str] = set()
    while arrival:
        size = rng.randint(1, 3)
        known, arrival = known + arrival[:size], arrival[size:]
        applied |= ready_steps(run.execution, known, applied, run.flow)
        exported = [step for step in full if step.sid in applied]
        gaps = {gap.after.sid for gap in build_path(run.execution, exported, run.flow).gaps}
        assert gaps <= full_gaps
    if not full_gaps:
        # Nothing waits for ever: once all arrived, a chain without holes is applied whole,
        # except a subflow whose parent step does not exist yet (the "out" reading names the
        # step out of run-subflow, which comes when the subflow has ended).
        sids = {step.sid for step in full}
        waiting = {s.sid for s in full if s.parent_step_sid and s.parent_step_sid not in sids}
        assert applied == sids - waiting
