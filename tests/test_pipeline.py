"""Tests for pipeline.plan_update: what is new in an execution since the last export."""

from __future__ import annotations

import pytest

from studio_exporter.core.domain import ENDED, TRIGGER
from studio_exporter.core.pipeline import plan_update
from tests.factories import make_chain, make_execution, make_step, step_sid


def test_first_read_exports_every_step_and_closed_visit() -> None:
    steps = make_chain([TRIGGER, "ask", "thanks"], [1, 5], first_number=1)
    update = plan_update(make_execution(), steps, None, exported=set(), first_seen=True)
    assert [step.sid for step in update.new_steps] == [step_sid(1), step_sid(2)]
    assert [visit.widget for visit in update.closed_visits] == [TRIGGER, "ask"]
    assert [visit.widget for visit in update.open_visits] == ["thanks"]
    assert update.started
    assert not update.ended


def test_second_read_exports_only_what_is_new() -> None:
    steps = make_chain([TRIGGER, "ask", "thanks", ENDED], [1, 5, 6], first_number=1)
    update = plan_update(
        make_execution(status="ended"),
        steps,
        None,
        exported={step_sid(1), step_sid(2)},
        first_seen=False,
    )
    assert [step.sid for step in update.new_steps] == [step_sid(3)]
    assert [visit.widget for visit in update.closed_visits] == ["thanks"]
    assert update.ended
    assert update.final_widget == "thanks"
    assert update.duration_seconds == 6.0
    assert not update.started


def test_nothing_new_is_an_empty_update() -> None:
    steps = make_chain([TRIGGER, "ask", ENDED], [1, 5], first_number=1)
    sids = {step.sid for step in steps}
    update = plan_update(make_execution(), steps, None, exported=sids, first_seen=False)
    assert update.new_steps == ()
    assert update.closed_visits == ()
    assert update.span_visits == ()
    assert not update.ended


@pytest.mark.parametrize(
    ("second_read", "expected_ended"),
    [
        pytest.param(False, False, id="believed-on-first-read-is-caller-choice"),
        pytest.param(True, True, id="status-ended-without-end-step"),
    ],
)
def test_status_ended_without_end_step(second_read: bool, expected_ended: bool) -> None:
    steps = make_chain([TRIGGER, "ask"], [1], first_number=1)
    update = plan_update(
        make_execution(status="ended"),
        steps,
        None,
        exported=set(),
        first_seen=True,
        status_ended=second_read,
    )
    assert update.ended is expected_ended
    if expected_ended:
        assert update.final_widget == "ask"


def test_subflow_visit_spans_wait_for_the_parent_visit_to_close() -> None:
    enter = make_step(TRIGGER, "run_sub", 1, number=1)
    sub = make_chain(
        [TRIGGER, "sub_ask", ENDED], [2, 3], first_number=10, parent_step_sid=enter.sid
    )
    first = plan_update(make_execution(), [enter, *sub], None, exported=set(), first_seen=True)
    assert {visit.widget for visit in first.closed_visits} == {TRIGGER, "sub_ask"}
    # The top-level Trigger visit is due; the subflow's visits are not (parent still open).
    assert [(v.widget, v.parent_step_sid) for v in first.span_visits] == [(TRIGGER, None)]

    leave = make_step("run_sub", ENDED, 4, number=20, event="completed", widget_type="run-subflow")
    exported = {enter.sid, *(step.sid for step in sub)}
    second = plan_update(
        make_execution(status="ended"),
        [enter, *sub, leave],
        None,
        exported=exported,
        first_seen=False,
    )
    assert [visit.widget for visit in second.closed_visits] == ["run_sub"]
    assert sorted(visit.widget for visit in second.span_visits) == sorted(
        ["run_sub", TRIGGER, "sub_ask"]
    )
    assert second.ended


def test_gap_is_reported_once_with_its_later_step() -> None:
    steps = [
        make_step(TRIGGER, "ask", 1, number=1),
        make_step("thanks", ENDED, 9, number=3),  # the step ask -> thanks is missing
    ]
    update = plan_update(make_execution(), steps, None, exported=set(), first_seen=True)
    assert [gap.after.sid for gap in update.new_gaps] == [step_sid(3)]
    again = plan_update(
        make_execution(), steps, None, exported={s.sid for s in steps}, first_seen=False
    )
    assert again.new_gaps == ()
