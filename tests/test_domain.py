"""Tests for domain: what a visit and an execution path say about themselves."""

from __future__ import annotations

from datetime import timedelta

from studio_exporter.core.domain import ENDED, TRIGGER, ExecutionPath, Flow, Visit, Widget
from tests.factories import at, make_execution, make_step


def test_a_closed_visit_knows_its_end_event_and_next_widget() -> None:
    exit_step = make_step("ask", "thanks", 9, event="incomingMessage")
    visit = Visit("ask", "send-and-wait-for-reply", exit_step.flow_sid, at(4), None, exit_step)
    assert not visit.is_open
    assert visit.left_at == at(9)
    assert visit.duration_seconds == 5.0
    assert visit.event == "incomingMessage"
    assert visit.next_widget == "thanks"


def test_an_open_visit_has_no_end() -> None:
    visit = Visit("ask", "send-and-wait-for-reply", "FW" + "a" * 32, at(4), None)
    assert visit.is_open
    assert visit.left_at is None
    assert visit.duration_seconds is None
    assert visit.event is None


def test_the_end_step_is_the_first_top_level_step_into_ended() -> None:
    first = make_step("ask", ENDED, 9, number=1)
    later = make_step("ask", ENDED, 12, number=2)  # corrupt data: a second end
    sub_end = make_step(TRIGGER, ENDED, 5, number=3, parent_step_sid=first.sid)
    path = ExecutionPath(make_execution(status="ended"), (sub_end, first, later), ())
    assert path.end_step == first
    assert path.final_widget == "ask"
    assert path.ended_at == at(9)


def test_an_active_path_has_no_end() -> None:
    path = ExecutionPath(make_execution(), (make_step(TRIGGER, "ask", 1),), ())
    assert path.end_step is None
    assert path.final_widget is None
    assert path.ended_at is None


def test_flow_widget_type() -> None:
    flow = Flow("FW" + "a" * 32, "AC" + "a" * 32, "f", "published", 1, (Widget("ask", "gather"),))
    assert flow.widget_type("ask") == "gather"
    assert flow.widget_type("missing") is None


def test_execution_is_ended_only_when_studio_says_ended() -> None:
    assert make_execution(status="ended").is_ended
    assert not make_execution(status="active").is_ended
    assert not make_execution(status="paused").is_ended  # a status Twilio may add one day
    assert make_execution(created=3).date_created - at(0) == timedelta(seconds=3)
