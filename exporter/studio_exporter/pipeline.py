"""Pure planning: what is new in an execution since the last export (no I/O, no clock)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from studio_exporter.domain import Execution, ExecutionPath, Flow, Gap, Step, Visit
from studio_exporter.transform import build_path


@dataclass(frozen=True, slots=True)
class ExecutionUpdate:
    """Everything that changed in one execution since its steps were last exported.

    ``new_steps`` are steps never exported before; ``closed_visits`` the visits those steps
    closed; ``new_gaps`` the gaps whose later step is new. ``ended`` is True when the
    execution finished with this update (its end step is new, or Studio says it ended);
    ``finished_at_step`` is the end step when there is one.
    """

    path: ExecutionPath
    new_steps: tuple[Step, ...]
    closed_visits: tuple[Visit, ...]
    new_gaps: tuple[Gap, ...]
    started: bool
    ended: bool

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
        if self.path.visits:
            return self.path.visits[-1].widget
        return "unknown"

    @property
    def duration_seconds(self) -> float | None:
        ended_at = self.path.ended_at
        if ended_at is None:
            ended_at = self.execution.date_updated
        if ended_at is None:
            return None
        return max(0.0, (ended_at - self.execution.date_created).total_seconds())


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
        path=path,
        new_steps=new_steps,
        closed_visits=closed,
        new_gaps=gaps,
        started=first_seen,
        ended=ended,
    )
