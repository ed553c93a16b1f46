"""The project's own small, frozen domain types: what the rest of the code sees of Studio."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: The pseudo-widget a step transitions to when its execution finishes.
ENDED = "Ended"
#: The widget every Studio flow starts in; it is entered when the execution is created.
TRIGGER = "Trigger"


@dataclass(frozen=True, slots=True)
class Transition:
    """One outgoing edge of a widget in a flow definition: on ``event`` go to ``next_widget``."""

    event: str
    next_widget: str | None


@dataclass(frozen=True, slots=True)
class Widget:
    """A widget (a "state") of a flow definition."""

    name: str
    type: str
    transitions: tuple[Transition, ...] = ()


@dataclass(frozen=True, slots=True)
class Flow:
    """A Studio flow with the parts of its definition the exporter uses."""

    sid: str
    account_sid: str
    name: str
    status: str
    revision: int
    widgets: tuple[Widget, ...] = ()
    initial_widget: str = TRIGGER

    def widget_type(self, widget: str) -> str | None:
        """The type of the named widget in this flow's definition, if it has one."""
        for candidate in self.widgets:
            if candidate.name == widget:
                return candidate.type
        return None


@dataclass(frozen=True, slots=True)
class Execution:
    """One run of a flow. ``contact_channel_address`` is personal data: never export it raw."""

    sid: str
    flow_sid: str
    account_sid: str
    status: str  # "active" or "ended"; any other value Twilio may add is kept as given
    date_created: datetime  # aware, UTC
    date_updated: datetime | None = None
    contact_channel_address: str | None = None
    flow_version: int | None = None

    @property
    def is_ended(self) -> bool:
        return self.status == "ended"


@dataclass(frozen=True, slots=True)
class Step:
    """One transition of an execution, as Studio records it.

    The widget ``transitioned_from`` finished with ``event`` (Twilio's field ``name``) and the
    execution moved on to ``transitioned_to`` (``ENDED`` when it finished). ``widget_type`` is
    Twilio's ``type``: the type of the widget that was executed, i.e. ``transitioned_from``.
    ``context`` is personal data and is only kept when the user opted in to some of its keys.
    """

    sid: str
    flow_sid: str
    execution_sid: str
    event: str
    transitioned_from: str
    transitioned_to: str
    widget_type: str
    date_created: datetime  # aware, UTC, whole seconds over REST
    parent_step_sid: str | None = None
    account_sid: str = ""
    context: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Visit:
    """The time an execution spent in one widget: from the transition into it to the one out.

    ``exit_step`` is None while the widget is still waiting (an open visit). ``entry_step`` is
    None for the first widget of a chain, entered when the execution (or, for a subflow, the
    run-subflow visit of the parent) started. ``parent_step_sid`` is set for visits of a
    subflow: Twilio's ``parent_step_sid``, the parent step that ran it, which may be the step
    into the run-subflow widget or the step out of it. ``parent_entry_sid`` is the step that
    entered the parent's visit this subflow runs inside (found by the transform, whichever step
    Twilio names): its span nests under that visit's. It is None at top level, and for a
    subflow whose parent visit is unknown (lost steps).
    """

    widget: str
    widget_type: str
    flow_sid: str
    entered_at: datetime
    entry_step: Step | None
    exit_step: Step | None = None
    parent_step_sid: str | None = None
    parent_entry_sid: str | None = None

    @property
    def is_open(self) -> bool:
        return self.exit_step is None

    @property
    def left_at(self) -> datetime | None:
        return None if self.exit_step is None else self.exit_step.date_created

    @property
    def event(self) -> str | None:
        return None if self.exit_step is None else self.exit_step.event

    @property
    def next_widget(self) -> str | None:
        return None if self.exit_step is None else self.exit_step.transitioned_to

    @property
    def duration_seconds(self) -> float | None:
        left = self.left_at
        return None if left is None else (left - self.entered_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Gap:
    """A break in an execution's chain of steps: Studio's step logs are best-effort.

    ``before`` transitioned to a widget that ``after`` does not leave from; the visit(s) in
    between are unknown and are not invented. ``before`` is None when the first known step of a
    chain does not leave the chain's first widget.
    """

    execution_sid: str
    before: Step | None
    after: Step
    parent_step_sid: str | None = None
    parent_entry_sid: str | None = None  # as in Visit: the parent visit's entry step, if known


@dataclass(frozen=True, slots=True)
class ExecutionPath:
    """An execution rebuilt from its steps: its visits in order, the gaps, and how it ended."""

    execution: Execution
    steps: tuple[Step, ...]  # every step given, in path order (chain order within a second)
    visits: tuple[Visit, ...]  # every visit, closed and open, top-level and subflow, in time order
    gaps: tuple[Gap, ...] = ()

    @property
    def end_step(self) -> Step | None:
        """The top-level step that transitioned to ``ENDED``, if the execution has one.

        With corrupt data holding several, the first one (in path order) counts: the transform
        turned the later ones into gaps. The end step may itself follow a gap (a lost step just
        before the end): it still ends the execution.
        """
        for step in self.steps:
            if step.parent_step_sid is None and step.transitioned_to == ENDED:
                return step
        return None

    @property
    def final_widget(self) -> str | None:
        end = self.end_step
        return None if end is None else end.transitioned_from

    @property
    def ended_at(self) -> datetime | None:
        end = self.end_step
        return None if end is None else end.date_created
