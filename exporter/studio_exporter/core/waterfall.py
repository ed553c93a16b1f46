"""An execution as a terminal waterfall: one row per visit, bars on a shared time axis."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from studio_exporter.core.domain import ExecutionPath, Gap, Visit

MIN_WIDTH: Final = 60
_BAR: Final = "█"
_OPEN_BAR: Final = "░"
_NAME_WIDTH: Final = 28
_TIME_WIDTH: Final = 7
_OUTCOME_WIDTH: Final = 30
_INDENT: Final = "  "
_MIN_BAR: Final = 10


def format_duration(seconds: float) -> str:
    """Short, fixed-precision durations: 0s, 45s, 1m05s, 2h03m, 3d04h."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


@dataclass(frozen=True, slots=True)
class _Row:
    at: datetime
    depth: int
    label: str
    start: datetime | None  # None: a gap marker, no bar
    end: datetime | None
    is_open: bool
    outcome: str


def _rows(path: ExecutionPath) -> list[_Row]:
    """Rows in tree order: each group by time, a subflow's rows right under the visit P opened."""
    groups: dict[str | None, list[tuple[datetime, int, Visit | Gap]]] = {}
    opened_by = {v.entry_step.sid for v in path.visits if v.entry_step is not None}
    for index, visit in enumerate(path.visits):
        parent = visit.parent_entry_sid if visit.parent_entry_sid in opened_by else None
        groups.setdefault(parent, []).append((visit.entered_at, index, visit))
    for index, gap in enumerate(path.gaps, start=len(path.visits)):
        parent = gap.parent_entry_sid if gap.parent_entry_sid in opened_by else None
        groups.setdefault(parent, []).append((gap.after.date_created, index, gap))
    rows: list[_Row] = []

    def walk(parent: str | None, depth: int) -> None:
        for _, _, item in sorted(groups.get(parent, ()), key=lambda entry: entry[:2]):
            if isinstance(item, Gap):
                rows.append(_gap_row(item, depth))
                continue
            rows.append(_visit_row(item, depth))
            if item.entry_step is not None and item.entry_step.sid in groups:
                walk(item.entry_step.sid, depth + 1)

    walk(None, 0)
    return rows


def _gap_row(gap: Gap, depth: int) -> _Row:
    return _Row(
        at=gap.after.date_created,
        depth=depth,
        label="⋯ missing steps",
        start=None,
        end=None,
        is_open=False,
        outcome=f"before {gap.after.transitioned_from}",
    )


def _visit_row(visit: Visit, depth: int) -> _Row:
    if visit.exit_step is None:
        outcome = "… waiting"
    else:
        outcome = f"{visit.exit_step.event} → {visit.exit_step.transitioned_to}"
    return _Row(
        at=visit.entered_at,
        depth=depth,
        label=visit.widget,
        start=visit.entered_at,
        end=visit.left_at,
        is_open=visit.is_open,
        outcome=outcome,
    )


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def render_waterfall(path: ExecutionPath, *, flow_name: str | None = None, width: int = 100) -> str:
    """The execution as text no wider than ``width`` (at least ``MIN_WIDTH``) columns.

    Each row: the widget (subflow visits indented), when it was entered (offset from the
    execution's creation), how long it took, a bar on the shared time axis and the event that
    left it with the next widget. A visit still waiting is drawn to the last known moment with
    a light bar; a gap (missing steps) gets a row of its own.
    """
    width = max(width, MIN_WIDTH)
    execution = path.execution
    origin = execution.date_created
    moments = [origin]
    moments.extend(step.date_created for step in path.steps)
    moments.extend(visit.entered_at for visit in path.visits)
    horizon = max(moments)
    total = (horizon - origin).total_seconds()

    rows = _rows(path)

    name_width = min(_NAME_WIDTH, max((len(_INDENT * r.depth + r.label) for r in rows), default=6))
    name_width = max(name_width, len("widget"))
    outcome_width = min(_OUTCOME_WIDTH, max((len(r.outcome) for r in rows), default=5))
    outcome_width = max(outcome_width, len("event"))
    # Narrow terminals: shrink the outcome column, then the names, to keep a usable bar.
    columns = 2 * (_TIME_WIDTH + 1) + 4
    deficit = name_width + outcome_width + columns + _MIN_BAR - width
    if deficit > 0:
        cut = min(deficit, outcome_width - len("event"))
        outcome_width -= cut
        name_width -= min(deficit - cut, name_width - len("widget"))
    bar_width = width - name_width - outcome_width - columns

    title = flow_name or execution.flow_sid
    status = "ended" if path.end_step is not None or execution.is_ended else execution.status
    lines = [
        _fit(f"{title}  {execution.sid}  {status}", width),
        _fit(
            f"started {origin.isoformat()}  span {format_duration(total)}"
            f"  {len(path.steps)} steps  {len(path.gaps)} gaps",
            width,
        ),
        f"{'widget':<{name_width}} {'start':>{_TIME_WIDTH}} {'took':>{_TIME_WIDTH}}  "
        f"{'':<{bar_width}}  {'event':<{outcome_width}}".rstrip(),
    ]
    for row in rows:
        name = _fit(_INDENT * row.depth + row.label, name_width)
        offset = f"+{format_duration((row.at - origin).total_seconds())}"
        if row.start is None:
            took, bar = "", ""
        else:
            end = horizon if row.end is None else row.end
            seconds = (end - row.start).total_seconds()
            took = "open" if row.is_open else format_duration(seconds)
            bar = _bar((row.start - origin).total_seconds(), seconds, total, bar_width, row.is_open)
        lines.append(
            f"{name:<{name_width}} {offset:>{_TIME_WIDTH}} {took:>{_TIME_WIDTH}}  "
            f"{bar:<{bar_width}}  {_fit(row.outcome, outcome_width)}".rstrip()
        )
    return "\n".join(lines) + "\n"


def _bar(start: float, length: float, total: float, width: int, is_open: bool) -> str:
    if total <= 0:
        first, cells = 0, 1
    else:
        first = min(int(start / total * width), width - 1)
        cells = max(1, round(length / total * width))
    cells = min(cells, width - first)
    return " " * first + (_OPEN_BAR if is_open else _BAR) * cells
