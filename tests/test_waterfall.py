"""Tests for the terminal waterfall of an execution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from studio_exporter.core.domain import ENDED, Execution, ExecutionPath, Gap, Step, Visit
from studio_exporter.core.waterfall import MIN_WIDTH, format_duration, render_waterfall

FLOW_SID = "FW" + "b" * 32
SUBFLOW_SID = "FW" + "d" * 32
EXECUTION_SID = "FN" + "a" * 32
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def step(number: int, widget: str, next_widget: str, seconds: float, event: str = "next",
         parent: str | None = None) -> Step:  # fmt: skip
    return Step(
        f"FT{number:032x}", FLOW_SID, EXECUTION_SID, event, widget, next_widget,
        "send-message", T0 + timedelta(seconds=seconds), parent,
    )  # fmt: skip


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def subflow_path() -> ExecutionPath:
    """Trigger, then run_sub (2s-100s) with a two-widget subflow inside, then ask (open)."""
    s1 = step(1, "Trigger", "hello", 0, "incomingMessage")
    s2 = step(2, "hello", "run_sub", 2, "sent")
    s3 = step(3, "sub_first", "sub_second", 30, "success", s2.sid)
    s4 = step(4, "sub_second", ENDED, 95, "failed", s2.sid)
    s5 = step(5, "run_sub", "ask", 100, "completed")
    visits = (
        Visit("Trigger", "trigger", FLOW_SID, at(0), None, s1),
        Visit("hello", "send-message", FLOW_SID, at(0), s1, s2),
        # The transform may list a subflow's first visit before the visit that contains it.
        Visit("sub_first", "set-variables", SUBFLOW_SID, at(2), None, s3, s2.sid, s2.sid),
        Visit("run_sub", "run-subflow", FLOW_SID, at(2), s2, s5),
        Visit("sub_second", "make-http-request", SUBFLOW_SID, at(30), s3, s4, s2.sid, s2.sid),
        Visit("ask", "send-and-wait-for-reply", FLOW_SID, at(100), s5, None),
    )
    execution = Execution(EXECUTION_SID, FLOW_SID, "AC" + "c" * 32, "active", T0)
    return ExecutionPath(execution, (s1, s2, s3, s4, s5), visits)


def body(text: str) -> list[str]:
    return text.splitlines()[3:]  # below the two header lines and the column titles


def test_rows_nest_subflow_visits_under_the_visit_that_ran_them() -> None:
    rows = body(render_waterfall(subflow_path(), flow_name="Onboarding"))
    names = [row.split()[0] for row in rows]
    assert names == ["Trigger", "hello", "run_sub", "sub_first", "sub_second", "ask"]
    assert rows[3].startswith("  sub_first")
    assert rows[2].startswith("run_sub")


def test_a_row_shows_offset_duration_bar_and_outcome() -> None:
    rows = body(render_waterfall(subflow_path(), width=100))
    sub_second = rows[4].split()
    assert sub_second[1:3] == ["+30s", "1m05s"]
    assert sub_second[-3:] == ["failed", "→", ENDED]
    ask = rows[5]
    assert "open" in ask
    assert "… waiting" in ask
    assert "░" in ask


def test_bars_share_one_time_axis() -> None:
    rows = body(render_waterfall(subflow_path(), width=100))
    bars = {row.split()[0]: row for row in rows}
    run_sub_start = bars["run_sub"].index("█")
    run_sub_end = bars["run_sub"].rindex("█")
    sub_second_start = bars["sub_second"].index("█")
    sub_second_end = bars["sub_second"].rindex("█")
    # sub_second (30s-95s) lies inside run_sub (2s-100s) on the axis.
    assert run_sub_start < sub_second_start
    assert sub_second_end <= run_sub_end
    assert bars["ask"].index("░") > run_sub_end - 1


def test_header_names_the_flow_and_the_execution() -> None:
    text = render_waterfall(subflow_path(), flow_name="Onboarding")
    first, second = text.splitlines()[:2]
    assert first == f"Onboarding  {EXECUTION_SID}  active"
    assert "span 1m40s" in second
    assert "5 steps" in second


@pytest.mark.parametrize("width", [pytest.param(w, id=f"width-{w}") for w in (10, 60, 80, 160)])
def test_no_line_is_wider_than_asked(width: int) -> None:
    text = render_waterfall(subflow_path(), width=width)
    assert max(len(line) for line in text.splitlines()) <= max(width, MIN_WIDTH)


def test_long_widget_names_are_cut() -> None:
    s1 = step(1, "Trigger", "w" * 80, 1)
    s2 = step(2, "w" * 80, ENDED, 2)
    visits = (
        Visit("Trigger", "trigger", FLOW_SID, at(0), None, s1),
        Visit("w" * 80, "send-message", FLOW_SID, at(1), s1, s2),
    )
    execution = Execution(EXECUTION_SID, FLOW_SID, "AC" + "c" * 32, "ended", T0)
    text = render_waterfall(ExecutionPath(execution, (s1, s2), visits), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "w…" in text


def test_gaps_get_their_own_row_and_an_instant_execution_still_draws() -> None:
    s1 = step(1, "Trigger", "a", 0)
    s3 = step(3, "c", ENDED, 0)
    execution = Execution(EXECUTION_SID, FLOW_SID, "AC" + "c" * 32, "ended", T0)
    path = ExecutionPath(
        execution,
        (s1, s3),
        (Visit("Trigger", "trigger", FLOW_SID, at(0), None, s1),),
        gaps=(Gap(EXECUTION_SID, s1, s3),),
    )
    rows = body(render_waterfall(path))
    assert rows[0].startswith("Trigger")
    assert "█" in rows[0]
    assert rows[1].startswith("⋯ missing steps")
    assert rows[1].endswith("before c")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(0.4, "0s", id="sub-second"),
        pytest.param(59, "59s", id="seconds"),
        pytest.param(65, "1m05s", id="minutes"),
        pytest.param(7380, "2h03m", id="hours"),
        pytest.param(3 * 86400 + 4 * 3600, "3d04h", id="days"),
        pytest.param(-5, "0s", id="negative"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
