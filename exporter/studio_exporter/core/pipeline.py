"""Pure planning: what is new in an execution since the last export (no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from studio_exporter.core.domain import Execution, ExecutionPath, Flow, Gap, Step, Visit
from studio_exporter.core.transform import build_path


@dataclass(frozen=True, slots=True)
class ExecutionUpdate:
    """Everything that changed in one execution since its steps were last exported.

    ``new_steps`` are steps never exported before; ``closed_visits`` the visits those steps
    closed; ``new_gaps`` the gaps whose later step is new. ``ended`` is True when the
    execution finished with this update (its end step is new, or Studio says it ended);
    ``span_visits`` are the closed visits whose spans are due now: a visit's span is sent
    once its parent's span id is known, which for a subflow visit is when the run-subflow
    visit it nests under closes (or, if that never closes, when the execution ends).
    """

    path: ExecutionPath
    new_steps: tuple[Step, ...]
    closed_visits: tuple[Visit, ...]
    new_gaps: tuple[Gap, ...]
    started: bool
    ended: bool
    span_visits: tuple[Visit, ...] = ()

    @property
    def execution(self) -> Execution:
        return self.path.execution

    @property
    def open_visits(self) -> tuple[Visit, ...]:
        return tuple(visit for visit in self.path.visits if visit.is_open)

    @property
    def final_widget(self) -> str:
        """Where the execution ended: the widget that went to ``Ended``, else the last one."""
        final = self.path.final_widget
        if final is not None:
            return final
        top = [step for step in self.path.steps if step.parent_step_sid is None]
        if top:
            return top[-1].transitioned_to
        return self.path.visits[-1].widget if self.path.visits else "unknown"

    @property
    def duration_seconds(self) -> float | None:
        ended_at = self.path.ended_at
        if ended_at is None:
            ended_at = self.execution.date_updated
        if ended_at is None:
            return None
        # Negative with skewed data: the caller counts it as an anomaly, it is not clamped.
        return (ended_at - self.execution.date_created).total_seconds()


def plan_update(
    execution: Execution,
    steps: Iterable[Step],
    flow: Flow | None,
    *,
    exported: frozenset[str] | set[str],
    first_seen: bool,
    status_ended: bool = False,
) -> ExecutionUpdate:
    """Rebuild the execution's path and pick out what has not been exported yet.

    ``exported`` holds the sids of the steps already exported for this execution.
    ``status_ended`` says Studio reported the execution ended although no step to ``Ended``
    was seen (ended through the API or by Studio's limits): it ends with what is known.
    """
    path = build_path(execution, steps, flow)
    new_steps = tuple(step for step in path.steps if step.sid not in exported)
    new_sids = {step.sid for step in new_steps}
    closed = tuple(
        visit
        for visit in path.visits
        if visit.exit_step is not None and visit.exit_step.sid in new_sids
    )
    gaps = tuple(gap for gap in path.gaps if gap.after.sid in new_sids)
    end_step = path.end_step
    ended = (end_step is not None and end_step.sid in new_sids) or (
        end_step is None and status_ended
    )
    return ExecutionUpdate(
        span_visits=_span_visits(path, new_sids, ended),
        path=path,
        new_steps=new_steps,
        closed_visits=closed,
        new_gaps=gaps,
        started=first_seen,
        ended=ended,
    )


def _span_visits(path: ExecutionPath, new_sids: set[str], ended: bool) -> tuple[Visit, ...]:
    opened_by = {
        visit.entry_step.sid: visit for visit in path.visits if visit.entry_step is not None
    }
    due: list[Visit] = []
    for visit in path.visits:
        if visit.exit_step is None:
            continue
        closes_now = visit.exit_step.sid in new_sids
        if visit.parent_step_sid is None:
            if closes_now:
                due.append(visit)
            continue
        parent = None if visit.parent_entry_sid is None else opened_by.get(visit.parent_entry_sid)
        parent_exit = None if parent is None else parent.exit_step
        if parent_exit is not None:
            # Parent known: now if either this visit or its parent closed with this update.
            if closes_now or parent_exit.sid in new_sids:
                due.append(visit)
        elif ended:
            # The parent never closed (or was never seen): the root adopts the visit now.
            due.append(visit)
    return tuple(due)
